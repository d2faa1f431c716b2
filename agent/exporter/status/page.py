"""The status page as HTML, rendered from the model dict (agent.exporter.status.model). Pure: dict in,
text out.

One self-contained document: inline CSS, inline SVG timelines, no script and no external asset (a Pi on
a home network may have no Internet route for the browser to fetch one from, and the page must read the
same without JavaScript); `<meta http-equiv="refresh">` reloads it. Every value that comes from outside
the code (target names from the config, addresses, reverse names, evidence sentences, tag names from
`[upstreams]`) goes through `_e` (html.escape with quotes), in text and in attributes alike.

Narrow screens first: the page is one column, tables that can be wider than a phone scroll inside their
own box, and long words (addresses, names) break rather than push the page sideways.
"""

from __future__ import annotations

import html
import time
from collections.abc import Mapping, Sequence
from typing import Any

REFRESH_S = 30
# Fixed colours for the default groups (colour-blind safe pairs from the Okabe-Ito palette), then a
# palette by position for any other configured group.
_COLOURS = {"china_unicom": "#d55e00", "transtelecom": "#0072b2", "other": "#e69f00", "unknown": "#999999"}
_PALETTE = ("#009e73", "#cc79a7", "#56b4e9", "#f0e442", "#000000")
_NO_DATA = "#e8e8e8"
DASH = "&ndash;"  # an empty cell

_CSS = """
*{box-sizing:border-box}
body{font:15px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;padding:12px;
max-width:1100px;color:#222;background:#fafafa;overflow-wrap:anywhere}
h1{font-size:1.4em;margin:0 0 4px}h2{font-size:1.15em;margin:24px 0 8px;border-bottom:1px solid #ccc}
h3{font-size:1.05em;margin:0 0 6px}
.muted{color:#666;font-size:.9em}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px;margin:0 0 12px}
.tag{display:inline-block;padding:0 6px;border-radius:4px;color:#fff;font-weight:600}
.conf{font-size:.85em;color:#444}
.bar{display:flex;height:10px;border-radius:3px;overflow:hidden;background:#eee;margin:6px 0}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:.9em;width:100%}
th,td{text-align:left;padding:2px 6px;border-bottom:1px solid #eee;vertical-align:top;white-space:nowrap}
td.num,th.num{text-align:right}
.tag{white-space:nowrap}
@media (max-width:640px){
table.targets thead,table.changes thead{display:none}
table.targets tr,table.changes tr{display:block;border-bottom:1px solid #eee;padding:3px 0}
table.targets td,table.changes td{display:inline-block;border:0;padding:1px 8px 1px 0;white-space:normal}
table.targets td.num{text-align:left}
td[data-label]::before{content:attr(data-label) ": ";color:#666}
}
tr.border td{background:#fff3cd;font-weight:600}
.lane{display:flex;align-items:center;gap:6px;margin:2px 0}
.lane span{flex:0 0 8.5em;font-size:.8em}
.lane svg{flex:1 1 auto;min-width:0;height:14px;display:block}
.axis{display:flex;justify-content:space-between;font-size:.75em;color:#666;margin-left:calc(8.5em + 6px)}
.legend span{margin-right:10px;font-size:.85em;white-space:nowrap}
.legend i{display:inline-block;width:10px;height:10px;margin-right:3px;border-radius:2px}
ul.evidence{margin:6px 0 0;padding-left:18px;font-size:.9em}
details{background:#fff;border:1px solid #ddd;border-radius:6px;padding:6px 10px;margin:0 0 8px}
summary{cursor:pointer}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:0}
dt{color:#555}dd{margin:0}
.bad{color:#b00020;font-weight:600}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def colour(tag: str, tags: Sequence[str]) -> str:
    """The colour of a tag: fixed for the default groups, else by its position among the tags.

    >>> colour("transtelecom", []), colour("my_upstream", ["my_upstream"])
    ('#0072b2', '#009e73')
    """
    if tag in _COLOURS:
        return _COLOURS[tag]
    extra = [t for t in tags if t not in _COLOURS]
    return _PALETTE[extra.index(tag) % len(_PALETTE)] if tag in extra else _PALETTE[-1]


def when(t: float | None, now: float) -> str:
    """A Unix time as UTC text with how long ago.

    >>> when(0.0, 90.0)
    '1970-01-01 00:00:00 UTC (1 min ago)'
    >>> when(None, 0.0)
    'never'
    """
    if t is None:
        return "never"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))
    return f"{stamp} ({duration(now - t)} ago)"


def duration(seconds: float) -> str:
    """A duration in the largest units that fit.

    >>> duration(42), duration(3600 * 5 + 60 * 3), duration(86400 * 3)
    ('42 s', '5 h 3 min', '3 d 0 h')
    """
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def _tag(tag: str, tags: Sequence[str]) -> str:
    style = f"background:{colour(tag, tags)}"
    return f'<span class="tag" data-upstream="{_e(tag)}" style="{style}">{_e(tag)}</span>'


def _ratio_bar(ratio: Mapping[str, float], tags: Sequence[str]) -> str:
    parts = [
        f'<i style="width:{share * 100:.1f}%;background:{colour(tag, tags)}" title="{_e(tag)} '
        f'{share * 100:.0f} %"></i>'
        for tag, share in ratio.items()
        if share > 0
    ]
    text = ", ".join(f"{_e(tag)} {share * 100:.0f} %" for tag, share in ratio.items() if share > 0)
    return (
        f'<div class="bar" role="img" aria-label="{text or "no round yet"}">{"".join(parts)}</div>'
        f'<div class="muted">flows of the latest round: {text or "no round yet"}</div>'
    )


def _rtt_loss(target: Mapping[str, Any]) -> tuple[str, str]:
    rtts = [f"{_e(p)} {v:.1f} ms" for p, v in target["rtt_ms"].items() if v is not None]
    losses = [f"{_e(p)} {v * 100:.0f} %" for p, v in target["loss"].items() if v is not None]
    return (", ".join(rtts) or DASH, ", ".join(losses) or DASH)


# The timeline's span: the shortest of these that holds everything known (at most the model's 24 h), so
# an agent that has run for minutes shows its minutes, not a sliver at the end of a day.
SPANS_S = (600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 24 * 3600)


def timeline_span(model: Mapping[str, Any]) -> float:
    """Seconds the timelines show, ending now.

    >>> m = {"generated_at": 10_000.0, "window": {"start": 0.0}, "prefixes": [{"timeline": [
    ...     {"segments": [{"start": 9_000.0, "end": 10_000.0, "upstream": "cu"}]}]}]}
    >>> timeline_span(m)
    1800
    >>> m["prefixes"][0]["timeline"][0]["segments"] = []
    >>> timeline_span(m)
    600
    """
    now, window = model["generated_at"], model["window"]
    starts = [s["start"] for p in model["prefixes"] for lane in p["timeline"] for s in lane["segments"]]
    known = now - min(starts) if starts else 0.0
    longest = now - window["start"]
    return next((span for span in SPANS_S if span >= known), SPANS_S[-1]) if known < longest else longest


def _span_text(span: float) -> str:
    return f"{span / 3600:g} h" if span >= 3600 else f"{span / 60:g} min"


def _axis(span: float) -> str:
    """Five labels under a timeline: -span ... now."""
    unit, size = ("h", 3600.0) if span >= 3 * 3600 else ("min", 60.0)
    labels = [f"&minus;{span * (4 - i) / 4 / size:g} {unit}" for i in range(4)] + ["now"]
    return "".join(f"<span>{label}</span>" for label in labels)


def _timeline(lanes: Sequence[Mapping[str, Any]], span: float, end: float, tags: Sequence[str]) -> str:
    start = end - span
    out = ['<figure class="timeline" style="margin:8px 0 0">']
    for lane in lanes:
        rects = [f'<rect width="1000" height="10" fill="{_NO_DATA}"><title>no data</title></rect>']
        for seg in lane["segments"]:
            if seg["end"] <= start:
                continue
            begin = max(seg["start"], start)
            x = (begin - start) / span * 1000.0
            w = max((seg["end"] - begin) / span * 1000.0, 3.0)  # a recent change stays visible
            label = (
                f"{seg['upstream']} {time.strftime('%H:%M', time.gmtime(seg['start']))}-"
                f"{time.strftime('%H:%M', time.gmtime(seg['end']))}"
            )
            tag = seg["upstream"]
            paint = f'class="u{tags.index(tag)}"' if tag in tags else f'fill="{colour(tag, tags)}"'
            rects.append(
                f'<rect x="{x:.1f}" width="{w:.1f}" height="10" {paint} data-upstream="{_e(tag)}">'
                f"<title>{_e(label)}</title></rect>"
            )
        ticks = "".join(f'<line x1="{x}" x2="{x}" y1="0" y2="10" stroke="#fff"/>' for x in (250, 500, 750))
        label = lane["name"] or lane["target"]
        out.append(
            f'<div class="lane" data-target="{_e(lane["target"])}"><span>{_e(label)}</span>'
            f'<svg viewBox="0 0 1000 10" preserveAspectRatio="none" role="img" '
            f'aria-label="upstream of {_e(lane["target"])}, UTC">{"".join(rects)}{ticks}</svg></div>'
        )
    out.append(f'<figcaption class="axis">{_axis(span)}</figcaption></figure>')
    return "".join(out)


def _bgp(bgp: Mapping[str, Any] | None, now: float) -> str:
    if bgp is None:
        return '<p class="muted">BGP: no view (no [bgp] snapshot configured)</p>'
    neighbours = ", ".join(f"AS{a}" for a in bgp["neighbours"]) or "none"
    upstreams = ", ".join(_e(u) for u in bgp["upstreams"]) or "none"
    verdict = {True: "agrees with the traces", False: '<b class="bad">differs from the traces</b>', None: ""}
    return (
        f'<p class="bgp">BGP ({_e(bgp["source"])}, {when(bgp["time"], now)}): neighbours {neighbours} '
        f"({upstreams}) {verdict[bgp['agrees']]}</p>"
    )


def _prefix(
    p: Mapping[str, Any], targets: Mapping[str, Mapping[str, Any]], model: Mapping[str, Any], span: float
) -> str:
    tags, now = model["tags"], model["generated_at"]
    rows = []
    for address in p["targets"]:
        t = targets[address]
        rtt, loss = _rtt_loss(t)
        who = _e(address) + (f' <span class="muted">{_e(t["name"])}</span>' if t["name"] else "")
        rows.append(
            f'<tr data-target="{_e(address)}"><td><a href="#t-{_e(address)}">{who}</a></td>'
            f"<td>{_tag(t['upstream'], tags)}</td><td>{_e(t['confidence']) if t['confidence'] else DASH}</td>"
            f'<td class="num" data-label="RTT">{rtt}</td><td class="num" data-label="loss">{loss}</td></tr>'
        )
    since = "no change seen" if p["since"] is None else when(p["since"], now)
    return (
        f'<article class="card prefix" data-prefix="{_e(p["prefix"])}">'
        f"<h3>{_e(p['prefix'])} {_tag(p['upstream'], tags)} "
        f'<span class="conf">confidence {_e(p["confidence"])}</span></h3>'
        f"{_ratio_bar(p['ratio'], tags)}"
        f'<p class="muted">last change: {since}</p>{_bgp(p["bgp"], now)}'
        '<div class="scroll"><table class="targets"><thead><tr><th>target</th><th>upstream</th>'
        '<th>confidence</th><th class="num">latest RTT</th><th class="num">loss (recent)</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
        f"{_timeline(p['timeline'], span, now, tags)}</article>"
    )


def _hop_row(h: Mapping[str, Any]) -> str:
    mpls = " ".join(f"L={m['label']} E={m['exp']} TTL={m['ttl']}" for m in h["mpls"])
    rtt = DASH if h["rtt_ms"] is None else f"{h['rtt_ms']:.1f}" + (f" !{_e(h['err'])}" if h["err"] else "")
    asn = "" if h["asn"] is None else f"AS{h['asn']}"
    return (
        f'<tr class="{"border" if h["border"] else "hop"}" data-hop="{h["hop"]}">'
        f'<td class="num">{h["hop"]}</td><td>{_e(h["address"] or "*")}</td><td>{_e(h["name"] or "")}</td>'
        f'<td>{asn}</td><td class="num">{rtt}</td>'
        f"<td>{_e(mpls)}</td></tr>"
    )


def _target(t: Mapping[str, Any], model: Mapping[str, Any], first: bool) -> str:
    tags, now = model["tags"], model["generated_at"]
    trace = t["trace"]
    if trace is None:
        body = '<p class="muted">no trace yet</p>'
    else:
        border = t["border"]
        where = (
            f"border: hop {border['hop']} {_e(border['address'])}"
            + (f" AS{border['asn']}" if border["asn"] is not None else "")
            if border
            else "no border seen"
        )
        as_path = " ".join("?" if a is None else f"AS{a}" for a in t["as_path"]) or DASH
        reached = "reached" if trace["reached"] else f"not reached ({_e(trace['stop_reason'])})"
        body = (
            f'<p class="muted">{_e(trace["protocol"])} Paris traceroute, paris id {trace["paris_id"]}, '
            f"{when(trace['time'], now)}, {reached}; {where}; AS path {as_path}</p>"
            '<div class="scroll"><table class="hops"><thead><tr><th class="num">hop</th><th>address</th>'
            '<th>name</th><th>AS</th><th class="num">RTT ms</th><th>MPLS</th></tr></thead><tbody>'
            + "".join(_hop_row(h) for h in t["hops"])
            + "</tbody></table></div>"
            + '<ul class="evidence">'
            + "".join(f"<li>{_e(e)}</li>" for e in t["evidence"])
            + "</ul>"
        )
    name = f' <span class="muted">{_e(t["name"])}</span>' if t["name"] else ""
    return (
        f'<details class="target" id="t-{_e(t["address"])}" data-target="{_e(t["address"])}"'
        f"{' open' if first else ''}><summary>{_e(t['address'])}{name} {_tag(t['upstream'], tags)} "
        f'<span class="conf">{_e(t["confidence"] or "no trace yet")}</span></summary>{body}</details>'
    )


def _changes(model: Mapping[str, Any]) -> str:
    if not model["changes"]:
        error = model["health"]["history"]["read_error"]
        return f'<p class="{"bad" if error else "muted"}">{_e(error or "no path change recorded yet")}</p>'
    tags, now = model["tags"], model["generated_at"]
    rows = "".join(
        f"<tr><td>{when(c['time'], now)}</td><td>{_e(c['target'])}</td>"
        f"<td>{_tag(c['old'] or 'unknown', tags)} → {_tag(c['new'], tags)}</td>"
        f"<td>{_e(' '.join('?' if a is None else f'AS{a}' for a in c['as_path']))}</td></tr>"
        for c in model["changes"]
    )
    return (
        '<div class="scroll"><table class="changes"><thead><tr><th>time</th><th>target</th>'
        f"<th>upstream</th><th>AS path</th></tr></thead><tbody>{rows}</tbody></table></div>"
    )


def _health(model: Mapping[str, Any]) -> str:
    h, now = model["health"], model["generated_at"]
    faults = [k for k, on in h["faults"].items() if on]
    errors = ", ".join(f"{_e(k)} {n}" for k, n in h["errors"].items() if n) or "none"
    asn = h["asn_table"]
    files = ", ".join(_e(f) for f in asn["files"]) or "the shipped table or `nkprobe asn update` data"
    pps_recent = DASH if h["pps_recent"] is None else f"{h['pps_recent']:.1f}"
    pps_avg = DASH if h["pps_average"] is None else f"{h['pps_average']:.1f}"
    limit = "" if h["max_pps"] is None else f" of max_pps {h['max_pps']:g}"
    history = h["history"]
    rows = [
        ("version", _e(h["version"])),
        ("up since", f"{when(h['started_at'], now)}"),
        ("packets/s", f"{pps_recent} recent, {pps_avg} average{limit} ({h['packets_sent']} sent)"),
        ("faults", f'<span class="bad">{_e(", ".join(faults))}</span>' if faults else "none"),
        ("errors", errors),
        ("config", "loaded" if h["config_reload_ok"] else '<span class="bad">last reload failed</span>'),
        ("IP-to-AS table", f"{files}; {asn['entries'] if asn['entries'] is not None else '?'} prefixes; "
         f"data from {when(asn['snapshot_time'], now) if asn['snapshot_time'] else 'an unknown date'}"),
        ("BGP snapshot", when(h["bgp_snapshot_time"], now) if h["bgp_snapshot_time"] else "none"),
        ("history", f"{history['written']} written, {history['pending']} pending, {history['dropped']} "
         f"dropped, {history['write_errors']} write errors"
         + (f'; <span class="bad">{_e(history["last_error"])}</span>' if history["last_error"] else "")),
    ]  # fmt: skip
    return "<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>"


def render_page(model: Mapping[str, Any]) -> str:
    """The whole HTML document for one model."""
    targets = {t["address"]: t for t in model["targets"]}
    tags, now = model["tags"], model["generated_at"]
    span = timeline_span(model)
    # One class per tag paints the timelines' segments (a fill attribute on each would repeat it).
    paints = "".join(f".u{i}{{fill:{colour(t, tags)}}}" for i, t in enumerate(tags))
    legend = "".join(f'<span><i style="background:{colour(t, tags)}"></i>{_e(t)}</span>' for t in tags)
    legend += f'<span><i style="background:{_NO_DATA}"></i>no data</span>'
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<meta http-equiv="refresh" content="{REFRESH_S}">'
        f"<title>nkprobe {_e(model['agent'])}: status</title><style>{_CSS}{paints}</style></head><body>"
        f"<header><h1>nkprobe · {_e(model['agent'])}</h1>"
        f'<p class="muted">Which upstream carries each /24 toward AS131279, as this agent traces it. '
        f"Version {_e(model['version'])}; page of {when(now, now).split(' (')[0]}, refreshed every "
        f'{REFRESH_S} s. <a href="metrics">metrics</a> · <a href="status.json">status.json</a> · '
        '<a href="-/healthy">health</a></p></header>'
        f'<h2>Per /24</h2><p class="legend">{legend}<span>timelines: the last {_span_text(span)}</span></p>'
        + "".join(_prefix(p, targets, model, span) for p in model["prefixes"])
        + '<h2>Last path changes</h2><section id="changes">'
        + _changes(model)
        + '</section><h2>Latest trace per target</h2><section id="traces">'
        + "".join(_target(t, model, i == 0) for i, t in enumerate(model["targets"]))
        + '</section><h2>Agent health</h2><section id="health" class="card">'
        + _health(model)
        + "</section></body></html>\n"
    )
