"""The classifier takes its name suffixes and exchange-point prefixes from the config, defaults included."""

from __future__ import annotations

import json
from pathlib import Path as FsPath

import pytest

from agent.asn import load_table
from agent.classify import Settings, classify
from agent.classify.exchanges import DEFAULT_EXCHANGE_PREFIXES
from agent.config import Config, load_config, loads_config
from agent.formats.atlas_in import from_ripe
from agent.model import Hop, Path, Protocol, Reply, ReplyKind

FIXTURES = FsPath(__file__).parent.parent / "fixtures" / "ripe"
TABLE = load_table([FIXTURES / "transit.pfx2as"])
UNANNOUNCED = "198.51.100.7"  # in no table and no special range: only its name can place it


def _path(*addresses: str | None) -> Path:
    hops = tuple(
        Hop(ttl, (Reply(a, 0.01, ReplyKind.TIME_EXCEEDED),) if a else (), 1)
        for ttl, a in enumerate(addresses, 1)
    )
    return Path("175.45.176.71", Protocol.TCP, 1, hops, True, 0.0, 1.0)


PATH = _path("192.168.1.1", UNANNOUNCED, "175.45.176.71")
NAME = {UNANNOUNCED: "xe-0-1-0.bj-bb.chinaunicom.cn"}


@pytest.mark.parametrize("config", [Config(), load_config(None)], ids=["dataclass", "shipped"])
def test_chinaunicom_cn_is_a_default_china_unicom_suffix(config: Config) -> None:
    assert "chinaunicom.cn" in config.names.suffixes["china_unicom"]
    c = classify(PATH, TABLE.lookup, Settings.from_config(config), NAME)
    assert c.upstream == "china_unicom"
    assert c.border is not None and c.border.address == UNANNOUNCED
    assert any("its name ends in chinaunicom.cn" in e for e in c.evidence)


def test_the_suffixes_come_from_the_config() -> None:
    config = loads_config('[names.suffixes]\nchina_unicom = ["chinaunicomglobal.com"]\n')
    c = classify(PATH, TABLE.lookup, Settings.from_config(config), NAME)
    assert c.upstream == "unknown"  # chinaunicom.cn no longer configured: the name proves nothing
    renamed = loads_config('[names.suffixes]\ntranstelecom = ["chinaunicom.cn"]\n')
    c = classify(PATH, TABLE.lookup, Settings.from_config(renamed), NAME)
    # The configured suffix now says transtelecom; the name's own token still says China Unicom
    # (agent.classify.rdns.NAME_TOKEN_PATTERNS): the signals disagree, so no tag.
    assert c.upstream == "unknown"
    assert any("ends in chinaunicom.cn: transtelecom" in e and "china_unicom" in e for e in c.evidence)


def test_default_exchange_prefixes_come_from_one_place() -> None:
    assert Config().classify.exchange_prefixes == tuple(DEFAULT_EXCHANGE_PREFIXES)
    assert load_config(None).classify == Config().classify
    settings = Settings.from_config(Config())
    assert settings.kind_of("123.255.90.112") == ("exchange", "HKIX 123.255.88.0/21")
    assert settings.kind_of("195.208.215.100") == ("exchange", "MSK-IX Moscow 195.208.208.0/21")


def test_configured_exchange_prefixes_replace_the_defaults() -> None:
    config = loads_config('[classify]\nexchange_prefixes = ["198.51.100.0/24", "80.81.192.0/21"]\n')
    settings = Settings.from_config(config)
    assert settings.kind_of(UNANNOUNCED) == ("exchange", "198.51.100.0/24")  # no name known: the prefix
    assert settings.kind_of("80.81.193.157") == ("exchange", "DE-CIX Frankfurt 80.81.192.0/21")
    assert settings.kind_of("123.255.90.112") == ("public", "")  # HKIX is no longer in the list
    # The exchange fixture: without HKIX's LAN its hop is an unknown public hop, tied to China Unicom
    # only by its neighbour, and becomes the border.
    path = from_ripe(json.loads((FIXTURES / "exchange_point_hop.json").read_text()))
    c = classify(path, TABLE.lookup, settings)
    assert c.border is not None and c.border.address == "123.255.90.112"
    assert not any("passed over" in e for e in c.evidence)
    default = classify(path, TABLE.lookup, Settings.from_config(Config()))
    assert default.border is not None and default.border.address == "219.158.19.58"


def test_an_empty_exchange_list_passes_over_nothing() -> None:
    settings = Settings.from_config(loads_config("[classify]\nexchange_prefixes = []\n"))
    assert settings.kind_of("80.81.193.157") == ("public", "")
