"""Debian's chromium, headless, driven over the Chrome DevTools protocol on a pipe: no driver, no websocket.

`--remote-debugging-pipe` makes the browser read commands from fd 3 and write answers and events to fd 4,
each one JSON message ended by a NUL byte (Chromium's devtools_pipe_handler.cc). That is all a test needs
to load a page at a given width, evaluate JavaScript in it (the DOM checks, overflow) and take a
screenshot. The browser only ever loads what the test points it at (the agent on 127.0.0.1); every
background fetch of its own is switched off by the flags below.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
FLAGS = (
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-features=Translate,MediaRouter,OptimizationHints",
    "--metrics-recording-only",
    "--password-store=basic",
    # Nothing resolves but 127.0.0.1 (every other host, name or address, is "not found"): the tests
    # load the agent on loopback only, and the browser can reach nothing else.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--remote-debugging-pipe",
)


def chromium_available() -> str | None:
    """Why the browser tests cannot run here, or None (quickstart.sh test installs chromium)."""
    if not os.path.exists(CHROMIUM):
        return "chromium is not installed: apt-get install chromium (quickstart.sh test does)"
    return None


class Browser:
    """One headless chromium with a fresh profile; `page()` opens a tab. Use as a context manager."""

    def __init__(self, *extra_flags: str, timeout_s: float = 30.0) -> None:
        self.timeout_s = timeout_s
        self._profile = tempfile.mkdtemp(prefix="nkprobe-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        flags = [*FLAGS, f"--user-data-dir={self._profile}", *extra_flags]
        if os.geteuid() == 0:
            flags.append("--no-sandbox")  # chromium refuses to run as root with its sandbox
        # bash puts the two pipe ends on fds 3 and 4, where chromium looks for them, and execs it (dash
        # would mark them close-on-exec). Moved above 9 first, so neither end is itself 3 or 4.
        r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD_CLOEXEC, 10)
        w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._proc = subprocess.Popen(
            ["bash", "-c", f'exec "$@" 3<&{r} 4>&{w} {r}<&- {w}>&-', "bash", CHROMIUM, *flags, "about:blank"],
            pass_fds=(r, w),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        os.close(r)
        os.close(w)
        self._next_id = 0
        self._lock = threading.Lock()
        self._answers: dict[int, queue.Queue[dict[str, Any]]] = {}
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._from_browser, 65536)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                message = json.loads(raw)
                if "id" in message:
                    with self._lock:
                        box = self._answers.get(message["id"])
                    if box is not None:
                        box.put(message)
                else:
                    self.events.put(message)

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> Any:
        """One command; its result, or AssertionError with the browser's error."""
        with self._lock:
            self._next_id += 1
            number = self._next_id
            box: queue.Queue[dict[str, Any]] = queue.Queue()
            self._answers[number] = box
        message: dict[str, Any] = {"id": number, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        try:
            answer = box.get(timeout=self.timeout_s)
        except queue.Empty:
            raise AssertionError(f"chromium did not answer {method} within {self.timeout_s} s") from None
        finally:
            with self._lock:
                self._answers.pop(number, None)
        if "error" in answer:
            raise AssertionError(f"chromium: {method}: {answer['error']}")
        return answer.get("result", {})

    def wait_event(self, methods: tuple[str, ...], session: str | None) -> dict[str, Any]:
        """The next event of one of `methods` for `session` (others are dropped)."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"none of {methods} from chromium within {self.timeout_s} s")
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if event.get("method") in methods and event.get("sessionId") == session:
                return event

    def page(self, width: int, height: int, headers: dict[str, str] | None = None) -> Page:
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.call("Page.enable", session=session)
        self.call("Network.enable", session=session)
        if headers:
            self.call("Network.setExtraHTTPHeaders", {"headers": headers}, session=session)
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
            session=session,
        )
        return Page(self, session)

    def close(self) -> None:
        with contextlib.suppress(AssertionError, OSError):
            self.call("Browser.close")
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Page:
    def __init__(self, browser: Browser, session: str) -> None:
        self.browser, self.session = browser, session

    def goto(self, url: str) -> int:
        """Load `url` and wait for its load event; the HTTP status of the document."""
        b = self.browser
        b.call("Page.navigate", {"url": url}, session=self.session)
        status = 0
        while True:
            event = b.wait_event(("Network.responseReceived", "Page.loadEventFired"), self.session)
            if event["method"] == "Network.responseReceived" and event["params"].get("type") == "Document":
                status = int(event["params"]["response"]["status"])
            if event["method"] == "Page.loadEventFired":
                return status

    def eval(self, expression: str) -> Any:
        result = self.browser.call(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=self.session
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path, full_page: bool = True) -> None:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self.eval("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
            params |= {"captureBeyondViewport": True, "clip": {"x": 0, "y": 0, "width": size[0],
                                                               "height": size[1], "scale": 1}}  # fmt: skip
        data = self.browser.call("Page.captureScreenshot", params, session=self.session)["data"]
        path.write_bytes(base64.b64decode(data))
