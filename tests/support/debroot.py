"""Minimal Debian roots for the deploy tests: one per release, made once by mmdebstrap and cached as a
tarball under /var/cache (a cold cache costs about 20 s a release here), unpacked afresh into each
test's tmp_path; commands run inside with chroot, /proc mounted in a private mount namespace so no
mount outlives its command. The .debs apt downloads are kept beside the tarball too, so a warm run
installs from the same Debian archive without downloading again."""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import time
from pathlib import Path

from tests.support.deployhelp import need_tool, unavailable

CACHE = Path("/var/cache/nkprobe-tests")
RELEASES = {"bookworm": "12", "trixie": "13"}  # suite -> /etc/debian_version's major number


def apt_mirror() -> str | None:
    """The Debian archive apt is configured with (it serves every release; deb822 or one-line)."""
    for f in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        if not f.is_file():
            continue
        for line in f.read_text().splitlines():
            words = line.replace("URIs:", "URIs: ").split()
            for w in words:
                if w.startswith("http") and w.rstrip("/").endswith("/debian"):
                    return w
    return None


def _mounts_under(root: Path) -> list[str]:
    """Mount points at or below `root` in this mount namespace (mountinfo(5), field 5)."""
    prefix = str(root)
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


def cached_tarball(suite: str) -> Path:
    """CACHE/SUITE-minbase.tar, made by mmdebstrap the first time (under a lock: sessions may race)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    tarball = CACHE / f"{suite}-minbase.tar"
    with open(CACHE / f"{suite}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if tarball.is_file():
            return tarball
        mirror = apt_mirror()
        if mirror is None:
            unavailable("apt's sources name no Debian archive to bootstrap a root from")
        tool = need_tool("mmdebstrap")
        partial = CACHE / f"{suite}-minbase.partial.tar"  # mmdebstrap picks the format by the name
        proc = subprocess.run(
            [tool, "--variant=minbase", "--mode=root", "--quiet", suite, str(partial), mirror],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, f"mmdebstrap {suite}: {proc.stderr[-3000:]}"
        partial.rename(tarball)
    return tarball


class DebianRoot:
    """A fresh minbase root of `suite` in `tmp`, with this machine's resolver."""

    def __init__(self, suite: str, tmp: Path) -> None:
        self.suite = suite
        self.root = tmp / suite
        self.debs = CACHE / f"{suite}-debs"

    def create(self) -> float:
        """Unpack the cached root (made first if need be); returns the seconds that took."""
        started = time.monotonic()
        tarball = cached_tarball(self.suite)
        self.root.mkdir(parents=True)
        # tar(1) as root keeps owners, modes and device nodes as mmdebstrap made them.
        subprocess.run(["tar", "-C", str(self.root), "-xf", str(tarball)], check=True, timeout=120)
        assert self.path("/etc/debian_version").read_text().startswith(RELEASES[self.suite])
        shutil.copy("/etc/resolv.conf", self.path("/etc/resolv.conf"))
        if self.debs.is_dir():
            for deb in self.debs.glob("*.deb"):
                shutil.copy(deb, self.path("/var/cache/apt/archives"))
        return time.monotonic() - started

    def keep_downloads(self) -> None:
        """Save what apt downloaded for the next run (apt still checks each file against the index)."""
        self.debs.mkdir(parents=True, exist_ok=True)
        for deb in self.path("/var/cache/apt/archives").glob("*.deb"):
            if not (self.debs / deb.name).exists():
                shutil.copy(deb, self.debs / deb.name)

    def run(
        self, *argv: str, env: dict[str, str] | None = None, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        """ARGV inside the root as root, with a clean environment plus `env`."""
        base = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "DEBIAN_FRONTEND": "noninteractive",
        }
        envargs = [f"{k}={v}" for k, v in {**base, **(env or {})}.items()]
        return subprocess.run(
            ["unshare", "-m", "sh", "-c", 'mount -t proc proc "$0/proc" && exec chroot "$0" "$@"',
             str(self.root), "env", "-i", *envargs, *argv],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def ok(self, *argv: str, env: dict[str, str] | None = None, timeout: float = 600) -> str:
        proc = self.run(*argv, env=env, timeout=timeout)
        assert proc.returncode == 0, (
            f"{' '.join(argv)} in {self.suite}: {(proc.stdout + proc.stderr)[-3000:]}"
        )
        return proc.stdout

    def path(self, p: str) -> Path:
        return self.root / p.lstrip("/")

    def stat(self, path: str) -> str:
        """`owner:group octal-mode` of PATH, names as the root's own passwd and group give them."""
        return self.ok("stat", "-c", "%U:%G %a", path).strip()

    def installed(self, package: str) -> bool:
        proc = self.run("dpkg-query", "-W", "-f", "${Status}", package)
        return proc.returncode == 0 and proc.stdout.endswith(" installed")

    def remove(self) -> None:
        # Never rmtree across a mount (a /dev or /proc bound in would be emptied with it).
        left = _mounts_under(self.root)
        assert not left, f"mounts left under {self.root}: {left}"
        shutil.rmtree(self.root, ignore_errors=True)
