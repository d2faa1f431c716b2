"""deploy/raspberry-pi/install.sh: shellcheck clean; installs, reinstalls and uninstalls the expected
files into a fake root with every command of the target system and systemctl recorded (fast); and for
real, twice, in a Debian bookworm chroot made by debootstrap (slow: NKPROBE_SLOW=1)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from deployhelp import CENTRAL, DEPLOY, FakeRoot, need_tool

INSTALL = DEPLOY / "raspberry-pi" / "install.sh"  # also in deployhelp
URL = "https://central.invalid:9090/api/v1/write"


def test_shellcheck_clean() -> None:
    tool = need_tool("shellcheck")
    scripts = [INSTALL, CENTRAL / "setup.sh"]
    proc = subprocess.run([tool, *map(str, scripts)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout


@pytest.fixture
def fake(tmp_path: Path) -> FakeRoot:
    return FakeRoot(tmp_path)


def _install(fake: FakeRoot, *extra: str) -> subprocess.CompletedProcess[str]:
    return fake.run("--name", "pi-berlin-1", "--central-url", URL, "--password", "s3cr&t\\x", *extra)


def test_first_install_lays_out_everything(fake: FakeRoot) -> None:
    proc = _install(fake)
    assert proc.returncode == 0, proc.stderr
    config = fake.path("/etc/nkprobe/config.toml").read_text()
    assert 'name = "pi-berlin-1"' in config
    assert config.replace('"pi-berlin-1"', '"nkprobe"', 1) == (DEPLOY / "config.example.toml").read_text()
    assert fake.mode("/etc/nkprobe/config.toml") == 0o640
    assert fake.path("/etc/nkprobe/remote-write-password").read_text() == "s3cr&t\\x"
    assert fake.mode("/etc/nkprobe/remote-write-password") == 0o600
    assert fake.mode("/var/lib/nkprobe") == 0o750
    env = fake.path("/etc/nkprobe/forwarder.env").read_text()
    assert f"NKPROBE_REMOTE_WRITE_URL={URL}\n" in env
    assert "NKPROBE_REMOTE_WRITE_USERNAME=pi-berlin-1\n" in env
    fwd = fake.path("/etc/nkprobe/forwarder.yml").read_text()
    assert '- targets: ["127.0.0.1:9931"]' in fwd and 'agent: "pi-berlin-1"' in fwd and "@" not in fwd
    for unit in ("nkprobe.service", "nkprobe-forwarder.service", "nkprobe-asn-update.timer"):
        assert fake.mode(f"/etc/systemd/system/{unit}") == 0o644
    # vmagent is the forwarder where Debian has it (the fake apt knows every package).
    assert (
        fake.path("/etc/systemd/system/nkprobe-forwarder.service").read_text()
        == (DEPLOY / "systemd" / "nkprobe-forwarder.service").read_text()
    )
    assert (fake.path("/opt/nkprobe/src/agent/cli.py")).is_file()
    assert not list(fake.path("/opt/nkprobe/src").rglob("__pycache__"))

    calls = fake.chroot_calls()
    install = next(c for c in calls if c.startswith("apt-get install"))
    for pkg in ("python3", "python3-venv", "victoria-metrics"):
        assert pkg in install.split()
    assert "python3 -m venv /opt/nkprobe" in calls
    assert any(c.startswith("/opt/nkprobe/bin/pip install") and c.endswith("/opt/nkprobe/src") for c in calls)
    assert "chown nkprobe:nkprobe /var/lib/nkprobe" in calls
    assert "chown root:nkprobe /etc/nkprobe/config.toml" in calls
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
    assert _install(fake).returncode == 0
    fake.path("/var/lib/nkprobe/history.db").write_text("history")
    proc = fake.run("uninstall")
    assert proc.returncode == 0, proc.stderr
    assert not fake.path("/opt/nkprobe").exists()
    assert not fake.path("/etc/systemd/system/nkprobe.service").exists()
    assert fake.path("/var/lib/nkprobe/history.db").read_text() == "history"
    assert fake.path("/etc/nkprobe/config.toml").is_file()
    assert fake.systemctl_calls()[0].startswith("disable --now nkprobe.service")
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
    assert not fake.path("/opt/nkprobe").exists()


def test_standalone_without_forwarder(fake: FakeRoot) -> None:
    proc = fake.run("--forwarder", "none")
    assert proc.returncode == 0, proc.stderr
    assert 'name = "pi-test"' in fake.path("/etc/nkprobe/config.toml").read_text()  # from /etc/hostname
    assert not fake.path("/etc/systemd/system/nkprobe-forwarder.service").exists()
    assert "enable nkprobe.service nkprobe-asn-update.timer" in fake.systemctl_calls()


# --- the real thing, in a Debian chroot -----------------------------------------------------------


def _apt_mirror() -> str | None:
    """The Debian mirror apt is configured with for bookworm (the only one the machine may reach)."""
    for f in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        if not f.is_file():
            continue
        text = f.read_text()
        # deb822 stanzas (Types/URIs/Suites), then one-line "deb URI SUITE ..." entries.
        for stanza in text.split("\n\n"):
            fields = {
                k.strip(): v.strip() for k, _, v in (ln.partition(":") for ln in stanza.splitlines()) if v
            }
            if "bookworm" in fields.get("Suites", "").split() and fields.get("URIs", "").endswith("/debian"):
                return fields["URIs"].split()[0]
        for line in text.splitlines():
            words = line.split()
            uris = [w for w in words if w.startswith("http") and w.rstrip("/").endswith("/debian")]
            if words[:1] == ["deb"] and "bookworm" in words and uris:
                return uris[0]
    return None


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("NKPROBE_SLOW") != "1", reason="slow (minutes): set NKPROBE_SLOW=1")
def test_install_twice_in_a_debian_chroot(tmp_path: Path) -> None:
    """debootstrap bookworm, run install.sh twice inside with systemctl recorded, check the result."""
    debootstrap = need_tool("debootstrap")
    if os.geteuid() != 0:
        pytest.skip("debootstrap and chroot need root")
    mirror = _apt_mirror()
    if mirror is None:
        pytest.skip("no Debian mirror in apt's sources")
    cache = Path(os.environ.get("NKPROBE_CHROOT_CACHE", "/var/tmp/nkprobe-bookworm.tar"))
    root = tmp_path / "root"
    if cache.is_file():
        root.mkdir()
        subprocess.run(["tar", "-C", str(root), "-xf", str(cache)], check=True)
    else:
        subprocess.run(
            [debootstrap, "--variant=minbase", "bookworm", str(root), mirror], check=True, capture_output=True
        )
        subprocess.run(["tar", "-C", str(root), "-cf", str(cache), "."], check=True)
    shutil.copy("/etc/resolv.conf", root / "etc" / "resolv.conf")
    # pip inside trusts what this machine trusts (a TLS-inspecting proxy's CA, for one).
    shutil.copy("/etc/ssl/certs/ca-certificates.crt", root / "host-ca.crt")
    log = tmp_path / "systemctl.log"
    fake = tmp_path / "fake-systemctl"
    fake.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\n')
    fake.chmod(0o755)
    env = {**os.environ, "ROOT": str(root), "SYSTEMCTL": str(fake)}
    env.pop("PIP_FIND_LINKS", None)
    for var in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE"):
        env[var] = "/host-ca.crt"  # requests prefers REQUESTS_CA_BUNDLE to pip's --cert
    mounts = []
    try:
        for fs, where in (("proc", "proc"), ("devtmpfs", "dev")):
            subprocess.run(["mount", "-t", fs, fs, str(root / where)], check=True)
            mounts.append(root / where)
        for attempt in (1, 2):
            proc = subprocess.run(
                ["bash", str(INSTALL), "--name", "pi-chroot", "--central-url", URL, "--password", "pw"]
                if attempt == 1
                else ["bash", str(INSTALL)],
                env=env,
                capture_output=True,
                text=True,
                timeout=1200,
            )
            assert proc.returncode == 0, f"run {attempt}: {proc.stderr[-3000:]}"
        passwd = (root / "etc" / "passwd").read_text()
        assert "\nnkprobe:" in passwd and "/usr/sbin/nologin" in passwd.split("\nnkprobe:")[1].split("\n")[0]
        version = subprocess.run(
            ["chroot", str(root), "/opt/nkprobe/bin/nkprobe", "--version"], capture_output=True, text=True
        )
        assert version.returncode == 0 and version.stdout.startswith("nkprobe "), version.stderr
        st = (root / "var/lib/nkprobe").stat()
        owner = subprocess.run(
            ["chroot", str(root), "stat", "-c", "%U:%G %a", "/var/lib/nkprobe"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        assert owner == "nkprobe:nkprobe 750", owner
        config_owner = subprocess.run(
            ["chroot", str(root), "stat", "-c", "%U:%G %a", "/etc/nkprobe/config.toml"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        assert config_owner == "root:nkprobe 640", config_owner
        assert 'name = "pi-chroot"' in (root / "etc/nkprobe/config.toml").read_text()
        # Debian bookworm has victoria-metrics: auto picks vmagent, and its own server unit gets disabled.
        assert (root / "usr/bin/vmagent").exists()
        assert "-promscrape.config" in (root / "etc/systemd/system/nkprobe-forwarder.service").read_text()
        assert stat.S_IMODE((root / "etc/nkprobe/remote-write-password").stat().st_mode) == 0o600
        assert st.st_uid != 0
        calls = log.read_text().splitlines()
        assert calls.count("daemon-reload") == 2
        assert "disable --now victoria-metrics.service" in calls  # first run only: it installed the package
        assert calls.count("restart nkprobe.service nkprobe-forwarder.service") == 2
    finally:
        for m in reversed(mounts):
            subprocess.run(["umount", "-l", str(m)], check=False)
