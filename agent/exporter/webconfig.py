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

The file is YAML, read with PyYAML's safe loader (imported only when a web config is given), with two
rules of exporter-toolkit's Go YAML reading kept: every scalar is text (a user named `yes` or a file named
`2024` stays a string; only an empty value, `~` or `null` is "not set"), and a key given twice is an
error, not a silent override (a second `basic_auth_users` must not replace the first). Unknown keys are
errors, as in exporter-toolkit (a typo must not silently disable TLS).

Passwords are bcrypt hashes ($2a$, $2b$, $2y$), checked with the `bcrypt` module (python3-bcrypt; the C
library's crypt(3) through Python's `crypt` module is not an option: PEP 594 removed `crypt` in Python
3.13). Without `bcrypt`, loading a config with users fails with a config error that says to install it:
the agent never starts with basic auth it cannot enforce. Verified credentials are cached (a SHA-256 of
the password, never the password), as exporter-toolkit does, because a bcrypt check costs tens of
milliseconds on a Raspberry Pi and Prometheus scrapes often.
"""

from __future__ import annotations

import os
import re
import ssl
import threading
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


def read_yaml(text: str, source: str = "web config") -> dict[str, Any]:
    """The web config's YAML as exporter-toolkit reads it: a mapping whose scalars are all text.

    PyYAML parses; `_loader()` keeps Go's reading of it (see the module docstring). A YAML error, a
    document that is not a mapping and a key given twice are ConfigErrors with the line number.

    >>> read_yaml("a:\\n  b: 'x y'  # note\\n  c: 10\\nd: yes\\ne:\\n")
    {'a': {'b': 'x y', 'c': '10'}, 'd': 'yes', 'e': None}
    """
    import yaml  # only here: an agent without a web config never loads it

    try:
        data = yaml.load(text, Loader=_loader())  # a SafeLoader: see _loader
    except _DuplicateKey as exc:
        raise ConfigError(f"{source} line {exc.line}: duplicate key {exc.key!r}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source} line {mark.line + 1}" if mark is not None else source
        raise ConfigError(f"{where}: {exc.problem or exc.context}; this is not valid YAML") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: {exc}; this is not valid YAML") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source} line 1: expected 'key: value'; a web config is a mapping "
            f"(tls_server_config, basic_auth_users)"
        )
    return data


class _DuplicateKey(Exception):
    def __init__(self, key: object, line: int) -> None:
        super().__init__(key, line)
        self.key, self.line = key, line


_LOADERS: list[type] = []


def _loader() -> type:
    """A SafeLoader (no Python objects are ever built) that reads every plain scalar as text, except an
    empty value, `~` and `null`, and refuses a key given twice, as Go's yaml.v2 decoding a config struct
    of strings does (exporter-toolkit). Made once, on first use."""
    if _LOADERS:
        return _LOADERS[0]
    import yaml

    class WebConfigLoader(yaml.SafeLoader):
        pass

    # PyYAML keeps implicit resolvers in a class attribute: start this class with none, then add back
    # only null (YAML 1.1's bool/int/float/timestamp resolvers would turn `yes` into True, `010` into 8).
    WebConfigLoader.yaml_implicit_resolvers = {}
    WebConfigLoader.add_implicit_resolver(
        "tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]
    )

    def construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
        mapping = dict(loader.construct_mapping(node))  # refuses unhashable keys; keeps the last of two
        seen: set[Any] = set()
        for key_node, _value_node in node.value:
            key = loader.construct_object(key_node)  # built above already: this is a cache lookup
            if key in seen:
                raise _DuplicateKey(key, key_node.start_mark.line + 1)
            seen.add(key)
        return mapping

    WebConfigLoader.add_constructor("tag:yaml.org,2002:map", construct_mapping)
    _LOADERS.append(WebConfigLoader)
    return WebConfigLoader


# bcrypt reads at most 72 bytes of a password (the Blowfish key schedule). python3-bcrypt 3.2 (bookworm)
# and Go's x/crypto/bcrypt (exporter-toolkit, Prometheus) ignore the rest; bcrypt 5.0 (PyPI, 2025) raises
# ValueError instead. We compare the first 72 bytes, as exporter-toolkit does, whatever the version.
BCRYPT_MAX_PASSWORD = 72


def bcrypt_matches(bcrypt: Any, password: str, hashed: str) -> bool:
    """`password` against a bcrypt hash, the same on bcrypt 3.2, 4.x and 5.x (the one place that knows
    how they differ). A NUL byte makes 3.2 raise ValueError and is refused here first; a hash that the
    module cannot read (ValueError "Invalid salt") matches nothing."""
    secret = password.encode()
    if b"\0" in secret:
        return False
    try:
        return bool(bcrypt.checkpw(secret[:BCRYPT_MAX_PASSWORD], hashed.encode()))
    except ValueError:
        return False


class PasswordChecker:
    """Checks a password against a bcrypt hash with the `bcrypt` module; raises ConfigError without it."""

    def __init__(self) -> None:
        try:
            import bcrypt  # only here: an agent without basic auth never loads it
        except ImportError:
            raise ConfigError(
                "basic_auth_users needs bcrypt, which this Python cannot check: install it "
                "(pip install bcrypt, or apt install python3-bcrypt) or remove basic_auth_users"
            ) from None
        self._bcrypt = bcrypt
        self._cache: dict[tuple[str, bytes], bool] = {}
        self._lock = threading.Lock()

    def _check(self, password: str, hashed: str) -> bool:
        return bcrypt_matches(self._bcrypt, password, hashed)

    def verify(self, user: str, password: str, hashed: str) -> bool:
        import hashlib  # here: only an agent with basic-auth users pays its 0.4 MiB (issue 25)

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
    data = read_yaml(text, source=path)
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
    for key, value in section.items():
        if key not in _TLS_KEYS:
            problems.append(
                f"tls_server_config.{key}: not supported (supported: {', '.join(sorted(_TLS_KEYS))})"
            )
        elif value is not None and not isinstance(value, str):
            problems.append(f"tls_server_config.{key}: must be a file name or word, not {_kind(value)}")
    if any(v is not None and not isinstance(v, str) for v in section.values()):
        return None
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
        if not isinstance(user, str):
            problems.append(f"basic_auth_users: user name {user!r} is {_kind(user)}; quote it")
            continue
        if not isinstance(hashed, str) or not _BCRYPT_HASH.match(hashed):
            problems.append(
                f"basic_auth_users.{user}: not a bcrypt hash ($2y$...); make one with "
                f"'htpasswd -nBC 10 {user}' or python -c 'import bcrypt; print(bcrypt.hashpw(...))'"
            )
            continue
        users[user] = hashed
    return users


def _kind(value: object) -> str:
    """What a YAML value is, for a message ('a list', 'a mapping', 'an int')."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    name = type(value).__name__
    return ("an " if name[0] in "aeiou" else "a ") + name
