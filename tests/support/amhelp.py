"""Debian's Alertmanager on loopback with the shipped routing tree, a webhook receiver that records
every notification, and the shipped rules made fast (`rules_copy`): shared by
tests/deploy/test_deploy_alertmanager.py and the fleet alert tests (the lab's and VictoriaMetrics').

The copy of deploy/central/alertmanager.yml a test runs keeps the route tree and the inhibit rules as
shipped (asserted) and changes two things only: each receiver's e-mail and webhook configs become one
webhook to the local receiver at /<receiver name> (no mail leaves the machine, no secret is needed),
and the grouping timers are seconds instead of minutes (`TIMERS`), so a test waits seconds.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from tests.support.agent_harness import free_port, stop_group
from tests.support.deployhelp import CENTRAL, need_tool
from tests.support.waiting import wait_for

SHIPPED = CENTRAL / "alertmanager.yml"
FOR = "4s"  # every alert's `for:` in rules_copy
# group_wait long enough for alerts that start together to share the first notification, and longer
# than the rules' `for:` (FOR): Alertmanager flushes at once a group whose alert started (went pending)
# more than group_wait ago, before the rest of its batch is in;
# group_interval long enough for a notification to be delivered on a busy machine (Alertmanager gives a
# notification that long before it calls it failed and sends it again); repeat_interval longer than any
# test, so a notification that arrives twice is a real duplicate.
GROUP_WAIT_S, GROUP_INTERVAL_S = 5, 5
TIMERS = {"group_wait": f"{GROUP_WAIT_S}s", "group_interval": f"{GROUP_INTERVAL_S}s", "repeat_interval": "1h"}


class Webhook:
    """An HTTP server on 127.0.0.1 that keeps every Alertmanager notification it is sent (the webhook
    payload: receiver, status, groupLabels, alerts...), with the path it came to."""

    def __init__(self) -> None:
        self.notifications: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with hook._lock:
                    hook.notifications.append((self.path, json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def received(self) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            return list(self.notifications)

    def about(self, alertname: str) -> list[tuple[str, dict[str, Any]]]:
        """The notifications of the group of `alertname`, in order."""
        return [(p, n) for p, n in self.received() if n["groupLabels"].get("alertname") == alertname]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def config_copy(directory: Path, webhook: Webhook, **timers: str) -> Path:
    """The shipped config with receivers sent to `webhook` and short timers (TIMERS, or `timers`);
    asserts nothing else moved."""
    shipped = yaml.safe_load(SHIPPED.read_text())
    data = yaml.safe_load(SHIPPED.read_text())
    data.pop("global", None)  # SMTP settings: no receiver mails here
    data["receivers"] = [
        {"name": r["name"], "webhook_configs": [{"url": f"{webhook.url}/{r['name']}", "send_resolved": True}]}
        for r in shipped["receivers"]
    ]
    data["route"].update({**TIMERS, **timers})
    path = directory / "alertmanager.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    again = yaml.safe_load(path.read_text())

    def tree(route: dict[str, Any]) -> Any:
        kept = {k: v for k, v in route.items() if k not in TIMERS and k != "routes"}
        return kept, [tree(r) for r in route.get("routes", [])]

    assert tree(again["route"]) == tree(shipped["route"])
    assert again["inhibit_rules"] == shipped["inhibit_rules"]
    assert [r["name"] for r in again["receivers"]] == [r["name"] for r in shipped["receivers"]]
    check = subprocess.run([need_tool("amtool"), "check-config", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    return path


class Alertmanager:
    """/usr/bin/prometheus-alertmanager on a free loopback port, alone (no cluster gossip)."""

    def __init__(self, directory: Path, config: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = directory / "alertmanager.log"
        cmd = [need_tool("prometheus-alertmanager"), f"--config.file={config}",
               f"--storage.path={directory / 'am-data'}", f"--web.listen-address=127.0.0.1:{self.port}",
               "--cluster.listen-address="]  # fmt: skip
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(self.ready, 30, lambda: f"alertmanager not ready: {self.log.read_text()[-2000:]}")

    def ready(self) -> bool:
        import urllib.request

        if self.proc.poll() is not None:
            raise AssertionError(f"alertmanager exited: {self.log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2):
                return True
        except OSError:
            return False

    def post(self, alerts: list[dict[str, Any]]) -> None:
        """Alerts as Prometheus sends them (API v2)."""
        import urllib.request

        req = urllib.request.Request(
            f"{self.url}/api/v2/alerts",
            data=json.dumps(alerts).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 200

    def stop(self) -> None:
        stop_group(self.proc)


def alert_labels(notification: dict[str, Any]) -> Iterator[dict[str, str]]:
    for a in notification["alerts"]:
        yield a["labels"]


def rules_copy(directory: Path) -> list[Path]:
    """The shipped rule files with `interval: 1s` and every `for:` FOR; asserts nothing else differs."""
    out = []
    for shipped in sorted((CENTRAL / "rules").glob("*.rules.yml")):
        original = yaml.safe_load(shipped.read_text())
        data = yaml.safe_load(shipped.read_text())
        for group in data["groups"]:
            group["interval"] = "1s"
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = FOR
        copy = directory / shipped.name
        copy.write_text(yaml.safe_dump(data, sort_keys=False))
        again = yaml.safe_load(copy.read_text())
        for g_new, g_old in zip(again["groups"], original["groups"], strict=True):
            assert [{k: v for k, v in r.items() if k != "for"} for r in g_new["rules"]] == [
                {k: v for k, v in r.items() if k != "for"} for r in g_old["rules"]
            ]
        out.append(copy)
    return out
