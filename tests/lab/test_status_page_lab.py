"""The status page in a real browser: Debian's chromium (headless) loads `/` from an agent running in the lab.

The agent probes from the lab's vantage namespace and serves on 127.0.0.1 here; the browser loads only
that. The checks are on the DOM as chromium built it: every /24 is there, each target's tag is the one
nkprobe_path_upstream says, a target's hop table is what `nkprobe trace` of it shows (run inside the
vantage namespace), the 24 h timeline shows a `lab flip`, and at a phone's and a desktop's width nothing
is wider than the window. Then the same page over TLS with basic auth, from a web config.

Screenshots go to the test's directory, or to $NKPROBE_SCREENSHOT_DIR when set (to look at them).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.lab.info import LabInfo
from tests.support.agent_harness import Agent, agent_config, lab_flip, wait_for
from tests.support.browser import Browser, Page, chromium_available
from tests.support.webtls import PASSWORD, USER, bcrypt_hash, make_certificates, openssl

pytestmark = pytest.mark.lab

CU, TTK = "china_unicom", "transtelecom"
TAGS = (CU, TTK, "other", "unknown")
TARGETS = ("198.19.176.10", "198.19.177.20", "198.19.178.10", "198.19.179.10", "198.19.179.20")
FLIP_TARGET = "198.19.179.10"
PHONE, DESKTOP = (390, 844), (1280, 900)

# Read from the DOM in the page: what a person sees, per /24, per target row, per hop row and lane.
READ_DOM = """(() => {
  const text = (el) => el ? el.textContent.trim() : null;
  return {
    prefixes: [...document.querySelectorAll('article.prefix')].map((a) => ({
      prefix: a.dataset.prefix,
      tag: text(a.querySelector('h3 .tag')),
      rows: [...a.querySelectorAll('table.targets tbody tr')].map(
        (r) => ({target: r.dataset.target, tag: text(r.querySelector('.tag'))})),
      lanes: [...a.querySelectorAll('.lane')].map((l) => ({
        target: l.dataset.target,
        segments: [...l.querySelectorAll('rect[data-upstream]')].map((s) => s.dataset.upstream)})),
    })),
    hops: Object.fromEntries([...document.querySelectorAll('details.target')].map((d) => [
      d.dataset.target,
      [...d.querySelectorAll('table.hops tbody tr')].map((r) => {
        const c = r.querySelectorAll('td');
        return {hop: Number(r.dataset.hop), address: text(c[1]), asn: text(c[3]),
                border: r.classList.contains('border')};
      })])),
    paris: Object.fromEntries([...document.querySelectorAll('details.target')].map((d) => [
      d.dataset.target, (text(d.querySelector('p.muted')) || '').match(/paris id (\\d+)/)?.[1] ?? null])),
    changes: [...document.querySelectorAll('table.changes tbody tr')].map((r) => text(r)),
    overflow: document.documentElement.scrollWidth - window.innerWidth,
    scripts: document.scripts.length,
    external: [...document.querySelectorAll('[src],link[href]')].map((e) => e.src || e.href),
  };
})()"""


@pytest.fixture(scope="module")
def browser_ok() -> None:
    reason = chromium_available()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture
def flip_restored(lab: LabInfo) -> Iterator[None]:
    lab_flip(lab, CU)
    try:
        yield
    finally:
        lab_flip(lab, CU)


def shots_dir(tmp_path: Path) -> Path:
    wanted = os.environ.get("NKPROBE_SCREENSHOT_DIR")
    d = Path(wanted) if wanted else tmp_path
    d.mkdir(parents=True, exist_ok=True)
    return d


def metric_tags(agent: Agent) -> dict[str, str]:
    """target -> the tag nkprobe_path_upstream says is current."""
    out = {}
    for (name, labels), value in agent.scrape().items():
        if name == "nkprobe_path_upstream" and value == 1.0:
            d = dict(labels)
            out[d["target"]] = d["upstream"]
    return out


def read(page: Page, url: str) -> dict[str, Any]:
    assert page.goto(url) == 200
    dom: dict[str, Any] = page.eval(READ_DOM)
    return dom


def trace_json(lab: LabInfo, config: Path, target: str, flows: int) -> list[dict[str, Any]]:
    cmd = ["ip", "netns", "exec", lab.vantage_ns, sys.executable, "-m", "agent", "trace", target,
           "--config", str(config), "--json", "--no-dns", "--flows", str(flows)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    return data if isinstance(data, list) else [data]


def trace_hops(result: dict[str, Any]) -> dict[int, tuple[str, str]]:
    """hop -> (first answering address, "ASn" or "") of one RIPE Atlas result; silent hops left out."""
    out = {}
    for hop in result["result"]:
        answers = [r for r in hop["result"] if "from" in r]
        if answers:
            asn = answers[0].get("asn")
            out[hop["hop"]] = (answers[0]["from"], f"AS{asn}" if asn is not None else "")
    return out


def test_status_page_in_chromium_matches_metrics_trace_and_flip(
    lab: LabInfo, tmp_path: Path, flip_restored: None, browser_ok: None
) -> None:
    config = agent_config(lab, tmp_path, state_dir=tmp_path / "state", targets=TARGETS, max_pps=200)
    agent = Agent(lab, config, tmp_path / "agent.log").start()
    shots = shots_dir(tmp_path)
    try:
        wait_for(lambda: metric_tags(agent).get(FLIP_TARGET) == CU, 30, lambda: f"no tag: {agent.log()}")
        with Browser() as browser:
            page = browser.page(*DESKTOP)
            url = agent.url + "/"

            def agrees() -> bool:
                # The page is cached for 2 s: load it and scrape until both show the same settled tags.
                dom = read(page, url)
                tags = metric_tags(agent)
                rows = {r["target"]: r["tag"] for p in dom["prefixes"] for r in p["rows"]}
                # 198.19.178.0/24 is split across both upstreams: it may still be unknown (a first tag
                # of a split /24 takes `hysteresis` rounds), and the page must say so too.
                return rows == tags and all(tags[t] != "unknown" for t in TARGETS if ".178." not in t)

            wait_for(agrees, 30, lambda: f"page {read(page, url)} vs metrics {metric_tags(agent)}")
            dom = read(page, url)
            prefixes = [f"198.19.{n}.0/24" for n in (176, 177, 178, 179)]
            assert [p["prefix"] for p in dom["prefixes"]] == prefixes
            assert dom["scripts"] == 0 and dom["external"] == []
            by_prefix = {p["prefix"]: p for p in dom["prefixes"]}
            assert by_prefix["198.19.176.0/24"]["tag"] == CU
            assert by_prefix["198.19.177.0/24"]["tag"] == TTK

            # The hop table of 198.19.176.10 is what `nkprobe trace` shows for the same flow.
            target = "198.19.176.10"
            flows = trace_json(lab, config, target, flows=4)
            paris = int(dom["paris"][target])
            mine = next(r for r in flows if r["paris_id"] == paris)
            expected = trace_hops(mine)
            table = dom["hops"][target]
            rows = {h["hop"]: (h["address"], h["asn"] or "") for h in table if h["address"] != "*"}
            both = set(expected) & set(rows)
            assert len(both) >= len(expected) - 1, (expected, rows)  # one hop may be rate-limited in one
            assert {h: rows[h] for h in both} == {h: expected[h] for h in both}
            assert max(rows) == max(expected)  # the same destination hop
            assert [h["hop"] for h in table if h["border"]] == [mine["nkprobe"]["border"]["hop"]]

            # A flip shows in the timeline of 198.19.179.0/24 and in the last changes.
            lab_flip(lab, TTK)

            def flipped() -> bool:
                dom = read(page, url)
                lanes = {lane["target"]: lane["segments"] for p in dom["prefixes"] for lane in p["lanes"]}
                return lanes.get(FLIP_TARGET, [])[-2:] == [CU, TTK] and any(
                    FLIP_TARGET in c and CU in c and TTK in c for c in dom["changes"]
                )

            wait_for(flipped, 40, lambda: f"no flip on the page: {read(page, url)}; {agent.log()}")

            for (width, height), name in ((PHONE, "phone"), (DESKTOP, "desktop")):
                page = browser.page(width, height)
                dom = read(page, url)
                assert dom["overflow"] <= 0, f"{name}: the page is {dom['overflow']} px wider than {width}"
                page.screenshot(shots / f"status-{name}.png")
                assert (shots / f"status-{name}.png").stat().st_size > 10_000
    finally:
        code = agent.stop()
    assert code == 0, agent.log()


def spki_pin(cert: Path) -> str:
    """base64 SHA-256 of the certificate's public key: what --ignore-certificate-errors-spki-list takes."""
    d = cert.parent
    openssl("x509", "-in", cert.name, "-pubkey", "-noout", "-out", "pub.pem", cwd=d)
    openssl("pkey", "-pubin", "-in", "pub.pem", "-outform", "der", "-out", "pub.der", cwd=d)
    import hashlib

    return base64.b64encode(hashlib.sha256((d / "pub.der").read_bytes()).digest()).decode()


def test_status_page_over_tls_with_basic_auth(lab: LabInfo, tmp_path: Path, browser_ok: None) -> None:
    assert shutil.which("openssl"), "openssl missing (quickstart.sh installs it)"
    make_certificates(tmp_path)
    web = tmp_path / "web.yml"
    web.write_text(
        "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n"
        f"basic_auth_users:\n  {USER}: '{bcrypt_hash(PASSWORD)}'\n"
    )
    config = agent_config(
        lab, tmp_path, state_dir=tmp_path / "state", targets=("198.19.176.10",), max_pps=200,
        web_config_file=str(web),
    )  # fmt: skip
    agent = Agent(lab, config, tmp_path / "agent.log")
    cmd = [sys.executable, "-m", "agent", "run", "--config", str(config), "--netns", lab.vantage_ns,
           "--web.listen-address", f"127.0.0.1:{agent.port}"]  # fmt: skip
    with open(agent.log_path, "ab") as log:
        agent.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"https://127.0.0.1:{agent.port}/"
    try:
        # The browser trusts exactly this certificate's key, nothing else.
        with Browser(f"--ignore-certificate-errors-spki-list={spki_pin(tmp_path / 'tls.crt')}") as browser:
            anonymous = browser.page(*PHONE)
            wait_for(lambda: anonymous.goto(url) == 401, 20, lambda: f"no TLS 401: {agent.log()}")
            auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            page = browser.page(*PHONE, headers={"Authorization": f"Basic {auth}"})
            dom = read(page, url)
            assert [p["prefix"] for p in dom["prefixes"]] == ["198.19.176.0/24"]
            assert page.eval("location.protocol") == "https:"
            assert dom["overflow"] <= 0
            assert page.goto(url + "status.json") == 200
            status = json.loads(page.eval("document.body.innerText"))
            assert status["targets"][0]["address"] == "198.19.176.10"
    finally:
        agent.stop()
