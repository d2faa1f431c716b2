"""The HTTP server: landing page, /metrics, /-/healthy; TLS and basic auth from an exporter-toolkit file."""

from __future__ import annotations

import base64
import shutil
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.errors import ConfigError
from agent.exporter import build_registry
from agent.exporter.server import MetricsServer, parse_listen
from agent.exporter.webconfig import WebConfig, load_web_config, parse_yaml_subset
from agent.model import Target
from agent.pathstate import tag_values
from agent.state import State


def bcrypt_hash(password: str) -> str:
    """A bcrypt hash made with whatever this Python has (the bcrypt module, else crypt(3))."""
    try:
        import bcrypt  # type: ignore[import-not-found,unused-ignore]

        return str(bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode())
    except ImportError:
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt
        except ImportError:
            pytest.skip("neither bcrypt nor crypt available")
    hashed = crypt.crypt(password, "$2b$04$" + "abcdefghijklmnopqrstuv")
    if not hashed or not hashed.startswith("$2b$"):
        pytest.skip("crypt(3) here has no bcrypt")
    return hashed


Serve = Callable[..., MetricsServer]


def make_state() -> State:
    return State(
        agent_name="srv",
        version="1.2.3",
        targets=(Target("198.19.176.10"),),
        ping_protocols=("icmp",),
        trace_protocol="tcp",
        tags=tag_values(["china_unicom", "transtelecom"]),
    )


@pytest.fixture
def serve() -> Iterator[Serve]:
    servers: list[MetricsServer] = []

    def start(web: WebConfig | None = None) -> MetricsServer:
        server = MetricsServer(
            "127.0.0.1:0", build_registry(make_state()), version="1.2.3", agent_name=lambda: "srv", web=web
        )
        server.start()
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.stop()


def get(
    url: str, auth: tuple[str, str] | None = None, context: ssl.SSLContext | None = None
) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if auth is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_landing_metrics_health_and_404(serve: Serve) -> None:
    server = serve()
    base = f"http://127.0.0.1:{server.port}"
    status, body = get(base + "/")
    assert status == 200 and 'href="metrics"' in body and "srv" in body
    status, body = get(base + "/metrics")
    assert status == 200 and 'nkprobe_build_info{version="1.2.3"} 1.0' in body
    assert get(base + "/-/healthy")[0] == 200
    assert get(base + "/nope")[0] == 404


def test_basic_auth_with_bcrypt(serve: Serve, tmp_path: Path) -> None:
    hashed = bcrypt_hash("s3cret")
    path = tmp_path / "web.yml"
    path.write_text(f"# exporter-toolkit web config\nbasic_auth_users:\n  prom: '{hashed}'\n")
    server = serve(load_web_config(str(path)))
    url = f"http://127.0.0.1:{server.port}/metrics"
    assert get(url)[0] == 401
    assert get(url, ("prom", "wrong"))[0] == 401
    assert get(url, ("nobody", "s3cret"))[0] == 401
    status, body = get(url, ("prom", "s3cret"))
    assert status == 200 and "nkprobe_agent_info" in body


def test_tls_from_web_config(serve: Serve, tmp_path: Path) -> None:
    # openssl is an install step (quickstart.sh's test packages), never a skip: without it this fails.
    openssl = shutil.which("openssl")
    assert openssl is not None, "openssl not installed (apt-get install openssl)"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(tmp_path / "k.pem"), "-out", str(tmp_path / "c.pem")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    path = tmp_path / "web.yml"
    path.write_text("tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n  min_version: TLS12\n")
    server = serve(load_web_config(str(path)))
    context = ssl.create_default_context(cafile=str(tmp_path / "c.pem"))
    status, body = get(f"https://127.0.0.1:{server.port}/metrics", context=context)
    assert status == 200 and "nkprobe_build_info" in body
    with pytest.raises(OSError):
        get(f"http://127.0.0.1:{server.port}/metrics")  # plain HTTP is refused by a TLS port
    # ... and a silent client does not hold up the others (the handshake runs on its own thread).
    with socket.create_connection(("127.0.0.1", server.port)):
        assert get(f"https://127.0.0.1:{server.port}/-/healthy", context=context)[0] == 200


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("basic_auth_users:\n  prom: plaintext\n", "basic_auth_users.prom: not a bcrypt hash"),
        ("tls_server_config:\n  cert_file: c.pem\n", "cert_file and key_file are both required"),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: x\n",
            "cipher_suites: not supported",
        ),
        ("http_server_config:\n  http2: false\n", "http_server_config: not supported"),
        ("basic_auth_users:\n  - prom\n", "line 2: expected 'key: value'"),
        ("a: 1\na: 2\n", "line 2: duplicate key 'a'"),
    ],
)
def test_invalid_web_config_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "web.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_web_config(str(path))
    assert message in str(info.value)


def test_yaml_subset_reads_what_exporter_toolkit_files_use() -> None:
    text = (
        'tls_server_config:\n  cert_file: "/a b/c.pem"  # the cert\n  key_file: k.pem\n'
        "basic_auth_users:\n  u: x\n"
    )
    assert parse_yaml_subset(text) == {
        "tls_server_config": {"cert_file": "/a b/c.pem", "key_file": "k.pem"},
        "basic_auth_users": {"u": "x"},
    }


def test_listen_address_errors_are_config_errors() -> None:
    assert parse_listen("0.0.0.0:9931") == ("0.0.0.0", 9931)
    for bad in ("9931", "host:", "127.0.0.1:99999", "example.com:80"):
        with pytest.raises(ConfigError):
            parse_listen(bad)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match="cannot listen"):
            MetricsServer(
                f"127.0.0.1:{port}", build_registry(make_state()), version="0", agent_name=lambda: "x"
            )
