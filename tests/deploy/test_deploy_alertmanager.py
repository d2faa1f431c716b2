"""deploy/central/alertmanager.yml: `amtool check-config` accepts it; `amtool config routes test` sends
every alert of the rules to the receiver deploy/README.md promises; both setup scripts stop with a
one-line message naming the file when a receiver secret is missing; and Debian's real Alertmanager, fed
as Prometheus feeds it, turns a fleet-wide outage into one notification (grouping) and holds back the
owners' mails while the whole fleet is silent (inhibition). Loopback only."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.amhelp import (
    GROUP_INTERVAL_S,
    GROUP_WAIT_S,
    SHIPPED,
    Alertmanager,
    Webhook,
    alert_labels,
    config_copy,
)
from tests.support.deployhelp import CENTRAL, RECEIVER_SECRETS, need_tool, write_receiver_secrets
from tests.support.waiting import wait_for

OWNER = "ann@example.org"
PER_AGENT = ("NkprobeAgentNotReporting", "NkprobeAsnTableTooOld", "NkprobeAgentUnhealthy")
FLEET = (
    "NkprobePrefixUpstreamChanged",
    "NkprobeTargetUnreachableFromMostAgents",
    "NkprobeAllPrefixesOnOneUpstream",
    "NkprobeTracedUpstreamAbsentFromBgp",
    "NkprobeBgpRpkiInvalid",
    "NkprobeBgpVisibilityCollapse",
    "NkprobeManyAgentsNotReporting",
)
# Every routing rule: (labels of an alert, the receiver it must reach). deploy/README.md "Alerts".
ROUTES: tuple[tuple[dict[str, str], str], ...] = (
    *(({"alertname": a, "agent": "pi-1", "owner": OWNER}, "owners") for a in PER_AGENT),
    *(({"alertname": a, "agent": "pi-1"}, "operators") for a in PER_AGENT),
    *(({"alertname": a, "prefix": "175.45.176.0/24"}, "operators") for a in FLEET),
    ({"alertname": "SomethingNew"}, "operators"),  # the root route catches what no rule names
)


def shipped_alerts() -> set[str]:
    names = set()
    for f in (CENTRAL / "rules").glob("*.rules.yml"):
        for line in f.read_text().splitlines():
            if line.strip().startswith("- alert:"):
                names.add(line.split(":", 1)[1].strip())
    return names


def routes_test(labels: dict[str, str], receiver: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [need_tool("amtool"), "config", "routes", "test", f"--config.file={SHIPPED}",
         f"--verify.receivers={receiver}", *(f"{k}={v}" for k, v in labels.items())],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def test_amtool_accepts_the_config_and_rejects_a_broken_one(tmp_path: Path) -> None:
    ok = subprocess.run([need_tool("amtool"), "check-config", str(SHIPPED)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "1 inhibit rules" in ok.stdout and "2 receivers" in ok.stdout
    broken = tmp_path / "broken.yml"
    broken.write_text(SHIPPED.read_text().replace("receiver: owners", "receiver: nobody", 1))
    bad = subprocess.run([need_tool("amtool"), "check-config", str(broken)], capture_output=True, text=True)
    assert bad.returncode != 0 and "nobody" in bad.stdout + bad.stderr


def test_every_alert_has_a_routing_case() -> None:
    assert {labels["alertname"] for labels, _ in ROUTES} - {"SomethingNew"} == shipped_alerts()


@pytest.mark.parametrize(("labels", "receiver"), ROUTES, ids=lambda v: v if isinstance(v, str) else None)
def test_routing(labels: dict[str, str], receiver: str) -> None:
    proc = routes_test(labels, receiver)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == receiver


def test_routing_test_can_fail() -> None:
    proc = routes_test({"alertname": "NkprobeAgentUnhealthy", "owner": OWNER}, "operators")
    assert proc.returncode != 0


@pytest.mark.parametrize("stack", ["central", "victoriametrics"])
def test_setup_stops_on_a_missing_receiver_secret_naming_the_file(tmp_path: Path, stack: str) -> None:
    root = tmp_path / "central"
    shutil.copytree(CENTRAL, root, ignore=shutil.ignore_patterns("secrets", ".env"))
    where = root if stack == "central" else root / "victoriametrics"
    for missing in RECEIVER_SECRETS:
        write_receiver_secrets(where / "secrets")
        (where / "secrets" / "alertmanager" / missing).unlink()
        proc = subprocess.run(["bash", "setup.sh", "--no-start"], cwd=where, capture_output=True, text=True)
        assert proc.returncode == 2
        message = proc.stderr.strip().splitlines()
        assert message[-1] == (
            f"setup.sh: alertmanager.yml needs a receiver secret: write it to "
            f"{where / 'secrets' / 'alertmanager' / missing} (or remove that receiver from "
            f"{'alertmanager.yml' if stack == 'central' else '../alertmanager.yml'})"
        ), proc.stderr
    write_receiver_secrets(where / "secrets")
    proc = subprocess.run(["bash", "setup.sh", "--no-start"], cwd=where, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# -- the real Alertmanager --------------------------------------------------------------------------


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[tuple[Alertmanager, Webhook]]:
    hook = Webhook()
    manager = None
    try:
        manager = Alertmanager(tmp_path, config_copy(tmp_path, hook))
        yield manager, hook
    finally:
        if manager is not None:
            manager.stop()
        hook.stop()


def _alert(labels: dict[str, str], resolved: bool = False) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "labels": labels,
        # Now, as Prometheus stamps an alert that just fired: an alert that started more than group_wait
        # ago is flushed at once, before the rest of its batch is in (Alertmanager's dispatcher).
        "startsAt": now.isoformat(),
        "endsAt": (now if resolved else now + timedelta(hours=1)).isoformat(),
    }


def test_a_fleet_wide_outage_is_one_notification(alertmanager: tuple[Alertmanager, Webhook]) -> None:
    manager, hook = alertmanager
    name = "NkprobeTargetUnreachableFromMostAgents"
    targets = [f"175.45.17{6 + i // 50}.{i % 50 + 1}" for i in range(200)]
    outage = [{"alertname": name, "severity": "warning", "target": t} for t in targets]
    manager.post([_alert(labels) for labels in outage])
    wait_for(lambda: hook.about(name), 20, lambda: f"no notification: {hook.received()}")
    # Nothing to wait for: a second notification would be the failure, so give it a group interval.
    time.sleep(GROUP_INTERVAL_S + 1)
    assert len(hook.about(name)) == 1, [(p, n["status"], len(n["alerts"])) for p, n in hook.about(name)]
    ((path, first),) = hook.about(name)
    assert path == "/operators" and first["status"] == "firing"
    assert sorted(a["target"] for a in alert_labels(first)) == sorted(targets)
    manager.post([_alert(labels, resolved=True) for labels in outage])
    wait_for(lambda: len(hook.about(name)) == 2, 20, lambda: f"not resolved: {hook.about(name)[1:]}")
    assert hook.about(name)[1][1]["status"] == "resolved"


def test_the_fleet_going_silent_holds_back_the_owners_mails(
    alertmanager: tuple[Alertmanager, Webhook],
) -> None:
    manager, hook = alertmanager
    many = {"alertname": "NkprobeManyAgentsNotReporting", "severity": "critical"}
    silent = [
        {"alertname": "NkprobeAgentNotReporting", "severity": "warning", "agent": f"pi-{i}", "owner": OWNER}
        for i in range(30)
    ]
    manager.post([_alert(many)])
    wait_for(lambda: hook.about(many["alertname"]), 20, lambda: f"no notification: {hook.received()}")
    manager.post([_alert(labels) for labels in silent])
    # The owners' group is flushed after group_wait: give it that and a group interval to show that it
    # stays silent (an absence has no event to wait for).
    time.sleep(GROUP_WAIT_S + GROUP_INTERVAL_S + 1)
    assert [p for p, _ in hook.received()] == ["/operators"], hook.received()
    # The fleet alert resolves while these agents stay silent: now their owner hears of them, once.
    manager.post([_alert(many, resolved=True)])
    wait_for(lambda: hook.about("NkprobeAgentNotReporting"), 20, lambda: f"owner not told: {hook.received()}")
    ((path, note),) = hook.about("NkprobeAgentNotReporting")
    assert path == "/owners" and note["groupLabels"] == {
        "alertname": "NkprobeAgentNotReporting",
        "owner": OWNER,
    }
    # Inhibited alerts are not dropped, only held back: all 30, in one notification.
    assert len(note["alerts"]) == 30 and note["status"] == "firing"
