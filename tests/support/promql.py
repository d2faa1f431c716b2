"""The PromQL expressions of the central rules and the dashboards, as Grafana would send them: read by
tests/deploy/test_deploy_promql.py (they parse and name known metrics) and test_deploy_e2e.py (they return
data after a lab flip)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from tests.support.deployhelp import CENTRAL, DASHBOARDS

RULE_FILES = sorted((CENTRAL / "rules").glob("*.rules.yml"))
DASHBOARD_FILES = sorted(DASHBOARDS.glob("*.json"))

# Grafana's variables, replaced by what Grafana would put there.
GRAFANA_VARS = {"$__rate_interval": "2m", "$__interval": "1m", "$__range": "1d"}


def rule_exprs() -> Iterator[tuple[str, str]]:
    for path in RULE_FILES:
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            m = re.match(r"^(\s*)expr: (.*)$", line)
            if not m:
                continue
            if m.group(2).strip() == "|":
                indent = len(m.group(1)) + 2
                body = []
                for following in lines[i + 1 :]:
                    if following.strip() and len(following) - len(following.lstrip()) < indent:
                        break
                    body.append(following.strip())
                yield f"{path.name}:{i + 1}", " ".join(body).strip()
            else:
                yield f"{path.name}:{i + 1}", m.group(2).strip()


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def dashboard_exprs() -> Iterator[tuple[str, str]]:
    for path in DASHBOARD_FILES:
        for node in _walk(json.loads(path.read_text())):
            if isinstance(node.get("expr"), str):
                yield (
                    f"{path.name}:{node.get('title') or node.get('name') or node.get('refId')}",
                    node["expr"],
                )


def variable_metrics() -> Iterator[tuple[str, str]]:
    """label_values(METRIC, label) queries of the dashboards' variables: METRIC must exist too."""
    for path in DASHBOARD_FILES:
        for var in json.loads(path.read_text())["templating"]["list"]:
            if var["type"] == "query":
                m = re.fullmatch(r"label_values\((\w+), *\w+\)", var["definition"])
                assert m, f"{path.name} variable {var['name']}: unexpected query {var['definition']}"
                yield f"{path.name}:${var['name']}", m.group(1)


def grafana_to_promql(expr: str) -> str:
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    # User variables only ever appear inside label matcher strings; any other use would not parse.
    return expr


def all_exprs() -> list[tuple[str, str]]:
    return [*rule_exprs(), *dashboard_exprs()]
