"""Every invalid fixture in tests/config/invalid/ with its exact problems, in order: config is
validated once, at load, and each fixture fails one rule.

`{path}` in an expected message stands for the fixture's path.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import load_config
from agent.errors import ConfigError

INVALID = Path(__file__).parent / "invalid"

EXPECTED: dict[str, tuple[str, ...]] = {
    "agent_not_table": ("agent: must be a table",),
    "asn_in_two_groups": (
        "upstreams.transtelecom[1]: AS9929 is already in group china_unicom; an ASN may be in only one group",
    ),
    "asn_source_not_url": ("asn.sources[0]: must be an http, https or file URL",),
    "asn_zero": ("upstreams.transtelecom[0]: must be >= 1 and <= 4294967295",),
    "border_inside_destination": (
        "borders.transtelecom[0]: 175.45.176.1 is inside destination.prefixes, not an upstream",
    ),
    "classify_unknown_key": ("classify.exchange_prefix: unknown key; did you mean exchange_prefixes?",),
    "border_twice": ("borders.transtelecom[0]: 103.35.255.254 is already a border of china_unicom",),
    "destination_asn_upstream": (
        "upstreams.transtelecom: AS131279 is destination.asn; it cannot be an upstream",
    ),
    "exchange_prefix_host_bits": (
        "classify.exchange_prefixes[0]: 80.81.192.1/21 has host bits set; write 80.81.192.0/21",
    ),
    "exchange_prefix_in_destination": (
        "classify.exchange_prefixes[1]: 175.45.178.0/24 overlaps destination.prefixes (175.45.176.0/22); "
        "an exchange LAN lies outside it",
    ),
    "exchange_prefix_not_prefix": ("classify.exchange_prefixes[0]: not an IPv4 prefix: 'DE-CIX'",),
    "exchange_prefix_not_string": ("classify.exchange_prefixes[0]: must be a string like 80.81.192.0/21",),
    "exchange_prefix_too_broad": (
        "classify.exchange_prefixes[0]: 80.0.0.0/8 is too broad for an exchange LAN; use /16 or longer",
    ),
    "exchange_prefix_twice": ("classify.exchange_prefixes[1]: 80.81.192.0/21 is listed twice",),
    "exchange_prefixes_not_list": ("classify.exchange_prefixes: must be a list",),
    "gap_over_max_hops": ("trace.gap_limit: must be <= trace.max_hops (16)",),
    "lookahead_under_gap_limit": (
        "trace.lookahead: must be >= trace.gap_limit (6), or a silent stretch never ends a trace",
    ),
    "group_name_upper": ("upstreams.ChinaUnicom: must be lowercase letters, digits and _ (a label value)",),
    "hysteresis_zero": ("trace.hysteresis: must be >= 1 and <= 100",),
    "listen_bad_ipv6": ("agent.listen: not an IPv6 address in brackets: [::zz]",),
    "listen_no_port": (
        "agent.listen: must be HOST:PORT with a port from 0 (any free port) to 65535, e.g. 127.0.0.1:9931",
    ),
    "listen_host_name": (
        "agent.listen: give the host as an IP address or localhost, not 'pi.local' (a name is not resolved)",
    ),
    "many_problems": (
        "agent.max_pps: must be > 0 and <= 1000",
        "upstreams.other: 'other' is a reserved tag and cannot be a group name",
        "targets[2].address: not an IPv4 address",
        "targets[3].address: 8.8.8.8 is outside destination.prefixes",
    ),
    "max_pps_bool": ("agent.max_pps: must be a number",),
    "max_pps_too_high": ("agent.max_pps: must be > 0 and <= 1000",),
    "max_pps_zero": ("agent.max_pps: must be > 0 and <= 1000",),
    "name_empty": ("agent.name: must not be empty",),
    "owner_not_address": (
        "agent.owner: must be an e-mail address such as volunteer@example.org (alerts go there)",
    ),
    "netns_bad": ("agent.netns: must be a network namespace name (letters, digits, . _ -)",),
    "ping_interval_negative": ("ping.interval_s: must be > 0 and <= 86400",),
    "ping_protocol_udp": ("ping.protocols[1]: must be one of icmp, tcp",),
    "ping_protocols_empty": ("ping.protocols: must not be empty",),
    "prefix_host_bits": (
        "destination.prefixes[0]: 175.45.176.1/22 has host bits set; write 175.45.176.0/22",
    ),
    "prefix_too_broad": (
        "destination.prefixes[0]: 0.0.0.0/0 is too broad for an allowlist; use /16 or longer",
    ),
    "prefixes_empty": ("destination.prefixes: must not be empty",),
    "prefixes_overlap": (
        "destination.prefixes[1]: 175.45.177.0/24 overlaps 175.45.176.0/22; list each address once",
    ),
    "reserved_other": ("upstreams.other: 'other' is a reserved tag and cannot be a group name",),
    "reserved_unknown": ("upstreams.unknown: 'unknown' is a reserved tag and cannot be a group name",),
    "retention_zero": ("history.retention_days: must be > 0 and <= 36500",),
    "ripestat_url_not_http": (
        "asn.ripestat_url: must be an http or https URL such as https://stat.ripe.net",
    ),
    "ripestat_url_not_string": ("asn.ripestat_url: must be a string",),
    "suffix_not_a_name": (
        "names.suffixes.transtelecom[0]: must be a DNS name suffix such as transtelecom.net",
    ),
    "suffix_unknown_group": ("names.suffixes.rostelecom: 'rostelecom' is not a group in [upstreams]",),
    "target_duplicate": ("targets[1].address: 175.45.176.71 is already targets[0]",),
    "target_missing_address": ("targets[0].address: missing; every target needs an address",),
    "target_name_duplicate": ("targets[1].name: 'kcna' is already the name of targets[0]",),
    "target_not_ipv4": ("targets[2].address: not an IPv4 address",),
    "target_outside": ("targets[0].address: 8.8.8.8 is outside destination.prefixes",),
    "target_port_range": ("targets[0].port: must be >= 1 and <= 65535",),
    "target_typo": (
        "targets[0].adress: unknown key; did you mean address?",
        "targets[0].address: missing; every target needs an address",
    ),
    "targets_not_array": ('targets: must be an array of tables: [[targets]] address = "..."',),
    "toml_syntax": (
        "{path}: not valid TOML: Expected '=' after a key in a key/value pair (at line 2, column 6)",
    ),
    "trace_flows_float": ("trace.flows: must be an integer",),
    "trace_interval_string": ("trace.interval_s: must be a number of seconds",),
    "trace_interval_zero": ("trace.interval_s: must be > 0 and <= 86400",),
    "trace_port_range": ("trace.port: must be >= 1 and <= 65535",),
    "trace_protocol": ("trace.protocol: must be one of icmp, udp, tcp",),
    "unknown_key": ("agent.max_ppps: unknown key; did you mean max_pps?",),
    "unknown_section": ("agnet: unknown key; did you mean agent?",),
    "upstreams_empty": ("upstreams: must name at least one group, e.g. transtelecom = [20485]",),
}


def test_every_fixture_has_an_expectation_and_back() -> None:
    on_disk = {p.stem for p in INVALID.glob("*.toml")}
    assert on_disk == set(EXPECTED)
    assert len(on_disk) >= 20


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_invalid_fixture(name: str) -> None:
    path = str(INVALID / f"{name}.toml")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    expected = tuple(p.replace("{path}", path) for p in EXPECTED[name])
    assert info.value.problems == expected
    message = str(info.value)
    # The one-line message names the file, the count and the first problem.
    assert "\n" not in message
    assert message.startswith(f"{path}: ") or message.startswith(expected[0])
    assert expected[0] in message


def test_check_config_lists_every_problem_and_exits_2() -> None:
    path = str(INVALID / "many_problems.toml")
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "check-config", path], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[0] == f"{path}: 4 problems; fix them and run check-config again:"
    assert tuple(lines[1:]) == EXPECTED["many_problems"]
    assert proc.stdout == ""


def test_check_config_ok_exits_0() -> None:
    path = str(Path(__file__).resolve().parents[2] / "deploy" / "config.example.toml")
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "check-config", path], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 1
    assert proc.stdout.startswith(f"{path}: ok: 5 targets in 4 /24s")


def test_unreadable_file_is_one_problem(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.toml")
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert info.value.problems == (f"{missing}: cannot read the config file: No such file or directory",)
    assert info.value.exit_code == 2


def test_other_commands_get_a_one_line_message(tmp_path: Path) -> None:
    """A command that loads a bad config prints one line naming the first problem and check-config."""
    path = str(INVALID / "many_problems.toml")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (
        f"{path}: 4 configuration problems, first: agent.max_pps: must be > 0 and <= 1000; "
        f"run 'nkprobe check-config {path}' to list them all"
    )
