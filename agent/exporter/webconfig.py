"""The web config file (`--web.config.file`): TLS and basic auth, in the Prometheus exporter-toolkit format.

The same file an operator writes for node_exporter works here (https://prometheus.io/docs/prometheus/
latest/configuration/https/), restricted to what this server supports:

    tls_server_config:
      cert_file: /etc/nkprobe/tls.crt
      key_file: /etc/nkprobe/tls.key
      client_ca_file: /etc/nkprobe/ca.crt      # optional
      client_auth_type: RequireAndVerifyClientCert   # optional
      min_version: TLS12                        # optional; TLS12 or TLS13
      max_version: TLS13                        # optional
    basic_auth_users:
      prometheus: $2y$10$...                    # bcrypt hashes only, as in exporter-toolkit

The file is YAML, and PyYAML is not a dependency: this module reads the small subset the format needs
(nested block mappings of plain or quoted scalars, comments) exactly as YAML reads it, and refuses
anything else with the line number. Unknown keys are errors, as in exporter-toolkit (a typo must not
silently disable TLS).

Passwords are bcrypt hashes ($2a$, $2b$, $2y$), checked with the `bcrypt` module when it is installed,
else with the C library's crypt(3) through Python's `crypt` module (deprecated, present up to Python
3.12; Debian's libxcrypt implements bcrypt). If neither can check a bcrypt hash, loading fails with a
config error that says to install `bcrypt`: the agent never starts with basic auth it cannot enforce.
Verified credentials are cached (a SHA-256 of the password, never the password), as exporter-toolkit
does, because a bcrypt check costs tens of milliseconds on a Raspberry Pi and Prometheus scrapes often.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import ssl
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.errors import ConfigError

_BCRYPT_HASH = re.compile(r"^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$")
_TLS_KEYS = {"cert_file", "key_file", "client_ca_file", "client_auth_type", "min_version", "max_version"}
_CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}


def parse_yaml_subset(text: str, source: str = "web config") -> dict[str, Any]:
    """Block mappings of scalars, nested by indentation; comments and blank lines ignored.

    What this reads, it reads as YAML does (PyYAML with every scalar a string; tests/agent/
    test_exporter_server.py checks that on every web config of the tests and on generated ones); what it
    cannot read the same way, it refuses with the line number, never guesses.

    >>> parse_yaml_subset("a:\\n  b: 'x y'  # note\\n  c: \\"z\\"\\nd: e\\n")
    {'a': {'b': 'x y', 'c': 'z'}, 'd': 'e'}
    >>> parse_yaml_subset("k: 'it''s'\\n")
    {'k': "it's"}
    """
    root: dict[str, Any] = {}
    stack: list[tuple[int, dict[str, Any]]] = [(-1, root)]
    pending: tuple[int, dict[str, Any], str] | None = None  # a key whose value is the next, deeper block
    content = False
    for number, raw in enumerate(text.splitlines(), 1):
        if "\t" in raw:
            # YAML forbids tabs in indentation and PyYAML refuses them after a value too: spaces only.
            raise ConfigError(f"{source} line {number}: use spaces, not tabs (YAML)")
        body = raw.strip()
        if not body or body.startswith("#"):
            continue
        if raw.rstrip() == "---" and not content:
            continue  # a document start marker before the mapping; another one would be a second document
        content = True
        indent = len(raw) - len(raw.lstrip(" "))
        key, value = _line(raw[indent:], source, number)
        if pending is not None:
            p_indent, p_parent, p_key = pending
            pending = None
            if indent > p_indent:
                child: dict[str, Any] = {}
                p_parent[p_key] = child
                stack.append((indent, child))
        while stack and indent < stack[-1][0]:
            stack.pop()
        if indent != stack[-1][0] and stack[-1][0] != -1:
            raise ConfigError(f"{source} line {number}: inconsistent indentation")
        if stack[-1][0] == -1 and indent != 0:
            raise ConfigError(f"{source} line {number}: unexpected indentation")
        parent = stack[-1][1]
        if key in parent:
            raise ConfigError(f"{source} line {number}: duplicate key {key!r}")
        parent[key] = value
        if value is None:
            pending = (indent, parent, key)
    return root


# YAML 1.2 section 7.3.3 (plain scalars): a plain scalar must not begin with an indicator character; '-',
# '?' and ':' may begin one only when a non-space follows. Inside one, ': ' and ' #' end it, and so does a
# final ':' (a key): PyYAML then reads something else or fails.
_INDICATORS = set(",[]{}#&*!|>'\"%@`")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.@-]*")
# YAML 1.2 section 5.7: the escapes of double-quoted scalars that web configs may need. The others (\x,
# \u, line folding...) are refused rather than half-read.
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "0": "\0"}


def _line(line: str, source: str, number: int) -> tuple[str, str | None]:
    """`KEY: VALUE  # comment` (no indent) -> (key, value), value None for `KEY:` alone."""
    where = f"{source} line {number}"
    if line[:1] in "'\"":
        key, pos = _quoted(line, 0, where)
    else:
        match = _PLAIN_KEY.match(line)
        if match is None:
            raise ConfigError(
                f"{where}: expected 'key: value'; nkprobe reads only plain YAML mappings "
                f"(no lists, anchors or flow style)"
            )
        key, pos = match.group(), match.end()
    if line[pos : pos + 1] != ":" or line[pos + 1 : pos + 2] not in ("", " "):
        raise ConfigError(
            f"{where}: expected 'key: value'; nkprobe reads only plain YAML mappings "
            f"(no lists, anchors or flow style)"
        )
    rest = line[pos + 1 :]
    value = rest.lstrip(" ")
    if not value or value.startswith("#"):
        return key, None
    start = len(line) - len(value)
    if value[0] in "'\"":
        text, end = _quoted(line, start, where)
        tail = line[end:]
        if tail.strip() and not (tail[:1] == " " and tail.lstrip(" ").startswith("#")):
            raise ConfigError(f"{where}: {key}: text after the closing quote")
        return key, text
    plain = value.split(" #", 1)[0].rstrip(" ")
    if (
        plain[0] in _INDICATORS
        or (plain[0] in "-?:" and plain[1:2] in ("", " "))
        or ": " in plain
        or plain.endswith(":")
    ):
        raise ConfigError(
            f"{where}: {key}: only plain or quoted scalar values are supported (quote this value)"
        )
    return key, plain


def _quoted(line: str, start: int, where: str) -> tuple[str, int]:
    """The quoted scalar beginning at line[start], and the index after its closing quote."""
    quote, out, i = line[start], [], start + 1
    while i < len(line):
        ch = line[i]
        if quote == "'" and ch == "'":
            if line[i + 1 : i + 2] == "'":  # '' is a single quote inside single quotes
                out.append("'")
                i += 2
                continue
            return "".join(out), i + 1
        if quote == '"' and ch == '"':
            return "".join(out), i + 1
        if quote == '"' and ch == "\\":
            escaped = _ESCAPES.get(line[i + 1 : i + 2])
            if escaped is None:
                raise ConfigError(f"{where}: escape {line[i : i + 2]!r} not supported in a quoted string")
            out.append(escaped)
            i += 2
            continue
        out.append(ch)
        i += 1
    raise ConfigError(f"{where}: unterminated quoted string")


class PasswordChecker:
    """Checks a password against a bcrypt hash: the `bcrypt` module, else crypt(3). Raises if neither can."""

    def __init__(self) -> None:
        self._check = self._pick()
        self._cache: dict[tuple[str, bytes], bool] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _pick() -> Callable[[str, str], bool]:
        try:
            import bcrypt  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            pass
        else:

            def check_bcrypt(password: str, hashed: str) -> bool:
                return bool(bcrypt.checkpw(password.encode(), hashed.encode()))

            return check_bcrypt
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                import crypt
            except ImportError:
                crypt = None  # type: ignore[assignment]
        # Known answer test: crypt(3) without bcrypt support returns None or "*0" for a $2b$ salt.
        probe = "$2b$04$" + "a" * 22
        if crypt is not None and (crypt.crypt("x", probe) or "").startswith("$2b$04$"):
            impl = crypt

            def check_crypt(password: str, hashed: str) -> bool:
                return hmac.compare_digest(impl.crypt(password, hashed) or "", hashed)

            return check_crypt
        raise ConfigError(
            "basic_auth_users needs bcrypt, which this Python cannot check: install it "
            "(pip install bcrypt, or apt install python3-bcrypt) or remove basic_auth_users"
        )

    def verify(self, user: str, password: str, hashed: str) -> bool:
        key = (user, hashlib.sha256(password.encode() + b"\0" + hashed.encode()).digest())
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        ok = self._check(password, hashed)
        with self._lock:
            if len(self._cache) > 256:
                self._cache.clear()
            self._cache[key] = ok
        return ok


@dataclass(frozen=True)
class WebConfig:
    """What the server needs: an SSL context (None: plain HTTP) and the users (empty: no auth)."""

    ssl_context: ssl.SSLContext | None = None
    users: dict[str, str] = field(default_factory=dict)
    checker: PasswordChecker | None = None

    def authorized(self, user: str, password: str) -> bool:
        if not self.users:
            return True
        hashed = self.users.get(user)
        if hashed is None or self.checker is None:
            # Spend the same kind of effort for an unknown user, so timing does not reveal user names.
            if self.checker is not None:
                self.checker.verify("", password, next(iter(self.users.values())))
            return False
        return self.checker.verify(user, password, hashed)


def load_web_config(path: str | None) -> WebConfig:
    """Read and check the file; ConfigError (exit 2) naming the key for anything wrong."""
    if path is None:
        return WebConfig()
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError(f"cannot read web config {path}: {exc.strerror}; check --web.config.file") from None
    data = parse_yaml_subset(text, source=path)
    base = os.path.dirname(os.path.abspath(path))
    problems: list[str] = []
    for key in data:
        if key not in ("tls_server_config", "basic_auth_users"):
            problems.append(f"{key}: not supported (only tls_server_config and basic_auth_users)")
    context = _tls(data.get("tls_server_config"), base, problems)
    users = _users(data.get("basic_auth_users"), problems)
    if problems:
        raise ConfigError(f"invalid web config {path}: " + "; ".join(problems), tuple(problems))
    checker = PasswordChecker() if users else None
    return WebConfig(ssl_context=context, users=users, checker=checker)


def _tls(section: object, base: str, problems: list[str]) -> ssl.SSLContext | None:
    if section is None:
        return None
    if not isinstance(section, dict):
        problems.append("tls_server_config: must be a mapping")
        return None
    for key in section:
        if key not in _TLS_KEYS:
            problems.append(
                f"tls_server_config.{key}: not supported (supported: {', '.join(sorted(_TLS_KEYS))})"
            )
    cert, key_file = section.get("cert_file"), section.get("key_file")
    if not cert or not key_file:
        problems.append("tls_server_config: cert_file and key_file are both required")
        return None
    auth = section.get("client_auth_type", "NoClientCert")
    if auth not in _CLIENT_AUTH:
        problems.append(
            f"tls_server_config.client_auth_type: {auth!r} is not one of {', '.join(_CLIENT_AUTH)}"
        )
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    for name, attr in (("min_version", "minimum_version"), ("max_version", "maximum_version")):
        value = section.get(name)
        if value is None:
            continue
        if value not in _VERSIONS:
            problems.append(f"tls_server_config.{name}: {value!r} is not TLS12 or TLS13")
            return None
        setattr(context, attr, _VERSIONS[value])
    context.minimum_version = max(
        context.minimum_version, ssl.TLSVersion.TLSv1_2
    )  # exporter-toolkit's default minimum too
    try:
        context.load_cert_chain(os.path.join(base, cert), os.path.join(base, key_file))
    except (OSError, ssl.SSLError) as exc:
        problems.append(f"tls_server_config: cannot load cert_file/key_file: {exc}")
        return None
    ca = section.get("client_ca_file")
    context.verify_mode = _CLIENT_AUTH[auth]
    if ca:
        try:
            context.load_verify_locations(os.path.join(base, ca))
        except (OSError, ssl.SSLError) as exc:
            problems.append(f"tls_server_config.client_ca_file: cannot load: {exc}")
            return None
    elif context.verify_mode != ssl.CERT_NONE:
        problems.append("tls_server_config.client_ca_file: required by client_auth_type " + str(auth))
        return None
    return context


def _users(section: object, problems: list[str]) -> dict[str, str]:
    if section is None:
        return {}
    if not isinstance(section, dict):
        problems.append("basic_auth_users: must be a mapping of user name to bcrypt hash")
        return {}
    users: dict[str, str] = {}
    for user, hashed in section.items():
        if not isinstance(hashed, str) or not _BCRYPT_HASH.match(hashed):
            problems.append(
                f"basic_auth_users.{user}: not a bcrypt hash ($2y$...); make one with "
                f"'htpasswd -nBC 10 {user}' or python -c 'import bcrypt; print(bcrypt.hashpw(...))'"
            )
            continue
        users[user] = hashed
    return users
