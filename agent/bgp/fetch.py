"""The live view's refresh from the RIPEstat data API over HTTP(S) (urllib, run in a thread by the
caller): for each destination prefix the `looking-glass` (routes per collector peer), and for each /24
`routing-status` (visibility) and `rpki-validation` with the destination AS as origin.

What is sent: GET requests naming only the destination prefixes and AS (public data), with
`sourceapp=nkprobe` as RIPEstat asks of applications (https://stat.ripe.net/docs/data-api/). Nothing
about the volunteer beyond the connection itself.

Any answer that is not the documented envelope, of another data call, or of a major version we do not
read, raises InputError with one line naming the URL; the caller keeps its last good view.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any

from agent.bgp.live import RipestatState, rpki_state
from agent.bgp.ripestat import (
    LOOKING_GLASS,
    ROUTING_STATUS,
    RPKI_VALIDATION,
    parse_looking_glass,
    parse_routing_status,
    parse_rpki_validation,
)
from agent.bgp.view import slash24s
from agent.errors import InputError

USER_AGENT = "nkprobe-bgp (live BGP view of North Korea's upstreams)"
MAX_BYTES = 8 << 20  # the looking glass for a /22 is about 20 KB

Getter = Callable[[str, float], bytes]  # (url, timeout) -> body; raises InputError


def get(url: str, timeout_s: float) -> bytes:
    """GET `url` (http or https only); InputError on any failure, naming the URL."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise InputError(f"{url}: only http and https URLs are fetched; check [bgp] ripestat_url")
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # scheme checked above
            body: bytes = response.read(MAX_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise InputError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise InputError(f"{url}: {getattr(exc, 'reason', exc)}") from None
    if len(body) > MAX_BYTES:
        raise InputError(f"{url}: larger than {MAX_BYTES >> 20} MB")
    return body


def call_url(base: str, call: str, **params: str) -> str:
    """The data call's URL under the configured base.

    >>> call_url("https://stat.ripe.net/data/", "looking-glass", resource="175.45.176.0/22")
    'https://stat.ripe.net/data/looking-glass/data.json?resource=175.45.176.0%2F22&sourceapp=nkprobe'
    """
    query = urllib.parse.urlencode({**params, "sourceapp": "nkprobe"})
    return f"{base.rstrip('/')}/{call}/data.json?{query}"


def _json(url: str, getter: Getter, timeout_s: float) -> Any:
    body = getter(url, timeout_s)
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{url}: not JSON ({exc})") from None


def fetch_state(
    base: str, destination_asn: int, prefixes: Iterable[str], timeout_s: float = 20.0, getter: Getter = get
) -> RipestatState:
    """One refresh: every call must succeed, or InputError (the view keeps what it had)."""
    prefixes = list(prefixes)
    routes = []
    for p in prefixes:
        url = call_url(base, LOOKING_GLASS, resource=p)
        asked = ipaddress.IPv4Network(p)
        for route in parse_looking_glass(_json(url, getter, timeout_s), url):
            # The looking glass answers the resource and its more-specifics: anything else is an answer
            # to another question (a proxy's cache, a wrong base URL), not data about the destination.
            if not route.prefix.overlaps(asked):
                raise InputError(
                    f"{url}: route for {route.prefix} is outside the destination {p}; "
                    "check [bgp] ripestat_url"
                )
            routes.append(route)
    seeing: dict[str, tuple[int, int]] = {}
    rpki: dict[str, str] = {}
    for net in slash24s(prefixes):
        url = call_url(base, ROUTING_STATUS, resource=str(net))
        seeing[str(net)] = parse_routing_status(_json(url, getter, timeout_s), url)
        url = call_url(base, RPKI_VALIDATION, resource=str(destination_asn), prefix=str(net))
        raw = parse_rpki_validation(_json(url, getter, timeout_s), url)
        state = rpki_state(raw)
        if state is None:
            raise InputError(f"{url}: RPKI status {raw!r} is not one RIPEstat documents; update nkprobe")
        rpki[str(net)] = state
    return RipestatState(tuple(routes), seeing, rpki)
