"""A CA and a server certificate for 127.0.0.1 made with openssl, and one bcrypt user: the TLS and basic
auth of an agent's web config, for tests/deploy/test_deploy_tls.py and tests/lab/test_status_page_lab.py."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import bcrypt

USER, PASSWORD = "prometheus", "correct horse battery staple"


def bcrypt_hash(password: str) -> str:
    """A bcrypt hash from the bcrypt module: what the agent itself checks with (webconfig.bcrypt_matches)."""
    return str(bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode())


def openssl(*args: str, cwd: Path) -> None:
    """Run Debian's openssl in `cwd`; its failure fails the test."""
    assert shutil.which("openssl"), "openssl missing: it is in Debian's base system (quickstart.sh)"
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def make_certificates(d: Path) -> None:
    """ca.pem (a CA), and tls.crt/tls.key for 127.0.0.1 signed by it. EC keys: quick to make."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-days", "2", "-subj", "/CN=nkprobe test CA",
            "-keyout", "ca.key", "-out", "ca.pem", cwd=d)  # fmt: skip
    openssl("req", "-new", *ec, "-subj", "/CN=127.0.0.1", "-keyout", "tls.key", "-out", "tls.csr", cwd=d)
    (d / "ext.cnf").write_text("subjectAltName = IP:127.0.0.1\nextendedKeyUsage = serverAuth\n")
    openssl("x509", "-req", "-in", "tls.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "ext.cnf", "-out", "tls.crt", cwd=d)  # fmt: skip
