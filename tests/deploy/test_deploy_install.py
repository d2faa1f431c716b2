"""deploy/raspberry-pi/install.sh: shellcheck clean; installs, reinstalls and uninstalls the expected
files into a fake root with every command of the target system and systemctl recorded (fast); and for
real, twice, in a minimal Debian bookworm root made by mmdebstrap, with the installed unit's command run
in the lab in between (about a minute)."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
import tomllib
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent import __version__
from tests.support.debpackage import NEXT_VERSION
from tests.support.debroot import DebianRoot
from tests.support.deployhelp import (
    CENTRAL,
    DEPLOY,
    MDWE_EXEC,
    FakeRoot,
    need_tool,
    unit_directives,
)

if TYPE_CHECKING:
    from agent.lab.info import LabInfo

INSTALL = DEPLOY / "raspberry-pi" / "install.sh"  # also in deployhelp
URL = "https://central.invalid:9090/api/v1/write"


def test_shellcheck_clean() -> None:
    tool = need_tool("shellcheck")
    scripts = [INSTALL, CENTRAL / "setup.sh"]
    proc = subprocess.run([tool, *map(str, scripts)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout


@pytest.fixture
def fake(tmp_path: Path, deb: Path) -> FakeRoot:
    return FakeRoot(tmp_path, deb)


def _install(fake: FakeRoot, *extra: str) -> subprocess.CompletedProcess[str]:
    return fake.run("--name", "pi-berlin-1", "--central-url", URL, "--password", "s3cr&t\\x", *extra)


def test_first_install_lays_out_everything(fake: FakeRoot) -> None:
    proc = _install(fake)
    assert proc.returncode == 0, proc.stderr
    config = fake.path("/etc/nkprobe/config.toml").read_text()  # the package's, named
    assert 'name = "pi-berlin-1"' in config
    assert config.replace('"pi-berlin-1"', '"nkprobe"', 1) == (DEPLOY / "config.example.toml").read_text()
    assert 'set agent.name = "pi-berlin-1" in /etc/nkprobe/config.toml' in proc.stderr
    assert fake.mode("/etc/nkprobe/config.toml") == 0o644
    assert fake.path("/etc/nkprobe/remote-write-password").read_text() == "s3cr&t\\x"
    assert fake.mode("/etc/nkprobe/remote-write-password") == 0o600
    env = fake.path("/etc/nkprobe/forwarder.env").read_text()
    assert f"NKPROBE_REMOTE_WRITE_URL={URL}\n" in env
    assert "NKPROBE_REMOTE_WRITE_USERNAME=pi-berlin-1\n" in env
    fwd = fake.path("/etc/nkprobe/forwarder.yml").read_text()
    assert '- targets: ["127.0.0.1:9931"]' in fwd and 'agent: "pi-berlin-1"' in fwd and "@" not in fwd
    assert fake.mode("/etc/systemd/system/nkprobe-forwarder.service") == 0o644
    assert not fake.path("/etc/systemd/system/nkprobe.service").exists()  # the package's, in /lib
    # vmagent is the forwarder where Debian has it (the fake apt knows every package).
    assert (
        fake.path("/etc/systemd/system/nkprobe-forwarder.service").read_text()
        == (DEPLOY / "systemd" / "nkprobe-forwarder.service").read_text()
    )
    assert not fake.path("/opt/nkprobe").exists()
    assert not list(fake.path("/tmp").iterdir())  # the .deb handed to apt is gone

    calls = fake.chroot_calls()
    forwarder = next(c for c in calls if c.startswith("apt-get install")).split()
    assert forwarder[-1] == "victoria-metrics" and "--no-install-recommends" in forwarder
    install = [c for c in calls if c.startswith("apt-get install")][1].split()
    assert "-o" in install and "Dpkg::Options::=--force-confold" in install  # the user's config stays
    deb_name = f"/nkprobe_{__version__}_all.deb"
    assert any(a.startswith("/tmp/nkprobe-deb.") and a.endswith(deb_name) for a in install)
    assert "/usr/bin/nkprobe check-config /etc/nkprobe/config.toml" in calls
    sysd = fake.systemctl_calls()
    assert sysd[0] == "daemon-reload"
    assert "disable --now victoria-metrics.service" in sysd  # the package's own server, unwanted
    assert "enable nkprobe.service nkprobe-asn-update.timer nkprobe-forwarder.service" in sysd
    assert "restart nkprobe.service nkprobe-forwarder.service" in sysd


def test_rerun_keeps_the_users_config_and_password(fake: FakeRoot) -> None:
    assert _install(fake).returncode == 0
    config = fake.path("/etc/nkprobe/config.toml")
    config.write_text(config.read_text() + "\n# my own edit\n")
    edited = config.read_text()
    # Second run: no URL, user or password given; all kept from the first.
    proc = fake.run()
    assert proc.returncode == 0, proc.stderr
    assert config.read_text() == edited
    assert "kept your /etc/nkprobe/config.toml" in proc.stderr
    assert fake.path("/etc/nkprobe/remote-write-password").read_text() == "s3cr&t\\x"
    env = fake.path("/etc/nkprobe/forwarder.env").read_text()
    assert f"NKPROBE_REMOTE_WRITE_URL={URL}\n" in env and "USERNAME=pi-berlin-1\n" in env
    assert 'agent: "pi-berlin-1"' in fake.path("/etc/nkprobe/forwarder.yml").read_text()


def test_prometheus_agent_fallback_renders_a_valid_config(fake: FakeRoot) -> None:
    proc = _install(fake, "--forwarder", "prometheus", "--username", "u1", "--no-start")
    assert proc.returncode == 0, proc.stderr
    fwd = fake.path("/etc/nkprobe/forwarder.yml")
    text = fwd.read_text()
    assert f'url: "{URL}"' in text and 'username: "u1"' in text
    assert "password_file: /run/credentials/nkprobe-forwarder.service/remote-write-password" in text
    assert "--enable-feature=agent" in fake.path("/etc/systemd/system/nkprobe-forwarder.service").read_text()
    assert not any(c.startswith("restart") for c in fake.systemctl_calls())  # --no-start
    promtool = need_tool("promtool")
    check = subprocess.run([promtool, "check", "config", str(fwd)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_vmagent_accepts_the_forwarder_config(fake: FakeRoot) -> None:
    assert _install(fake).returncode == 0
    vmagent = need_tool("vmagent")
    proc = subprocess.run(
        [vmagent, f"-promscrape.config={fake.path('/etc/nkprobe/forwarder.yml')}", "-dryRun"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr


def test_uninstall_keeps_history_unless_purged(fake: FakeRoot) -> None:
    """(The fake root's dpkg knows no package: apt remove/purge are the real-root test's part.)"""
    assert _install(fake).returncode == 0
    fake.path("/var/lib/nkprobe").mkdir(parents=True, exist_ok=True)
    fake.path("/var/lib/nkprobe/history.db").write_text("history")
    proc = fake.run("uninstall")
    assert proc.returncode == 0, proc.stderr
    assert not fake.path("/etc/systemd/system/nkprobe-forwarder.service").exists()
    assert fake.path("/var/lib/nkprobe/history.db").read_text() == "history"
    assert fake.path("/etc/nkprobe/config.toml").is_file()
    assert fake.systemctl_calls()[0] == "disable --now nkprobe-forwarder.service"
    proc = fake.run("uninstall", "--purge")
    assert proc.returncode == 0, proc.stderr
    assert not fake.path("/var/lib/nkprobe").exists()
    assert not fake.path("/etc/nkprobe").exists()
    assert any(c.startswith("userdel nkprobe") for c in fake.chroot_calls())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--name", "x"], "--central-url is required"),
        (["--central-url", URL], "--password or --password-file is required"),
        (["--central-url", "ftp://x", "--password", "p"], "bad --central-url"),
        (["--name", "a b", "--forwarder", "none"], "bad --name"),
        (["--forwarder", "telegraf"], "--forwarder must be"),
        (["--bogus"], "unknown argument '--bogus'"),
    ],
)
def test_bad_arguments_exit_2_with_a_reason(fake: FakeRoot, args: list[str], message: str) -> None:
    proc = fake.run(*args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert not fake.path("/etc/nkprobe").exists()


def test_standalone_without_forwarder(fake: FakeRoot) -> None:
    proc = fake.run("--forwarder", "none")
    assert proc.returncode == 0, proc.stderr
    assert 'name = "pi-test"' in fake.path("/etc/nkprobe/config.toml").read_text()  # from /etc/hostname
    assert not fake.path("/etc/systemd/system/nkprobe-forwarder.service").exists()
    assert "enable nkprobe.service nkprobe-asn-update.timer" in fake.systemctl_calls()


# --- the real thing: install.sh in a minimal Debian bookworm root ------------------------------------
#
# A minbase bookworm root for this machine's architecture (mmdebstrap, cached as a tarball: debroot.py);
# install.sh then runs in it for real, as on a fresh Pi: apt installs the package built from this
# checkout, its python3 libraries from Debian's archive, and victoria-metrics. Only systemctl is recorded
# instead of run: PID 1 here is not systemd. The installed unit's ExecStart then runs as its User= with
# its one capability, inside the lab's vantage namespace, on a config of lab targets; a second run
# upgrades to the next version built from the same code and must keep the config, the forwarder's
# password and the path history. Everything lives in
# tmp_path and is removed at the end; mounts are made only in private mount namespaces (`unshare -m`,
# `ip netns exec`), so none outlives its command.

LAB_NET = ipaddress.IPv4Network("198.18.0.0/15")  # the lab's address space (CONTRACT.md "The lab")
AGENT_TARGETS = ("198.19.177.10", "198.19.179.10")  # TransTeleCom-like chain; the prefix `lab flip` moves
FLIP_TARGET = "198.19.179.10"
AGENT_PORT = 9931  # agent.listen of deploy/config.example.toml, on the vantage namespace's own loopback
CAP_NET_RAW = 1 << 13  # capabilities(7) bit number 13
SYSTEMCTL_FIRST_RUN = [
    "daemon-reload",
    "disable --now victoria-metrics.service",  # installed for vmagent only: its own server is unwanted
    "enable nkprobe.service nkprobe-asn-update.timer nkprobe-forwarder.service",
    "restart nkprobe.service nkprobe-forwarder.service",
    "start nkprobe-asn-update.timer",
    "start --no-block nkprobe-asn-update.service",
]


def _mounts_under(root: Path) -> list[str]:
    """Mount points at or below `root` in this mount namespace (mountinfo(5), field 5)."""
    prefix = str(root)
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


class Bookworm:
    """A minbase Debian bookworm root in `tmp`, install.sh run in it, commands run inside it."""

    def __init__(self, tmp: Path) -> None:
        self.debian = DebianRoot("bookworm", tmp)
        self.root = self.debian.root
        self.systemctl_log = tmp / "systemctl.log"
        self.fake_systemctl = tmp / "fake-systemctl"
        self.fake_systemctl.write_text(f'#!/bin/sh\necho "$*" >> "{self.systemctl_log}"\n')
        self.fake_systemctl.chmod(0o755)

    def bootstrap(self) -> None:
        self.debian.create()

    def install(self, *args: str) -> subprocess.CompletedProcess[str]:
        """install.sh ARGS with ROOT= this root, /proc mounted in a private mount namespace."""
        self.systemctl_log.unlink(missing_ok=True)
        env = dict(os.environ, ROOT=str(self.root), SYSTEMCTL=str(self.fake_systemctl))
        env["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin"
        return subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c",
             'mount -t proc proc "$0/proc" && exec "$@"', str(self.root), "bash", str(INSTALL), *args],
            env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip

    def systemctl_calls(self) -> list[str]:
        return self.systemctl_log.read_text().splitlines() if self.systemctl_log.exists() else []

    def run(self, *argv: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
        """ARGV inside the root (chroot), as `user` if given (setpriv, no capabilities)."""
        prefix = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--"] if user else []
        return subprocess.run(
            ["chroot", str(self.root), *prefix, *argv], capture_output=True, text=True, timeout=120
        )

    def stat(self, path: str) -> str:
        """`owner:group octal-mode` of PATH, names as the root's own passwd and group give them."""
        proc = self.run("stat", "-c", "%U:%G %a", path)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    def tree(self, *paths: str) -> dict[str, tuple[str, str]]:
        """Every file and directory under PATHS: owner:group mode, and a file's SHA-256."""
        proc = self.run("find", *paths, "-printf", "%p\t%u:%g %m\n")
        assert proc.returncode == 0, proc.stderr
        out = {}
        for line in proc.stdout.splitlines():
            path, meta = line.split("\t")
            host = self.path(path)
            digest = hashlib.sha256(host.read_bytes()).hexdigest() if host.is_file() else "dir"
            out[path] = (meta, digest)
        return out

    def path(self, p: str) -> Path:
        return self.root / p.lstrip("/")

    def uid(self, user: str) -> int:
        for line in self.path("/etc/passwd").read_text().splitlines():
            fields = line.split(":")
            if fields[0] == user:
                return int(fields[2])
        raise AssertionError(f"no user {user} in the root's /etc/passwd")

    def remove(self) -> None:
        # Never rmtree across a mount (a /dev or /proc bound in would be emptied with it).
        left = _mounts_under(self.root)
        assert not left, f"mounts left under {self.root}: {left}"
        self.debian.keep_downloads()
        shutil.rmtree(self.root, ignore_errors=True)


def _unit_command(bw: Bookworm) -> list[str]:
    """The installed nkprobe.service's ExecStart, run the way its [Service] section says: as User= and
    Group= (with supplementary groups), AmbientCapabilities= and CapabilityBoundingSet= only,
    NoNewPrivileges=, WorkingDirectory=, UMask=, and MemoryDenyWriteExecute= as the kernel's PR_SET_MDWE
    (deployhelp.MDWE_EXEC). What systemd adds beyond these (ProtectSystem= and the other namespaces,
    the system-call filter) needs systemd as PID 1 and is checked offline by test_deploy_systemd."""
    d = unit_directives(bw.path("/lib/systemd/system/nkprobe.service"))
    assert d["NoNewPrivileges"] == ["yes"] and d["MemoryDenyWriteExecute"] == ["yes"]
    caps = ",".join("+" + c.removeprefix("CAP_").lower() for c in d["AmbientCapabilities"][0].split())
    bounding = ",".join("+" + c.removeprefix("CAP_").lower() for c in d["CapabilityBoundingSet"][0].split())
    return [
        "setpriv", f"--reuid={d['User'][0]}", f"--regid={d['Group'][0]}", "--init-groups",
        f"--inh-caps=-all,{caps}", f"--ambient-caps=-all,{caps}", f"--bounding-set=-all,{bounding}",
        "--no-new-privs", "--",
        "sh", "-c", 'cd "$0" && umask "$1" && shift && exec "$@"', d["WorkingDirectory"][0], d["UMask"][0],
        "/usr/bin/python3", "-c", MDWE_EXEC, *shlex.split(d["ExecStart"][0]),
    ]  # fmt: skip


def _lab_config(lab: LabInfo) -> str:
    """What the volunteer's edit of /etc/nkprobe/config.toml is here: the lab's own agent config, two of
    its targets, paths inside the root. Every target and the allowlist are inside the lab's 198.18.0.0/15,
    checked here, so the installed agent can probe nothing else (and it runs in the vantage namespace)."""
    from tests.support.agent_harness import dump_toml

    data = tomllib.loads(lab.config_file.read_text())
    data["agent"].update(name="pi-chroot", state_dir="/var/lib/nkprobe", listen=f"127.0.0.1:{AGENT_PORT}")
    data["targets"] = [t for t in data["targets"] if t["address"] in AGENT_TARGETS]
    data["trace"]["interval_s"] = 3.0  # two agreeing rounds (hysteresis) in seconds
    data["asn"]["files"] = ["/etc/nkprobe/lab.pfx2as"]
    data.setdefault("names", {})["reverse_dns"] = False  # the lab has no DNS: ask nobody
    assert sorted(t["address"] for t in data["targets"]) == sorted(AGENT_TARGETS)
    assert all(ipaddress.ip_address(t["address"]) in LAB_NET for t in data["targets"])
    assert all(ipaddress.IPv4Network(p).subnet_of(LAB_NET) for p in data["destination"]["prefixes"])
    return dump_toml(data)


def _value(text: str, name: str, **labels: str) -> float | None:
    """The value of the first sample NAME with these labels in an exposition, or None."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


class UnitProcess:
    """The installed unit's command line, running in the lab's vantage namespace inside the root."""

    def __init__(self, bw: Bookworm, lab: LabInfo, log: Path) -> None:
        self.lab, self.log = lab, log
        with open(log, "wb") as out:
            # /proc is mounted in this command's own mount namespace (ip netns exec makes one).
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", lab.vantage_ns, "sh", "-c",
                 'mount -t proc proc "$0/proc" && exec chroot "$0" "$@"', str(bw.root), *_unit_command(bw)],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-2500:]

    def scrape(self) -> str:
        """GET /metrics on the vantage namespace's loopback (from a thread that joined the namespace)."""
        from agent.net.netns import call_in_netns

        def get() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{AGENT_PORT}/metrics", timeout=5) as r:
                return str(r.read().decode())

        return call_in_netns(self.lab.vantage_ns, get)

    def wait_metrics(self, check: Callable[[str], bool], timeout: float, what: str) -> str:
        """Scrape until `check` holds; fail with the log if the process exits or `timeout` runs out."""
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"the installed agent exited {self.proc.returncode}: {self.tail()}")
            try:
                last = self.scrape()
                if check(last):
                    return last
            except OSError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                pytest.fail(f"{what}: not within {timeout:.0f} s; scrape: {last[-1500:]}; log: {self.tail()}")
            time.sleep(0.5)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def status(self) -> dict[str, str]:
        lines = Path(f"/proc/{self.proc.pid}/status").read_text().splitlines()
        return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def _history(bw: Bookworm) -> list[dict[str, object]]:
    """`nkprobe history --json` of the installed agent, as its user."""
    cmd = ("nkprobe", "history", "--config", "/etc/nkprobe/config.toml", "--json")
    proc = bw.run(*cmd, user="nkprobe")
    assert proc.returncode == 0, proc.stderr
    rows: list[dict[str, object]] = json.loads(proc.stdout)
    return rows


@pytest.mark.lab
def test_install_for_real_in_a_bookworm_root_then_run_the_unit(
    tmp_path: Path, lab: LabInfo, deb: Path, next_deb: Path
) -> None:
    """install.sh, twice, in a fresh minimal Debian bookworm root; the installed unit's command in the lab
    in between: file modes and owners, the service user, a scrape, a recorded path change, and a second
    run that upgrades the package to the next version and keeps the config, the password and the
    history."""
    from tests.support.agent_harness import lab_flip

    need_tool("unshare")
    bw = Bookworm(tmp_path)
    agent: UnitProcess | None = None
    try:
        started = time.monotonic()
        bw.bootstrap()
        bootstrapped = time.monotonic()

        # 1. First run, as the volunteer's one command.
        proc = bw.install("--name", "pi-chroot", "--central-url", URL, "--password", "pw", "--deb", str(deb))
        assert proc.returncode == 0, f"first run: {proc.stderr[-3000:]}"
        installed = time.monotonic()
        assert "forwarder: vmagent" in proc.stderr  # bookworm has victoria-metrics
        assert 'set agent.name = "pi-chroot" in /etc/nkprobe/config.toml' in proc.stderr
        assert f"installed the package nkprobe {__version__}" in proc.stderr
        assert "systemd is not running here" in proc.stderr  # the postinst's word: units not started
        assert bw.systemctl_calls() == SYSTEMCTL_FIRST_RUN
        _check_layout(bw)

        # 2. The volunteer's edit: lab targets (never the example's real ones: this is no real uplink).
        bw.path("/etc/nkprobe/config.toml").write_text(_lab_config(lab))  # in place: owner, mode stay
        shutil.copy(lab.asn_file, bw.path("/etc/nkprobe/lab.pfx2as"))
        check = bw.run("nkprobe", "check-config", "/etc/nkprobe/config.toml", user="nkprobe")
        assert check.returncode == 0, check.stderr

        # 3. The unit's command line in the lab: a first tag, then `lab flip` recorded as a change.
        lab_flip(lab, "china_unicom")  # the lab's starting state, whatever an earlier test left
        agent = UnitProcess(bw, lab, tmp_path / "agent.log")
        _check_agent(bw, agent)
        lab_flip(lab, "transtelecom")
        agent.wait_metrics(
            lambda t: (
                _value(t, "nkprobe_path_upstream", target=FLIP_TARGET, upstream="transtelecom") == 1
                and (_value(t, "nkprobe_path_changes_total", target=FLIP_TARGET) or 0) >= 1
            ),
            60,
            f"{FLIP_TARGET} tagged transtelecom after the flip",
        )
        assert agent.stop() == 0, agent.tail()
        ran = time.monotonic()
        rows = _history(bw)
        flips = [(r["old"], r["new"]) for r in rows if r["target"] == FLIP_TARGET]
        assert flips[-1:] == [("china_unicom", "transtelecom")], rows
        assert bw.stat("/var/lib/nkprobe/history.db") == "nkprobe:nkprobe 640"  # UMask=0027
        # The agent id, made on the unit's first start (agent/identity.py), is the state directory's.
        agent_id = bw.path("/var/lib/nkprobe/agent-id").read_text()
        assert bw.stat("/var/lib/nkprobe/agent-id") == "nkprobe:nkprobe 640" and agent_id.strip()

        # 4. Second run, only the next release given: the package upgraded, everything kept, nothing
        # that is the volunteer's touched.
        kept = ("/etc/nkprobe", "/var/lib/nkprobe", "/etc/systemd/system")
        before = bw.tree(*kept)
        proc = bw.install("--deb", str(next_deb))
        assert proc.returncode == 0, f"second run: {proc.stderr[-3000:]}"
        assert f"installed the package nkprobe {NEXT_VERSION}" in proc.stderr
        assert "kept your /etc/nkprobe/config.toml" in proc.stderr
        assert bw.tree(*kept) == before
        assert bw.systemctl_calls() == [c for c in SYSTEMCTL_FIRST_RUN if "victoria-metrics" not in c]
        _check_layout(bw, edited=True, version=NEXT_VERSION)
        assert _history(bw) == rows
        assert bw.path("/var/lib/nkprobe/agent-id").read_text() == agent_id  # an upgrade keeps the id

        # 5. uninstall is apt remove (config, password, history kept), --purge is apt purge.
        proc = bw.install("uninstall")
        assert proc.returncode == 0, f"uninstall: {proc.stderr[-3000:]}"
        status = bw.run("dpkg-query", "-W", "-f", "${Status}", "nkprobe").stdout
        assert status == "deinstall ok config-files", status
        assert not bw.path("/usr/bin/nkprobe").exists()
        assert not bw.path("/etc/systemd/system/nkprobe-forwarder.service").exists()
        assert bw.path("/etc/nkprobe/remote-write-password").read_text() == "pw"
        survivors = ("/etc/nkprobe/config.toml", "/var/lib/nkprobe/history.db")
        assert bw.tree(*survivors) == {k: v for k, v in before.items() if k in survivors}
        proc = bw.install("uninstall", "--purge")
        assert proc.returncode == 0, f"uninstall --purge: {proc.stderr[-3000:]}"
        assert bw.run("dpkg-query", "-W", "nkprobe").returncode != 0  # forgotten by dpkg
        assert not bw.path("/etc/nkprobe").exists() and not bw.path("/var/lib/nkprobe").exists()
        print(
            f"bootstrap {bootstrapped - started:.0f} s, first install {installed - bootstrapped:.0f} s, "
            f"agent {ran - installed:.0f} s, second install {time.monotonic() - ran:.0f} s"
        )
    finally:
        if agent is not None:
            agent.kill()
        lab_flip(lab, "china_unicom")
        bw.remove()


def _check_layout(bw: Bookworm, edited: bool = False, version: str = __version__) -> None:
    """Users, modes and owners, the units, the package, the forwarder config, as install.sh promises."""
    passwd = {ln.split(":")[0]: ln.split(":") for ln in bw.path("/etc/passwd").read_text().splitlines()}
    _, _, uid, gid, _, home, shell = passwd["nkprobe"]
    assert int(uid) < 1000 and home == "/var/lib/nkprobe" and shell == "/usr/sbin/nologin"  # a system account
    assert bw.run("getent", "group", "nkprobe").stdout.split(":")[2] == gid
    for path, want in {
        "/etc/nkprobe": "root:root 755",
        "/etc/nkprobe/config.toml": "root:root 644",  # the package's conffile (it holds no secret)
        "/etc/nkprobe/remote-write-password": "root:root 600",
        "/etc/nkprobe/forwarder.env": "root:root 644",
        "/etc/nkprobe/forwarder.yml": "root:root 644",
        "/var/lib/nkprobe": "nkprobe:nkprobe 750",
        "/usr/bin/nkprobe": "root:root 755",
    }.items():
        assert bw.stat(path) == want, path
    assert bw.path("/etc/nkprobe/remote-write-password").read_text() == "pw"
    assert not bw.path("/opt/nkprobe").exists()
    # The service user cannot change the code it runs.
    writable = bw.run(
        "find", "/usr/lib/python3/dist-packages/agent", "(", "-user", "nkprobe", "-o", "-perm", "/022", ")"
    )
    assert writable.returncode == 0 and writable.stdout == "", writable.stdout[:2000]
    for unit in ("nkprobe.service", "nkprobe-asn-update.service", "nkprobe-asn-update.timer"):
        assert bw.path(f"/lib/systemd/system/{unit}").read_bytes() == (DEPLOY / "systemd" / unit).read_bytes()
        assert not bw.path(f"/etc/systemd/system/{unit}").exists()
    # nkprobe-forwarder.service is install.sh's, the vmagent one, not the Prometheus fallback.
    assert bw.stat("/etc/systemd/system/nkprobe-forwarder.service") == "root:root 644"
    forwarder = DEPLOY / "systemd" / "nkprobe-forwarder.service"
    assert bw.path("/etc/systemd/system/nkprobe-forwarder.service").read_bytes() == forwarder.read_bytes()
    status = bw.run("dpkg-query", "-W", "-f", "${Status} ${Version}", "nkprobe")
    assert status.stdout == f"install ok installed {version}", status
    for absent in ("python3-scapy", "python3-venv", "python3-pip", "prometheus"):  # no PyPI, no scapy
        assert bw.run("dpkg-query", "-W", "-f", "${Status}", absent).stdout.endswith(" installed") is False
    got = bw.run("nkprobe", "--version", user="nkprobe")
    assert got.returncode == 0 and got.stdout.strip() == f"nkprobe {version}", got
    # The forwarder as its unit starts it: the installed vmagent accepts the rendered config.
    assert 'agent: "pi-chroot"' in bw.path("/etc/nkprobe/forwarder.yml").read_text()
    dry = bw.run("/usr/bin/vmagent", "-promscrape.config=/etc/nkprobe/forwarder.yml", "-dryRun")
    assert dry.returncode == 0, dry.stderr[-2000:]
    config = bw.path("/etc/nkprobe/config.toml").read_text()
    if edited:
        assert 'name = "pi-chroot"' in config and "175.45.176" not in config
    else:
        assert config.replace('"pi-chroot"', '"nkprobe"', 1) == (DEPLOY / "config.example.toml").read_text()


def _check_agent(bw: Bookworm, agent: UnitProcess) -> None:
    """The unit's process: the service user, CAP_NET_RAW alone, no new privileges, in the root's state
    directory, under MDWE; its /metrics in the vantage namespace with a first tag from the lab."""
    text = agent.wait_metrics(
        lambda t: (
            _value(t, "nkprobe_path_upstream", target=FLIP_TARGET, upstream="china_unicom") == 1
            and _value(t, "nkprobe_target_up", target="198.19.177.10") == 1
        ),
        60,
        f"{FLIP_TARGET} tagged china_unicom and 198.19.177.10 up",
    )
    assert _value(text, "nkprobe_agent_info", agent="pi-chroot") == 1
    assert _value(text, "nkprobe_build_info", version=__version__) == 1
    status = agent.status()
    assert status["Uid"].split() == [str(bw.uid("nkprobe"))] * 4 and status["Name"] == "nkprobe", status
    for caps in ("CapEff", "CapPrm", "CapAmb", "CapBnd"):
        assert int(status[caps], 16) == CAP_NET_RAW, (caps, status[caps])
    assert status["NoNewPrivs"] == "1"
    pid = agent.proc.pid
    assert os.readlink(f"/proc/{pid}/root") == str(bw.root)
    assert os.readlink(f"/proc/{pid}/cwd") == str(bw.path("/var/lib/nkprobe"))
    assert "mdwe: on (PR_GET_MDWE = 1)" in agent.tail()
