"""The /metrics page in the Prometheus text format 0.0.4 or OpenMetrics 1.0.0, chosen from the scraper's
Accept header: the same bytes and Content-Type that prometheus_client 0.26 (`exposition.choose_encoder`)
gives for the same families, which tests/exporter/test_exposition.py checks, without its import cost.

Formats: https://prometheus.io/docs/instrumenting/exposition_formats/ (text 0.0.4) and
https://github.com/prometheus/OpenMetrics/blob/v1.0.0/specification/OpenMetrics.md. Every metric and
label name the agent writes is a legacy Prometheus name ([a-zA-Z_][a-zA-Z0-9_]*), so of the name-escaping
schemes a scraper may ask for (`escaping=` in Accept, Prometheus 3) only "dots" changes them (an
underscore is written twice), and "values" the OpenMetrics sample names, as client_python does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

from agent.exporter.families import Collector, Sample

TEXT_0_0_4 = "text/plain; version=0.0.4; charset=utf-8"
TEXT_1_0_0 = "text/plain; version=1.0.0; charset=utf-8"  # the same body; what client_python answers
OPENMETRICS_1_0_0 = "application/openmetrics-text; version=1.0.0; charset=utf-8"
ESCAPINGS = ("allow-utf-8", "underscores", "dots", "values")

Encoder = Callable[[Collector], bytes]
"""Encodes what a registry (or any collector) collects; prometheus_client's encoders have this shape too."""


def format_value(value: float) -> str:
    """A sample value as client_python writes it: Python's shortest repr, but like Go's strconv an
    exponent for a positive number of seven or more integer digits.

    >>> [format_value(v) for v in (1, 0.25, 1234567.0, 1e6, 12345678.5, -1234567.0, float("nan"))]
    ['1.0', '0.25', '1.234567e+06', '1e+06', '1.23456785e+07', '-1234567.0', 'NaN']
    >>> format_value(float("inf")), format_value(-float("inf")), format_value(1e22)
    ('+Inf', '-Inf', '1e+22')
    """
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(value)
    whole, dot, fraction = text.partition(".")
    if value > 0 and dot and len(whole) > 6:
        digits = (whole + fraction).rstrip("0")
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{mantissa}e+{len(whole) - 1:02d}"
    return text


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _name(name: str, escaping: str) -> str:
    return name.replace("_", "__") if escaping == "dots" else name


def _labels(labels: dict[str, str], escaping: str) -> str:
    if not labels:
        return ""
    pairs = ",".join(f'{_name(k, escaping)}="{_label_value(v)}"' for k, v in sorted(labels.items()))
    return "{" + pairs + "}"


def sample_line(s: Sample) -> str:
    """The line of a sample without a timestamp, escaping "underscores": what both formats write for it
    (MetricFamily.blocks hold such lines)."""
    return f"{s.name}{_labels(s.labels, 'underscores')} {format_value(s.value)}\n"


def text_format(registry: Collector, escaping: str = "underscores") -> bytes:
    """Text format 0.0.4: counters named with `_total`, info families as gauges named with `_info`."""
    out: list[str] = []
    rendered = escaping == "underscores"  # MetricFamily.blocks are the lines of this escaping
    for family in registry.collect():
        name, kind = family.name, family.type
        if kind == "counter":
            name += "_total"
        elif kind == "info":
            name, kind = name + "_info", "gauge"
        name = _name(name, escaping)
        help_text = family.documentation.replace("\\", "\\\\").replace("\n", "\\n")
        out.append(f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n")
        if rendered and family.blocks is not None:
            out += family.blocks
            continue
        for s in family.samples:
            stamp = "" if s.timestamp is None else f" {int(float(s.timestamp) * 1000):d}"
            out.append(
                f"{_name(s.name, escaping)}{_labels(s.labels, escaping)} {format_value(s.value)}{stamp}\n"
            )
    return "".join(out).encode()


def openmetrics_format(registry: Collector, escaping: str = "underscores") -> bytes:
    """OpenMetrics 1.0.0 text, ending in `# EOF`."""
    out: list[str] = []
    rendered = escaping == "underscores"  # MetricFamily.blocks are the lines of this escaping
    for family in registry.collect():
        name = _name(family.name, escaping)
        help_text = _label_value(family.documentation)
        out.append(f"# HELP {name} {help_text}\n# TYPE {name} {family.type}\n")
        if family.unit:
            out.append(f"# UNIT {name} {family.unit}\n")
        if rendered and family.blocks is not None:
            out += family.blocks
            continue
        for s in family.samples:
            # client_python applies "values" escaping to the sample names alone (U__ and doubled
            # underscores), not to the HELP and TYPE lines; kept, for the same bytes.
            sample = "U__" + s.name.replace("_", "__") if escaping == "values" else _name(s.name, escaping)
            stamp = "" if s.timestamp is None else f" {s.timestamp}"
            out.append(f"{sample}{_labels(s.labels, escaping)} {format_value(s.value)}{stamp}\n")
    out.append("# EOF\n")
    return "".join(out).encode()


def _parameter(tokens: list[str], key: str) -> str:
    for token in tokens:
        name, sep, value = token.strip().partition("=")
        if sep and name == key:
            return value
    return ""


def _version_at_least_1(version: str) -> bool:
    parts = [int(p) if p.isdigit() else -1 for p in version.split(".")]
    return parts >= [1, 0, 0]


def choose_encoder(accept: str) -> tuple[Encoder, str]:
    """The encoder and Content-Type for an Accept header, as client_python 0.26 negotiates: the first
    media range it knows wins (q-values are not weighed); OpenMetrics without a version is 1.0.0; a
    version below 1.0.0 of either format is passed over; with none taken, text 0.0.4. The escaping
    scheme (Prometheus 3's `escaping=`) applies from version 1.0.0 on.

    >>> choose_encoder("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")[1]
    'application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores'
    >>> choose_encoder("application/openmetrics-text;version=0.0.1,text/plain;version=0.0.4")[1]
    'text/plain; version=0.0.4; charset=utf-8'
    """
    for accepted in (accept or "").split(","):
        tokens = accepted.split(";")
        media = tokens[0].strip()
        if media not in ("application/openmetrics-text", "text/plain"):
            continue
        version = _parameter(tokens, "version")
        if media == "application/openmetrics-text" and not version:
            return openmetrics_format, OPENMETRICS_1_0_0
        if not version or not _version_at_least_1(version):
            continue
        escaping = _parameter(tokens, "escaping")
        escaping = escaping if escaping in ESCAPINGS else "underscores"
        if media == "text/plain":
            return partial(text_format, escaping=escaping), f"{TEXT_1_0_0}; escaping={escaping}"
        content_type = f"application/openmetrics-text; version={version}; charset=utf-8; escaping={escaping}"
        return partial(openmetrics_format, escaping=escaping), content_type
    return text_format, TEXT_0_0_4
