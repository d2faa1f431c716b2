#!/usr/bin/env python3
"""Make deploy/docs/status-page.png, the README's picture of the status page, from a real demo run.

    sudo .venv/bin/python deploy/docs/status_screenshot.py [--out PATH] [--width 960] [--height 1400]

Runs `nkprobe demo` (the namespace lab, the agent in it, a flip of 198.19.179.0/24 every 20 s), waits
until the agent's /status.json shows two flips of that /24, then has Debian's chromium (headless) take a
screenshot of http://127.0.0.1:PORT/ and stops the demo, which removes its lab. Nothing is drawn by
hand and nothing leaves this machine: the demo probes only the lab, the browser loads only the agent.
Needs root (the lab) and chromium (apt-get install chromium; quickstart.sh test installs it).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
FLIP_PREFIX = "198.19.179.0/24"
CHROMIUM_FLAGS = ("--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--force-device-scale-factor=1",
                  # Nothing resolves but 127.0.0.1: the browser can reach the demo's agent and nothing else.
                  "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")  # fmt: skip
MAX_BYTES = 200_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def flips(port: int) -> int:
    """Changes of the flip /24 the agent has recorded so far (0 while it does not answer yet)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status.json", timeout=2) as r:
            status = json.load(r)
    except OSError:
        return 0
    return sum(1 for c in status["changes"] if c["prefix"] == FLIP_PREFIX)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "status-page.png")
    parser.add_argument("--width", type=int, default=960)
    parser.add_argument("--height", type=int, default=1400)
    parser.add_argument("--flips", type=int, default=2, help="flips of the /24 to wait for (default 2)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("status_screenshot: the demo's lab needs root: run it with sudo", file=sys.stderr)
        return 2
    if not os.path.exists("/usr/bin/chromium"):
        print("status_screenshot: install chromium first (apt-get install chromium)", file=sys.stderr)
        return 2
    port = free_port()
    demo = subprocess.Popen(
        [sys.executable, "-m", "agent", "demo", "--flip-every", "20", "--duration", "300",
         "--web.listen-address", f"127.0.0.1:{port}"],
        cwd=HERE.parent.parent, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        # Two targets of the /24 record each flip: wait for both of the last one.
        while flips(port) < 2 * args.flips:
            if demo.poll() is not None or time.monotonic() > deadline:
                print("status_screenshot: the demo showed no flips; run `nkprobe demo` to see why",
                      file=sys.stderr)  # fmt: skip
                return 1
            time.sleep(1)
        time.sleep(3)  # the page caches its history read for up to 10 s; the last flip's rows are in
        with tempfile.TemporaryDirectory() as profile:
            subprocess.run(
                ["/usr/bin/chromium", *CHROMIUM_FLAGS, "--no-sandbox", f"--user-data-dir={profile}",
                 f"--window-size={args.width},{args.height}", f"--screenshot={args.out}",
                 f"http://127.0.0.1:{port}/"],
                check=True, capture_output=True, timeout=60,
            )  # fmt: skip
    finally:
        demo.send_signal(signal.SIGINT)
        demo.wait(60)
    size = args.out.stat().st_size
    print(f"{args.out}: {args.width}x{args.height}, {size} bytes")
    if size > MAX_BYTES:
        print(f"status_screenshot: {size} bytes is more than {MAX_BYTES}: use a smaller --height",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
