"""The lab without root: scenario parsing and validation, the topology's predictions, the delay line core,
the files `lab up` writes. Nothing here touches the network."""

from __future__ import annotations

import argparse
import ipaddress
import random
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import loads_config
from agent.errors import ConfigError, LabError, PrivilegeError
from agent.lab import build, kernel, scenario, topology
from agent.lab.info import LabInfo, resolve_prefix, state_dir
from agent.lab.wire import DelayLine, Direction, Lateness


def problems_of(text: str) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as err:
        scenario.loads(text, "s.toml")
    assert str(err.value).startswith("s.toml: ")
    return err.value.problems


# --- scenario files -------------------------------------------------------------------------------


def test_default_scenario_gives_documented_round_trips() -> None:
    sc = scenario.load()
    assert sc.flip_start == topology.CHINA
    china = 2 * sum(sc.one_way_ms(lk.name) for lk in topology.path_links("198.19.176.0/24", topology.CHINA))
    ttk = 2 * sum(sc.one_way_ms(lk.name) for lk in topology.path_links("198.19.177.0/24", topology.TTK))
    assert china == pytest.approx(40.0)
    assert ttk == pytest.approx(25.0)


def test_default_scenario_names_only_known_links_with_positive_delays() -> None:
    sc = scenario.load()
    assert set(sc.links) <= set(topology.LINK_NAMES)
    assert all(p.delay_ms > 0 and p.jitter_ms == 0 and p.loss_pct == 0 for p in sc.links.values())


def test_scenario_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        '[lab]\nflip_start = "transtelecom"\n[links.vp-home]\ndelay_ms = 0\n'
        "[links.isp-cu1]\ndelay_ms = 7.5\njitter_ms = 1\nloss_pct = 2\n"
    )
    sc = scenario.load(path)
    assert sc.flip_start == "transtelecom"
    assert sc.links["vp-home"] == scenario.LinkParams(0.0, 0.0, 0.0)
    assert sc.links["isp-cu1"] == scenario.LinkParams(7.5, 1.0, 2.0)
    assert sc.source == str(path)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[links.isp-cu1]\ndelay_ms = -1\n", "links.isp-cu1.delay_ms: must be >= 0"),
        ("[links.isp-cu1]\ndelay_ms = 'x'\n", "links.isp-cu1.delay_ms: must be a number, not str"),
        ("[links.isp-cu1]\ndelay_ms = true\n", "links.isp-cu1.delay_ms: must be a number, not bool"),
        ("[links.isp-cu1]\ndelay_ms = nan\n", "links.isp-cu1.delay_ms: must be a finite number"),
        ("[links.isp-cu1]\ndelay_ms = 20000\n", "links.isp-cu1.delay_ms: must be <= 10000"),
        (
            "[links.isp-cu1]\ndelay_ms = 1\njitter_ms = 2\n",
            "links.isp-cu1.jitter_ms: must be <= delay_ms (1)",
        ),
        ("[links.isp-cu1]\nloss_pct = 101\n", "links.isp-cu1.loss_pct: must be <= 100"),
        (
            "[links.isp-cu1]\ndelay = 1\n",
            "links.isp-cu1.delay: unknown key (known: delay_ms, jitter_ms, loss_pct)",
        ),
        (
            "[links.isp-cu9]\ndelay_ms = 1\n",
            "links.isp-cu9: unknown link (known: " + ", ".join(topology.LINK_NAMES) + ")",
        ),
        ("links = 3\n", "links: must be a table of links"),
        ("[links]\nisp-cu1 = 5\n", "links.isp-cu1: must be a table with delay_ms, jitter_ms, loss_pct"),
        (
            "[lab]\nflip_start = 'kptc'\n",
            "lab.flip_start: must be one of china_unicom, transtelecom, not 'kptc'",
        ),
        (
            "[lab]\nstart = 1\n",
            "lab.start: unknown key (known: flip_start, nat, nat_random, cgnat, rate_limit, "
            "icmp_ratelimit_ms, icmp_msgs_per_sec)",
        ),
        ("[lab]\nnat = 1\n", "lab.nat: must be true or false, not 1"),
        ("[lab]\nnat_random = true\n", "lab.nat_random: needs nat = true"),
        ("[lab]\nicmp_ratelimit_ms = -1\n", "lab.icmp_ratelimit_ms: must be 0..60000, not -1"),
        ("[lab]\nicmp_msgs_per_sec = 'x'\n", "lab.icmp_msgs_per_sec: must be an integer, not 'x'"),
        ("[link.isp-cu1]\ndelay_ms = 1\n", "link: unknown section (known: lab, links)"),
    ],
)
def test_bad_scenario_names_the_key(text: str, problem: str) -> None:
    assert problems_of(text) == (problem,)


def test_every_problem_is_listed_and_the_message_is_one_line() -> None:
    with pytest.raises(ConfigError) as err:
        scenario.loads("[links.isp-cu1]\ndelay_ms = -1\n[links.cu1-cu2]\nloss_pct = -3\n", "s.toml")
    assert err.value.problems == (
        "links.isp-cu1.delay_ms: must be >= 0",
        "links.cu1-cu2.loss_pct: must be >= 0",
    )
    assert str(err.value) == "s.toml: links.isp-cu1.delay_ms: must be >= 0 (and 1 more)"
    assert "\n" not in str(err.value)


def test_bad_toml_and_missing_file_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        scenario.loads("[links\n", "s.toml")
    with pytest.raises(ConfigError, match="cannot read scenario"):
        scenario.load(tmp_path / "absent.toml")


# --- topology predictions -------------------------------------------------------------------------


def _asn_table() -> list[tuple[ipaddress.IPv4Network, int]]:
    rows = []
    for line in topology.pfx2as().splitlines():
        prefix, length, asn = line.split("\t")
        rows.append((ipaddress.IPv4Network(f"{prefix}/{length}"), int(asn)))
    return rows


def _asn(address: str) -> int | None:
    addr = ipaddress.IPv4Address(address)
    hits = [(net.prefixlen, asn) for net, asn in _asn_table() if addr in net]
    return max(hits)[1] if hits else None


def test_everything_is_inside_the_benchmarking_block() -> None:
    lab_space = ipaddress.IPv4Network("198.18.0.0/15")
    for lk in topology.LINKS:
        assert ipaddress.IPv4Address(lk.a_addr) in lab_space and ipaddress.IPv4Address(lk.b_addr) in lab_space
    for net, _ in _asn_table():
        assert net.subnet_of(lab_space)


def test_hop_lists_cross_the_right_ases() -> None:
    china = topology.expected_hops("198.19.176.0/24", topology.CHINA)
    ttk = topology.expected_hops("198.19.177.0/24", topology.TTK)
    assert [_asn(h) if h else None for h in china] == [64512, 64513, 4837, 4837, 131279, 131279]
    assert [_asn(h) if h else None for h in ttk] == [64512, 64513, 20485, None, 20485, 131279, 131279]
    assert ttk.count(None) == 1 and china.count(None) == 0
    assert all(_asn(h) in range(64512, 65535) for h in china[:2])


def test_pfx2as_is_caida_format() -> None:
    for line in topology.pfx2as().splitlines():
        prefix, length, asn = line.split("\t")
        assert ipaddress.IPv4Network(f"{prefix}/{length}").prefixlen == int(length)
        assert int(asn) in (4837, 20485, 131279) or 64512 <= int(asn) <= 65534


def test_forward_and_return_routes_use_the_same_chain() -> None:
    for p24, role in topology.PREFIX_ROLE.items():
        for flip in topology.UPSTREAMS:
            fwd = {topology.upstream_of_gateway(g) for g in topology.gateways_for("isp", p24, flip)}
            back = {topology.upstream_of_gateway(g) for g in topology.gateways_for("border", p24, flip)}
            assert fwd == back
            expected = {flip} if role == "flip" else set(topology.upstreams_of(p24))
            assert fwd == expected


def test_link_names_fit_interface_names() -> None:
    for lk in topology.LINKS:
        assert len(kernel.wire_ifname(lk.name, "a")) <= 15
        assert len(lk.a_ifname) <= 15 and len(lk.b_ifname) <= 15
    assert len({lk.mac(s) for lk in topology.LINKS for s in "ab"}) == 2 * len(topology.LINKS)


# --- the delay line core (fake clock) --------------------------------------------------------------


def test_delay_line_releases_frames_at_their_due_time_in_order() -> None:
    line = DelayLine(rng=random.Random(7))
    ab = Direction("l", "a>b", delay_s=0.010, jitter_s=0.004, loss=0.0)
    for i in range(200):
        assert line.push(bytes([i % 256]), out=1, direction=ab, now=1.0 + i * 0.001)
    assert line.pop_due(1.0059) == []
    released = []
    t = 1.0
    while line:
        t += 0.0005
        released += [(due, frame) for due, _seq, _out, frame, _d in line.pop_due(t)]
    dues = [due for due, _ in released]
    assert dues == sorted(dues)  # never reordered, jitter or not
    assert [f for _, f in released] == [bytes([i % 256]) for i in range(200)]
    waits = [due - (1.0 + i * 0.001) for i, due in enumerate(dues)]
    assert min(waits) >= 0.006 - 1e-9 and max(waits) <= 0.014 + 1e-9
    assert sum(waits) / len(waits) == pytest.approx(0.010, abs=0.001)


def test_delay_line_loss_is_counted() -> None:
    line = DelayLine(rng=random.Random(3))
    d = Direction("l", "a>b", delay_s=0.0, jitter_s=0.0, loss=0.25)
    kept = sum(line.push(b"x", out=0, direction=d, now=0.0) for _ in range(4000))
    assert d.dropped == 4000 - kept
    assert 0.22 < d.dropped / 4000 < 0.28


def test_lateness_estimate_converges_and_is_capped() -> None:
    lat = Lateness(cap_s=0.0005)
    for _ in range(200):
        # The loop wakes `estimate` early; the kernel adds 80 us: the residual is 80 us - estimate.
        lat.observe(0.000080 - lat.estimate_s)
    assert lat.estimate_s == pytest.approx(0.000080, abs=2e-6)
    for _ in range(200):
        lat.observe(0.01)
    assert lat.estimate_s == pytest.approx(0.0005)


# --- the files `lab up` writes ----------------------------------------------------------------------


def _info(prefix: str = "nkp-u-") -> LabInfo:
    names = {role: topology.namespace(prefix, role) for role in topology.ROLES}
    return build._lab_info(prefix, names, scenario.load(), "wire", topology.CHINA)


def test_lab_info_round_trips_through_json() -> None:
    info = _info()
    again = LabInfo.from_json(info.to_json())
    assert again == info
    assert info.vantage_ns == "nkp-u-vp"
    assert info.state_dir == Path("/run/nkprobe-lab/nkp-u")
    p = info.prefixes["198.19.177.0/24"]
    assert p.hops[topology.TTK][3] is None
    assert p.rtt_ms == {topology.TTK: 25.0}
    assert info.prefixes["198.19.178.0/24"].rtt_ms == {topology.CHINA: 40.0, topology.TTK: 25.0}
    assert info.current_upstreams("198.19.179.20") == (topology.CHINA,)
    assert info.current_upstreams("198.19.178.0/24") == topology.UPSTREAMS
    assert info.expected_hops("198.19.176.20", topology.CHINA)[-1] == "198.19.176.20"
    assert len(info.targets) == 8


def test_agent_config_is_valid_for_the_agent() -> None:
    info = _info()
    cfg = loads_config(build.agent_config(info), "lab.toml")
    assert {t.address for t in cfg.targets} == set(info.targets)
    assert cfg.destination.asn == 131279
    assert cfg.destination.prefixes == ("198.19.176.0/22",)
    assert cfg.asn.files == (str(info.asn_file),)
    assert cfg.upstreams["china_unicom"] == (4837,) and cfg.upstreams["transtelecom"] == (20485,)


def test_prefix_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NKPROBE_LAB_PREFIX", raising=False)
    assert resolve_prefix() == "nkp-"
    monkeypatch.setenv("NKPROBE_LAB_PREFIX", "nkp-x3-")
    assert resolve_prefix() == "nkp-x3-"
    assert state_dir("nkp-x3-") == Path("/run/nkprobe-lab/nkp-x3")
    with pytest.raises(Exception, match="bad lab prefix"):
        resolve_prefix("../etc")


def test_non_root_gets_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(PrivilegeError):
        build.require_root()
    # The whole CLI in a fresh interpreter that believes it is not root.
    code = (
        "import os, sys; os.geteuid = lambda: 1000; from agent.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    for action in ("up", "down", "status"):
        proc = subprocess.run(
            [sys.executable, "-c", code, "lab", "--prefix", "nkp-u-", action],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count("\n") == 1 and "root" in proc.stderr
        assert not Path("/run/netns/nkp-u-vp").exists()


@pytest.mark.parametrize("module", ["topology", "scenario", "info", "build", "kernel", "wire"])
def test_doctests(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(f"agent.lab.{module}"))
    assert result.failed == 0 and result.attempted > 0


def _lab_args(*argv: str) -> argparse.Namespace:
    from agent.commands import lab as lab_cmd

    parser = argparse.ArgumentParser()
    lab_cmd.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_bad_scenario_stops_up_before_anything_is_built(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from agent.commands import lab as lab_cmd

    bad = tmp_path / "bad.toml"
    bad.write_text("[links.isp-cu1]\ndelay_ms = -1\n")
    monkeypatch.setattr("os.geteuid", lambda: 0)
    monkeypatch.setattr(build, "up", lambda *_: pytest.fail("up() must not run with a bad scenario"))
    with pytest.raises(ConfigError) as err:
        lab_cmd.run(_lab_args("--prefix", "nkp-u-", "up", "--scenario", str(bad)))
    assert err.value.exit_code == 2
    assert "links.isp-cu1.delay_ms: must be >= 0" in str(err.value)


def test_a_lab_that_is_not_up_fails_closed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from agent.lab import info

    monkeypatch.setattr(info, "RUN_DIR", tmp_path)
    with pytest.raises(LabError, match=r"lab 'nkp-u-' is not up .* run `nkprobe lab up`") as err:
        info.load("nkp-u-")
    assert err.value.exit_code == 2
    (tmp_path / "nkp-u").mkdir()
    (tmp_path / "nkp-u" / "lab.json").write_text("{not json")
    with pytest.raises(LabError, match="lab down"):
        info.load("nkp-u-")
