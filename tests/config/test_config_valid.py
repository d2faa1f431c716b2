"""Valid configs: the shipped default, the deploy example, minimal files, defaults and helpers."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

import agent.config
from agent.commands import check_config
from agent.config import Config, TargetConfig, TargetEntry, load_config, loads_config
from agent.net.allowlist import Allowlist

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "config.example.toml"
DEFAULT = ROOT / "agent" / "data" / "default-config.toml"


def test_shipped_default_validates_and_targets_each_slash24() -> None:
    config = load_config(None)
    assert config.source_path is None
    assert {t.prefix for t in config.targets} == {
        "175.45.176.0/24",
        "175.45.177.0/24",
        "175.45.178.0/24",
        "175.45.179.0/24",
    }
    allow = Allowlist(config.destination.prefixes)
    assert all(allow.allows(t.address) for t in config.targets)
    assert config.agent.max_pps <= 10
    assert config.trace.protocol == "tcp"
    assert config.ping.protocols == ("icmp", "tcp")
    assert config.target("175.45.176.15").trace_port == 53
    assert config.target("175.45.179.69").ping_port == 465
    assert config.warnings == ()


def test_shipped_default_carries_the_loud_warning() -> None:
    head = DEFAULT.read_text().splitlines()[:8]
    text = "\n".join(head)
    assert "NEVER" in text and "lab" in text and "uplink" in text


def test_empty_file_gives_dataclass_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.toml"
    path.write_text("")
    config = load_config(str(path))
    assert config == Config(source_path=str(path))


def test_contract_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        """
[agent]
name = "pi-berlin-1"
listen = "127.0.0.1:9100"
state_dir = "/var/lib/nkprobe"
max_pps = 20

[[targets]]
address = "175.45.176.71"
name = "kcna"

[ping]
interval_s = 1.0

[trace]
interval_s = 60.0

[asn]
files = []

[upstreams]
china_unicom = [4837, 9929, 10099, 134544]
transtelecom = [20485]

[destination]
asn = 131279
prefixes = ["175.45.176.0/22"]
"""
    )
    config = load_config(str(path))
    assert config.agent.name == "pi-berlin-1"
    assert config.agent.max_pps == 20.0
    assert config.targets[0].name == "kcna"
    assert config.upstreams["transtelecom"] == (20485,)
    assert config.source_path == str(path)


def test_lab_style_config_with_own_groups_drops_unrelated_defaults(tmp_path: Path) -> None:
    path = tmp_path / "lab.toml"
    path.write_text(
        """
[agent]
state_dir = "state"
[[targets]]
address = "198.19.176.10"
protocol = "icmp"
ping_protocols = ["icmp"]
[asn]
files = ["asn.pfx2as"]
[upstreams]
cu = [4837]
[destination]
asn = 131279
prefixes = ["198.19.176.0/22"]
"""
    )
    config = load_config(str(path))
    # Relative paths are relative to the config file's directory.
    assert config.agent.state_dir == str(tmp_path / "state")
    assert config.asn.files == (str(tmp_path / "asn.pfx2as"),)
    assert config.asn_update_dir == str(tmp_path / "state" / "asn")
    # Default suffixes and borders name groups this config does not have: silently dropped.
    assert config.names.suffixes == {}
    assert config.borders == {}
    # Each [[targets]] entry is resolved once into one record: its own values, else the sections'.
    assert config.targets[0] == TargetConfig(
        "198.19.176.10",
        ping_protocols=("icmp",),
        ping_port=80,
        trace_protocol="icmp",
        trace_port=None,
        entry=TargetEntry("198.19.176.10", protocol="icmp", ping_protocols=("icmp",)),
    )
    assert config.target("198.19.176.20").trace_protocol == "tcp"  # not listed: the sections'
    assert config.target("198.19.176.10").ping_protocols == ("icmp",)
    assert config.group_of_asn(4837) == "cu"


def test_listen_forms() -> None:
    for listen in ("127.0.0.1:9931", "[::1]:9931", ":9931", "localhost:9931", "0.0.0.0:1"):
        assert loads_config(f'[agent]\nlisten = "{listen}"\n').agent.listen == listen


def test_ping_over_budget_is_a_warning_not_an_error() -> None:
    config = loads_config(
        '[agent]\nmax_pps = 1\n[ping]\ninterval_s = 0.5\n[[targets]]\naddress = "175.45.176.1"\n'
    )
    assert len(config.warnings) == 1
    assert config.warnings[0].startswith("ping.interval_s: 2 pings every 0.5 s need 4 packets/s")


def test_example_validates_and_agrees_with_the_shipped_default() -> None:
    example = load_config(str(EXAMPLE))
    default = load_config(None)
    assert example.targets == default.targets
    for section in ("agent", "ping", "trace", "asn", "destination", "history", "names", "classify"):
        assert getattr(example, section) == getattr(default, section), section
    assert example.upstreams == default.upstreams
    assert example.borders == default.borders


def test_example_sets_every_known_key() -> None:
    """The example documents every option: each section of the schema appears with all its keys."""
    import tomllib

    data = tomllib.loads(EXAMPLE.read_text())
    for section, keys in agent.config.file_keys().items():
        if section in ("", "targets"):
            continue
        assert set(data[section]) == set(keys), section


def test_check_config_ok_prints_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    class Args:
        path = str(DEFAULT)

    assert check_config.run(Args()) == 0  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert "ok: 5 targets in 4 /24s" in out


def test_doctests() -> None:
    import agent.config.checks
    import agent.config.model

    for module in (agent.config.model, agent.config.checks):
        failures, tried = doctest.testmod(module)
        assert tried > 0 and failures == 0, module.__name__


def test_agent_owner_is_read_and_defaults_to_nobody(tmp_path: Path) -> None:
    path = tmp_path / "owner.toml"
    path.write_text('[agent]\nowner = "ann.lee+nk@example.org"\n')
    assert load_config(str(path)).agent.owner == "ann.lee+nk@example.org"
    path.write_text("[agent]\n")
    assert load_config(str(path)).agent.owner == ""
