"""dashboards/: the JSON is what generate.py makes, provisioning works with any datasource name, and
README.md explains every panel."""

from __future__ import annotations

import importlib.util
import json
from typing import Any

import pytest

from tests.support.deployhelp import DASHBOARDS


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("nkprobe_dashboards_generate", DASHBOARDS / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DASHBOARDS / name).read_text())
    return data


def _panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dash["panels"] if p["type"] != "row"]


def test_json_matches_the_generator() -> None:
    rendered = _generator().render()
    assert set(rendered) == {"nkprobe-overview.json", "nkprobe-target.json", "nkprobe-fleet.json"}
    for name, text in rendered.items():
        assert (DASHBOARDS / name).read_text() == text, f"{name} is stale: run python3 dashboards/generate.py"


@pytest.mark.parametrize("name", ["nkprobe-overview.json", "nkprobe-target.json", "nkprobe-fleet.json"])
def test_datasource_is_a_variable(name: str) -> None:
    dash = _load(name)
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    for panel in _panels(dash):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}"
    # No datasource name or uid of one particular Grafana is baked in.
    text = (DASHBOARDS / name).read_text()
    assert "nkprobe-prometheus" not in text


@pytest.mark.parametrize("name", ["nkprobe-overview.json", "nkprobe-target.json", "nkprobe-fleet.json"])
def test_layout_is_sane(name: str) -> None:
    dash = _load(name)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
    assert dash["uid"] == name.removesuffix(".json")
    assert all(p["title"] and p.get("description") for p in _panels(dash))


def test_overview_answers_the_questions() -> None:
    dash = _load("nkprobe-overview.json")
    exprs = " ".join(t["expr"] for p in _panels(dash) for t in p["targets"])
    assert "prefix_upstream:nkprobe_path_upstream:share" in exprs  # current upstream per /24
    assert "nkprobe_target_up" in exprs  # reachability
    heatmaps = [p for p in _panels(dash) if p["type"] == "heatmap"]
    assert {p["title"] for p in heatmaps} >= {"RTT via china_unicom", "RTT via transtelecom"}
    annotation_exprs = [a.get("expr", "") for a in dash["annotations"]["list"]]
    assert any("nkprobe_path_changes_total" in e for e in annotation_exprs)


def test_readme_explains_every_panel() -> None:
    readme = (DASHBOARDS / "README.md").read_text()
    for name in ("nkprobe-overview.json", "nkprobe-target.json", "nkprobe-fleet.json"):
        for panel in _panels(_load(name)):
            assert f"**{panel['title']}**" in readme, (
                f"dashboards/README.md does not explain {panel['title']!r}"
            )


def test_provisioning_files() -> None:
    import yaml  # PyYAML: a test dependency (pyproject [test]), never a skip

    ds = yaml.safe_load((DASHBOARDS / "provisioning" / "datasources" / "nkprobe.yml").read_text())
    (source,) = ds["datasources"]
    assert source["type"] == "prometheus" and source["basicAuth"] is True
    assert source["secureJsonData"]["basicAuthPassword"] == "${NKPROBE_PROMETHEUS_PASSWORD}"
    boards = yaml.safe_load((DASHBOARDS / "provisioning" / "dashboards" / "nkprobe.yml").read_text())
    (provider,) = boards["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
