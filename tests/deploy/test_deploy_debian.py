"""The Debian package (deploy/debian/, built by deploy/debian/build.sh) as a user gets it, on both
releases a Raspberry Pi runs: in a minimal root of Debian bookworm (Python 3.11) and of trixie (Python
3.13), made by mmdebstrap for this machine's architecture and cached under /var/cache
(tests/support/debroot.py),
`apt-get install ./nkprobe_VERSION_all.deb` resolves its dependencies from Debian's archive; then
`nkprobe --version`, `nkprobe check-config`, the files, user and units the package promises, the unit
tests that need no namespace lab (the web config's basic-auth test among them) with that release's
python3 and library packages, the agent started as its unit runs it (deploy/debian/smoke-test.sh, in a
loopback-only network namespace), an upgrade stopped by a config made invalid by hand, remove and purge.
About 1.5 minutes a release with a warm cache. Also: lintian finds no error in the package."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from agent import __version__
from tests.support.debpackage import NEXT_VERSION
from tests.support.debroot import RELEASES, DebianRoot
from tests.support.deployhelp import REPO, need_tool
from tests.support.steering import shared_file

# What the unit tests need beyond the package's own Depends, from the release's Debian packages: the
# test runner, the packet oracle (scapy, without its Recommends) and openssl (the TLS test's certificates).
TEST_PACKAGES = ("python3-pytest", "python3-hypothesis", "python3-pytest-timeout", "python3-scapy", "openssl")

NO_SAGAN = "ripe.atlas.sagan, RIPE's parser, is not packaged in Debian"
SOURCES = "reads the checkout's agent/ sources, not the installed package"
NETNS = "network namespaces made with ip netns (needs /run/netns and /sys in the root)"
PROMTOOL = "promtool (prometheus)"
# The agent writes what prometheus-client 0.26 writes (README "Dependencies"); the roots have Debian's
# older one (bookworm 0.16, trixie 0.21: other Content-Type negotiation, Go's old exponent format).
CLIENT_026 = "compares with prometheus-client 0.26's encoder; Debian ships an older one"
# Tests left out in the roots, each with the reason: they need what a Debian root does not have, and
# they run on the host in CI anyway.
NOT_IN_ROOT = {
    "tests/deploy": "the deploy files checked with the host's tools (promtool, shellcheck, mmdebstrap, ...)",
    "tests/fleet": "imports bench/ and runs VictoriaMetrics",
    "tests/classify/test_ripe.py": NO_SAGAN,
    "tests/classify/test_classify_command.py": NO_SAGAN,
    "tests/net/test_commands_output.py::test_ping_lines_and_ripe_ping_json": NO_SAGAN,
    "tests/net/test_engine_loopback.py": NETNS,
    "tests/net/test_localnet.py::test_watcher_sees_a_default_route_change_in_its_namespace": NETNS,
    "tests/net/test_localnet.py::test_watcher_sees_its_link_go_down": NETNS,
    "tests/net/test_pinger.py::test_a_lazy_volley_is_read_at_one_look_with_kernel_stamped_rtts": NETNS,
    "tests/test_imports.py::test_the_agents_path_imports_none_of_the_heavy_packages": SOURCES,
    "tests/exporter/test_exposition.py::test_the_same_bytes_and_content_type_as_"
    "prometheus_client_for_every_accept_header": CLIENT_026,
    "tests/exporter/test_exposition.py::test_values_are_written_as_client_python_writes_them": CLIENT_026,
    "tests/test_removed_stdlib.py": SOURCES,
    "tests/test_layout.py::test_every_subdirectory_mirrors_an_agent_package_or_is_cross_cutting": SOURCES,
    "tests/exporter/test_collector.py::test_promtool_check_metrics_accepts_the_scrape": PROMTOOL,
    "tests/classify/test_configured_table.py::test_trace_run_classify_and_asn_call_the_same_loader": SOURCES,
}  # fmt: skip
RIS_SERVER = "the tests' RIS Live stand-in is websockets 13+'s asyncio server; bookworm ships websockets 10.4"
# And on one release only.
NOT_IN_ROOT_OF = {
    "bookworm": {
        "tests/bgp/test_live_feed.py": RIS_SERVER,
        "tests/bgp/test_live_command.py::test_live_prints_the_view_then_each_change": RIS_SERVER,
        "tests/bgp/test_live_command.py::test_live_json_is_one_document_at_the_end": RIS_SERVER,
        "tests/bgp/test_live_reload.py::test_reload_turns_the_live_view_off_and_on": RIS_SERVER,
        "tests/bgp/test_live_retrace.py": RIS_SERVER,
    },
}
WEB_CONFIG_TEST = "tests.exporter.test_server"


def _pytest_args(suite: str) -> list[str]:
    args = ["-m", "not lab", "tests"]
    for what in {**NOT_IN_ROOT, **NOT_IN_ROOT_OF.get(suite, {})}:
        args += ["--deselect", what] if "::" in what else ["--ignore", what]
    return args


def test_lintian_reports_no_error_or_warning(deb: Path) -> None:
    lintian = need_tool("lintian")
    proc = subprocess.run([lintian, str(deb)], capture_output=True, text=True, timeout=300)
    tags = [ln for ln in proc.stdout.splitlines() if ln[:2] in ("E:", "W:")]
    assert tags == [] and proc.returncode == 0, proc.stdout + proc.stderr  # no error, no warning
    print(f"lintian: {proc.stdout.strip() or 'no tags'}")


def test_build_refuses_a_bad_version(tmp_path: Path) -> None:
    build = [str(REPO / "deploy/debian/build.sh"), "--version", "1.0-rc1", "--out", str(tmp_path)]
    proc = subprocess.run(build, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--version '1.0-rc1': use digits and dots" in proc.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("suite", sorted(RELEASES))
def test_package_on_a_minimal_debian_root(suite: str, deb: Path, next_deb: Path, tmp_path: Path) -> None:
    need_tool("unshare")
    root = DebianRoot(suite, tmp_path)
    try:
        unpacked = root.create()
        _install_and_check(root, deb)
        # The agent itself, as its unit runs it, in a namespace with only loopback (smoke-test.sh; it
        # needs ip and checks that scapy is absent, so before the test packages).
        root.ok("apt-get", "install", "-y", "-q", "--no-install-recommends", "iproute2")
        shutil.copy(REPO / "deploy/debian/smoke-test.sh", root.path("/tmp/smoke-test.sh"))
        smoke = root.ok("sh", "/tmp/smoke-test.sh", f"/tmp/{deb.name}")
        assert 'nkprobe_agent_info{agent="smoke-test"' in smoke and "smoke-test.sh: ok" in smoke, smoke
        ran = _run_unit_tests(root)
        _upgrade_with_an_invalid_config(root, next_deb)
        _remove_then_purge(root)
        print(f"{suite}: root ready in {unpacked:.0f} s; {ran}")
    finally:
        root.keep_downloads()
        root.remove()


def _install_and_check(root: DebianRoot, deb: Path) -> None:
    """A plain `apt-get install ./nkprobe_VERSION_all.deb` (Recommends included, as a user types it)."""
    shutil.copy(deb, root.path("/tmp") / deb.name)
    # Where a library cannot be had (here: apt has no package lists yet), apt's own dependency error.
    assert not any(root.path("/var/lib/apt/lists").glob("*_Packages*"))
    missing = root.run("apt-get", "install", "-y", f"/tmp/{deb.name}")
    assert missing.returncode != 0 and "Traceback" not in missing.stdout + missing.stderr
    assert "nkprobe : Depends:" in missing.stdout, missing.stdout
    assert "Depends: python3-bcrypt but it is not installable" in missing.stdout, missing.stdout
    root.ok("apt-get", "update", "-q")
    started = time.monotonic()
    proc = root.run("apt-get", "install", "-y", f"/tmp/{deb.name}")
    took = time.monotonic() - started
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    size = re.search(r"After this operation, (.*) of additional disk space will be used", out)
    assert size, out[-2000:]
    print(f"{root.suite}: plain install {took:.0f} s, {size[1]} (apt)")
    # No container runs systemd here: the postinst says the units were enabled but not started.
    assert "systemd is not running here" in out and "were not started" in out, out[-2000:]
    # python3-scapy is a Suggests: never installed, nor its heavy Recommends.
    for absent in ("python3-scapy", "ipython3", "python3-matplotlib", "python3-scipy"):
        assert not root.installed(absent), absent
    libraries = ("prometheus-client", "icmplib", "bcrypt", "yaml", "websockets")
    for dep in (f"python3-{lib}" for lib in libraries):
        assert root.installed(dep), dep

    assert root.ok("nkprobe", "--version").strip() == f"nkprobe {__version__}"
    assert root.ok("nkprobe", "check-config", "/etc/nkprobe/config.toml").startswith(
        "/etc/nkprobe/config.toml: ok"
    )
    where = root.ok("python3", "-c", "import agent; print(agent.__file__)").strip()
    assert where == "/usr/lib/python3/dist-packages/agent/__init__.py"

    passwd = {ln.split(":")[0]: ln.split(":") for ln in root.path("/etc/passwd").read_text().splitlines()}
    _, _, uid, _, _, home, shell = passwd["nkprobe"]
    assert int(uid) < 1000 and home == "/var/lib/nkprobe" and shell == "/usr/sbin/nologin"  # sysusers.d
    assert root.stat("/var/lib/nkprobe") == "nkprobe:nkprobe 750"
    assert root.stat("/etc/nkprobe/config.toml") == "root:root 644"
    assert (
        root.path("/etc/nkprobe/config.toml").read_bytes()
        == (REPO / "deploy/config.example.toml").read_bytes()
    )
    conffiles = root.ok("dpkg-query", "-W", "-f", "${Conffiles}", "nkprobe")
    assert "/etc/nkprobe/config.toml" in conffiles
    for unit in ("nkprobe.service", "nkprobe-asn-update.service", "nkprobe-asn-update.timer"):
        assert (
            root.path(f"/lib/systemd/system/{unit}").read_bytes()
            == (REPO / "deploy/systemd" / unit).read_bytes()
        )
    # Enabled by dh_installsystemd's postinst (symlinks made without a running systemd).
    assert root.path("/etc/systemd/system/multi-user.target.wants/nkprobe.service").is_symlink()
    assert root.path("/etc/systemd/system/timers.target.wants/nkprobe-asn-update.timer").is_symlink()


def _run_unit_tests(root: DebianRoot) -> str:
    """The unit tests (no namespace lab) against the installed package and the release's libraries."""
    root.ok("apt-get", "install", "-y", "-q", "--no-install-recommends", *TEST_PACKAGES)
    dest = root.path("/opt/nkprobe-tests")
    dest.mkdir(parents=True)
    # tests/ and pyproject.toml (pytest's settings), and the data files the config tests compare with
    # the installed ones: the example config and agent/data/ (no module: a directory without
    # __init__.py never shadows a regular package, so `import agent` stays the installed one, checked).
    shutil.copytree(REPO / "tests", dest / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", dest)
    (dest / "deploy").mkdir()
    shutil.copy(REPO / "deploy/config.example.toml", dest / "deploy")
    shutil.copytree(REPO / "agent/data", dest / "agent/data")
    where = root.ok("sh", "-c", "cd /opt/nkprobe-tests && python3 -c 'import agent; print(agent.__file__)'")
    assert where.strip() == "/usr/lib/python3/dist-packages/agent/__init__.py"
    real_table = shared_file("data/asn/upstreams-and-transit.pfx2as")
    if real_table is not None:  # beside the copy, where tests/support/steering.py looks
        (root.path("/opt/shared/data/asn")).mkdir(parents=True)
        shutil.copy(real_table, root.path("/opt/shared/data/asn"))
    proc = root.run(
        "sh", "-c", 'cd /opt/nkprobe-tests && exec python3 -m pytest -q -p no:cacheprovider --maxfail=20 '
        '--junitxml=/tmp/junit.xml "$@"', "pytest", *_pytest_args(root.suite),
        env={"CI": "true", "HOME": "/root"}, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, f"unit tests in {root.suite}: {proc.stdout[-5000:]}{proc.stderr[-2000:]}"
    cases = ET.parse(root.path("/tmp/junit.xml")).getroot().iter("testcase")
    outcome: dict[str, int] = {}
    web = 0
    for case in cases:
        kind = next((c.tag for c in case if c.tag in ("failure", "error", "skipped")), "passed")
        outcome[kind] = outcome.get(kind, 0) + 1
        web += kind == "passed" and case.get("classname", "").startswith(WEB_CONFIG_TEST)
    assert web >= 5, "the web config tests (basic auth with bcrypt, TLS) did not run"
    assert outcome.get("passed", 0) > 500, outcome
    python = root.ok("python3", "-c", "import platform; print(platform.python_version())").strip()
    return f"unit tests with Python {python}: {outcome} ({web} web-config tests passed)"


SYSTEMCTL_RECORDER = '#!/bin/sh\necho "$*" >> /tmp/systemctl.log\n'


def _upgrade_with_an_invalid_config(root: DebianRoot, next_deb: Path) -> None:
    """As under systemd (a recording systemctl, /run/systemd/system present): an upgrade over a config
    made invalid by hand stops before the restart, with check-config's message; fixed, it restarts."""
    root.ok("dpkg-divert", "--local", "--rename", "--add", "/usr/bin/systemctl")
    systemctl = root.path("/usr/bin/systemctl")
    systemctl.write_text(SYSTEMCTL_RECORDER)
    systemctl.chmod(0o755)
    root.path("/run/systemd/system").mkdir(parents=True, exist_ok=True)
    log = root.path("/tmp/systemctl.log")
    config = root.path("/etc/nkprobe/config.toml")
    good = config.read_text()
    config.write_text(good.replace("max_pps = 10 ", "max_pps = 0  ", 1))
    assert config.read_text() != good
    shutil.copy(next_deb, root.path("/tmp") / next_deb.name)

    proc = root.run("apt-get", "install", "-y", f"/tmp/{next_deb.name}")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-2000:]
    assert "nkprobe: /etc/nkprobe/config.toml is invalid, so nkprobe.service was not (re)started" in out
    assert "agent.max_pps" in out, out[-2000:]  # check-config's own message, by key path
    calls = log.read_text().splitlines() if log.exists() else []
    assert not [
        c for c in calls if "nkprobe.service" in c and re.search(r"\b(restart|reload|start|stop)\b", c)
    ], calls
    assert root.ok("nkprobe", "--version").strip() == f"nkprobe {NEXT_VERSION}"  # unpacked, not configured
    assert "half-configured" in root.ok("dpkg-query", "-W", "-f", "${Status}", "nkprobe")

    config.write_text(good)
    root.ok("dpkg", "--configure", "-a")
    calls = log.read_text().splitlines()
    assert any(re.search(r"\brestart\b.*\bnkprobe\.service\b", c) for c in calls), calls
    assert root.installed("nkprobe")


def _remove_then_purge(root: DebianRoot) -> None:
    root.path("/var/lib/nkprobe/history.db").write_text("the path history")
    root.ok("apt-get", "remove", "-y", "nkprobe")
    assert not root.path("/usr/bin/nkprobe").exists()
    assert root.path("/etc/nkprobe/config.toml").is_file()
    assert root.path("/var/lib/nkprobe/history.db").read_text() == "the path history"
    assert any(
        re.search(r"\bstop\b.*\bnkprobe\.service\b", c)
        for c in root.path("/tmp/systemctl.log").read_text().splitlines()
    )
    root.ok("apt-get", "purge", "-y", "nkprobe")
    assert not root.path("/etc/nkprobe").exists() and not root.path("/var/lib/nkprobe").exists()
