"""The HTTP server: landing page, /metrics, /-/healthy; TLS and basic auth from an exporter-toolkit file."""

from __future__ import annotations

import base64
import shutil
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import bcrypt
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config import parse_listen
from agent.errors import ConfigError
from agent.exporter import build_registry
from agent.exporter.server import MetricsServer
from agent.exporter.webconfig import WebConfig, bcrypt_matches, load_web_config, read_yaml
from agent.model import Target
from agent.results import Results
from agent.tracking import tag_values


def bcrypt_hash(password: str) -> str:
    """A bcrypt hash made with the bcrypt module, a runtime dependency of basic auth."""
    return str(bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode())


Serve = Callable[..., MetricsServer]


def make_state() -> Results:
    return Results(
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


def test_metrics_in_the_format_the_scraper_asks_for(serve: Serve) -> None:
    # Prometheus 2.x's Accept header: OpenMetrics first. Without one: text 0.0.4.
    url = f"http://127.0.0.1:{serve().port}/metrics"
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": accept}), timeout=10) as r:
        kind, body = r.headers["Content-Type"], r.read().decode()
    assert kind == "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores"
    assert body.endswith("# EOF\n") and "# TYPE nkprobe_packets_sent counter\n" in body
    with urllib.request.urlopen(url, timeout=10) as r:
        kind, body = r.headers["Content-Type"], r.read().decode()
    assert kind == "text/plain; version=0.0.4; charset=utf-8"
    assert "# TYPE nkprobe_packets_sent_total counter\n" in body and "# EOF" not in body


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
        ("basic_auth_users:\n  - prom\n", "basic_auth_users: must be a mapping of user name to bcrypt hash"),
        ("a: 1\na: 2\n", "line 2: duplicate key 'a'"),
        # A second section of the same name must not silently replace the first (PyYAML alone would).
        (
            "basic_auth_users:\n  a: x\nbasic_auth_users:\n  b: y\n",
            "line 3: duplicate key 'basic_auth_users'",
        ),
        ("basic_auth_users:\n\t- prom\n", "line 2: found character '\\t' that cannot start any token"),
        ("- tls_server_config\n", "line 1: expected 'key: value'; a web config is a mapping"),
        (
            "tls_server_config:\n  cert_file: !!int 3\n  key_file: k\n",
            "cert_file: must be a file name or word, not an int",
        ),
        ("basic_auth_users:\n  ? [a]\n  : x\n", "found unhashable key"),
        ("x: !!python/object:os.system echo\n", "could not determine a constructor"),
        ("A: !0\n", "line 1: could not determine a constructor for the tag '!0'"),
    ],
)
def test_invalid_web_config_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "web.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_web_config(str(path))
    assert message in str(info.value)


# The valid web config texts of these tests, and the documented example of agent/exporter/webconfig.py.
# PyYAML parses them; what these tests pin is our use of it: every scalar is text, as in exporter-toolkit
# (PyYAML's BaseLoader reads so too, and is the reference here), an empty value is "not set", and nothing
# that PyYAML reads is lost or changed on the way.
WEB_CONFIGS = (
    "# exporter-toolkit web config\nbasic_auth_users:\n  prom: '$2b$04$abcdefghijklmnopqrstuu"
    "Xd5Vs3Pd2Pp9lAbF9S3jbQLw7mGxNq2'\n",
    "tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n  min_version: TLS12\n",
    'tls_server_config:\n  cert_file: "/a b/c.pem"  # the cert\n  key_file: k.pem\n'
    "basic_auth_users:\n  u: x\n",
    "---\n# quoted keys, empty mapping values, escapes\n"
    "'tls_server_config':\n    \"cert_file\": 'it''s.pem'\n"
    '    key_file: "dir\\\\k \\"1\\".pem" # c\n    client_auth_type: NoClientCert\nbasic_auth_users:\n',
)


def documented_example() -> str:
    """The example in webconfig.py's docstring, as an operator would copy it."""
    import agent.exporter.webconfig as module

    doc = module.__doc__ or ""
    start = doc.index("    tls_server_config:")
    block = doc[start:].split("\n\n", 1)[0]
    return "\n".join(line[4:] for line in block.splitlines()) + "\n"


def as_text_reads(text: str) -> object:
    """PyYAML's reading with every scalar a string: how exporter-toolkit's Go structs of strings read."""
    return yaml.load(text, Loader=yaml.BaseLoader)


def agent_reads(text: str) -> object:
    """The agent's reading; an empty value (None here) is an empty string to BaseLoader."""

    def norm(value: object) -> object:
        if isinstance(value, dict):
            return {k: norm(v) for k, v in value.items()}
        return "" if value is None else value

    return norm(read_yaml(text))


def test_the_documented_example_is_a_whole_web_config() -> None:
    example = documented_example()
    assert example.startswith("tls_server_config:\n") and "basic_auth_users:\n" in example, example
    assert set(read_yaml(example)) == {"tls_server_config", "basic_auth_users"}


@pytest.mark.parametrize("text", [*WEB_CONFIGS, documented_example()])
def test_web_config_reads_as_text_like_exporter_toolkit(text: str) -> None:
    assert agent_reads(text) == as_text_reads(text)


def test_scalars_stay_text_and_empty_means_not_set() -> None:
    """What PyYAML's safe_load would change (YAML 1.1 booleans, octal, floats, dates), we keep as written:
    a user named `yes`, a key file `010` or a hash-like `1e10` must not become True, 8 or 1e10."""
    text = "a:\n  yes: on\n  '010': 010\n  f: 1.50\n  d: 2024-01-01\n  n: ~\n  e:\n  z: null\n"
    assert read_yaml(text) == {
        "a": {"yes": "on", "010": "010", "f": "1.50", "d": "2024-01-01", "n": None, "e": None, "z": None}
    }
    assert yaml.safe_load(text)["a"]["f"] == 1.5  # what the plain safe loader would have made of it
    assert read_yaml("") == {} and read_yaml("# only a comment\n") == {}


def test_a_user_named_like_a_yaml_boolean_logs_in(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text(f"basic_auth_users:\n  on: {bcrypt_hash('pw')}\n")
    web = load_web_config(str(path))
    assert web.users.keys() == {"on"} and web.authorized("on", "pw") and not web.authorized("on", "x")


def test_bcrypt_versions_agree_on_long_and_nul_passwords() -> None:
    """bcrypt 3.2 (bookworm) truncates a password at 72 bytes and raises on NUL; 5.0 raises on >72 bytes.
    bcrypt_matches gives one answer on every version, the one Go's bcrypt (exporter-toolkit) gives."""
    long = "p" * 72
    hashed = bcrypt_hash(long)
    assert bcrypt_matches(bcrypt, long, hashed)
    assert bcrypt_matches(bcrypt, long + "tail", hashed)  # bytes after the 72nd do not count
    assert not bcrypt_matches(bcrypt, "p" * 71, hashed)
    assert not bcrypt_matches(bcrypt, "a\0b", bcrypt_hash("a"))
    assert not bcrypt_matches(bcrypt, "x", "$2b$99$" + "a" * 53)  # a cost bcrypt refuses: no match
    assert bcrypt_matches(bcrypt, "s", bcrypt_hash("s").replace("$2b$", "$2y$", 1))  # htpasswd's prefix


_KEYS = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,10}", fullmatch=True)
_SAFE = st.from_regex(r"[A-Za-z0-9/][A-Za-z0-9./$_-]{0,20}", fullmatch=True)
_ANY = st.text(
    st.characters(min_codepoint=32, max_codepoint=126) | st.sampled_from("é€"), min_size=1, max_size=16
)
Tree = dict[str, "str | Tree"]


def _trees(values: st.SearchStrategy[str]) -> st.SearchStrategy[Tree]:
    nested = st.recursive(
        values, lambda kids: st.dictionaries(_KEYS, kids, min_size=1, max_size=3), max_leaves=6
    )
    return st.dictionaries(_KEYS, nested, min_size=1, max_size=3)


def _quote(text: str, style: str) -> str:
    if style == "single":
        return "'" + text.replace("'", "''") + "'"
    if style == "double":
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


@st.composite
def _rendered(draw: st.DrawFn, values: st.SearchStrategy[str]) -> tuple[Tree, str]:
    """A tree and one YAML text of it: quoting, indent widths and comments drawn at random."""
    tree = draw(_trees(values))
    styles = st.sampled_from(("plain", "single", "double"))
    lines: list[str] = []

    def emit(node: Tree, indent: int) -> None:
        for key, value in node.items():
            head = " " * indent + _quote(key, draw(styles)) + ":"
            if draw(st.booleans()) and draw(st.booleans()):
                lines.append(" " * draw(st.integers(0, 6)) + "# a comment line")
            if isinstance(value, dict):
                lines.append(head + draw(st.sampled_from(("", "  # nested", " "))))
                emit(value, indent + draw(st.integers(1, 4)))
            else:
                comment = draw(st.sampled_from(("", "  # why", " #x")))
                lines.append(f"{head} {_quote(value, draw(styles))}{comment}")

    emit(tree, 0)
    return tree, "\n".join(lines) + "\n"


@settings(max_examples=60, deadline=None)
@given(_rendered(_ANY))
def test_web_config_reads_any_text_as_text_or_refuses_it(case: tuple[Tree, str]) -> None:
    """Any text: the agent reads what PyYAML's text-only reading gives, or refuses it with a ConfigError
    (never a YAML traceback); never a third reading. It may refuse what BaseLoader reads: a tag such as
    `!0` or `!!python/object`, which the safe loader builds nothing from."""
    _, text = case
    try:
        expected = as_text_reads(text)
    except yaml.YAMLError:
        with pytest.raises(ConfigError):
            read_yaml(text)
        return
    try:
        got = agent_reads(text)
    except ConfigError:
        return
    assert same_reading(got, expected), text


NULLS = ("~", "null", "Null", "NULL")  # plain, YAML's null: "not set" to the agent and to Go's yaml.v2


def same_reading(got: object, expected: object) -> bool:
    """The agent's reading is BaseLoader's, but for a plain null, which BaseLoader keeps as its text and
    the agent reads as not set (empty); BaseLoader's reading cannot tell a plain `~` from a quoted one,
    so either is taken there (hypothesis drew `A: ~`)."""
    if isinstance(got, dict) and isinstance(expected, dict):
        return got.keys() == expected.keys() and all(same_reading(got[k], expected[k]) for k in got)
    return got == expected or (got == "" and expected in NULLS)


@settings(max_examples=40, deadline=None)
@given(_rendered(_SAFE))
def test_web_config_reads_every_plain_file_as_written(case: tuple[Tree, str]) -> None:
    """Names, paths and bcrypt-like values in any quoting: read, never refused, and as written."""
    tree, text = case
    assert read_yaml(text) == tree == as_text_reads(text), text


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


def _switches(native_id: int) -> int:
    status = Path(f"/proc/self/task/{native_id}/status").read_text()
    return int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("voluntary_ctxt_switches")))


def test_an_idle_server_sleeps_and_still_stops_at_once() -> None:
    """serve_forever's default poll woke the thread twice a second (issue 25); it sleeps until a
    connection comes now, and `stop` wakes it with one."""
    import time

    server = MetricsServer("127.0.0.1:0", build_registry(make_state()), version="1", agent_name=lambda: "srv")
    server.start()
    assert server._thread is not None and server._thread.native_id is not None
    tid = server._thread.native_id
    time.sleep(0.2)
    before = _switches(tid)
    time.sleep(1.6)
    woken = _switches(tid) - before
    assert get(f"http://127.0.0.1:{server.port}/-/healthy")[0] == 200
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 1.0
    assert not server._thread.is_alive()
    assert woken == 0, f"the idle server thread woke {woken} times in 1.6 s"
