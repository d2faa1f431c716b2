"""What `nkprobe run` holds in memory (issue 25): the modules it has loaded once it serves its metrics,
and one malloc arena for all its threads. Each in a fresh interpreter, as the agent starts."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Loaded only when their feature is in use: the live BGP view or a [bgp] snapshot (agent.bgp), the status
# page once opened (agent.exporter.status), basic-auth users (hashlib), a config with an unknown key
# (difflib), the first start that makes the agent id (uuid); never by the agent: prometheus_client (our own
# exposition), the idna codec and unicodedata (HTTPServer's reverse DNS lookup of its own address), and
# what tests/test_imports.py keeps off the agent's path.
NOT_LOADED = ["agent.bgp", "agent.exporter.status", "difflib", "encodings.idna", "hashlib", "icmplib"]
NOT_LOADED += ["prometheus_client", "pyroute2", "scapy", "unicodedata", "uuid"]

START = """
import dataclasses, json, socket, sys
import agent.agent

async def served(self, netns, stop, *, on_ready=None, **kwargs):  # the probing loop itself is not run
    on_ready()
    return 0

agent.agent.Agent.run = served
from agent.commands.run import run_agent
from agent.config import load_config

config = load_config(None)
config = dataclasses.replace(config, agent=dataclasses.replace(config.agent, state_dir=sys.argv[1]))
with open(sys.argv[1] + "/agent-id", "w") as f:
    f.write("kept-id\\n")  # not the first start
seen = {}

def get(port, path, accept="*/*"):  # as Prometheus or a browser would (a raw socket: a client library
    with socket.socket() as s:      # loads modules of its own; create_connection, the idna codec)
        s.settimeout(10)
        s.connect(("127.0.0.1", port))
        s.sendall(f"GET {path} HTTP/1.0\\r\\nAccept: {accept}\\r\\n\\r\\n".encode())
        return b"".join(iter(lambda: s.recv(65536), b""))

def ready(port):
    assert get(port, "/metrics", "application/openmetrics-text").endswith(b"# EOF\\n")
    seen["modules"] = set(sys.modules)
    page = get(port, "/")  # the status page, made at its first request
    assert page.startswith(b"HTTP/1.1 200") and b"<html" in page, page[:300]
    assert "agent.exporter.status" in sys.modules

assert run_agent(config, "127.0.0.1:0", on_ready=ready) == 0
print(json.dumps(sorted(seen["modules"])))
"""


def test_a_serving_agent_has_loaded_none_of_the_optional_modules(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", START, str(tmp_path)], capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    loaded = set(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert {"agent.agent", "agent.exporter.server", "asyncio", "sqlite3"} <= loaded  # it did start
    assert not {n for n in loaded if n in NOT_LOADED or n.startswith(tuple(p + "." for p in NOT_LOADED))}


ARENAS = """
import ctypes, sys, threading
from agent.commands.run import single_malloc_arena

applied = single_malloc_arena() if sys.argv[1] == "one" else None
thread = threading.Thread(target=lambda: bytearray(1 << 16))  # above 512 bytes: from malloc, not pymalloc
thread.start()
thread.join()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
out = libc.fopen(sys.argv[2].encode(), b"w")
libc.malloc_info(0, ctypes.c_void_p(out))  # malloc_info(3): one <heap nr=...> per arena
libc.fclose(ctypes.c_void_p(out))
print(applied, open(sys.argv[2]).read().count("<heap nr="))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc arenas are glibc's")
def test_the_agents_threads_share_one_malloc_arena(tmp_path: Path) -> None:
    def arenas(mode: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-c", ARENAS, mode, str(tmp_path / "info.xml")], capture_output=True,
            text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)}, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    assert arenas("default") == "None 2"  # glibc's default: the thread got an arena of its own
    assert arenas("one") == "True 1"


FREEZE = """
import gc, weakref
from agent.agent import freeze_heap

class Node:
    pass

a = Node(); a.me = a  # a cycle: only the cyclic collector frees it
dead = weakref.ref(a)
freeze_heap()
frozen = gc.get_freeze_count()
del a
gc.collect()
kept_while_frozen = dead() is not None
freeze_heap()  # a reload: thawed, collected, frozen again
print(frozen > 1000, kept_while_frozen, dead() is None)
"""


def test_the_heap_is_frozen_out_of_the_collectors_reach_and_thawed_at_a_reload() -> None:
    """agent.agent.freeze_heap: what lives at start-up is never walked by the collector again (CPU on a
    cold cache, issue 25), and what a reload made garbage is still collected."""
    out = subprocess.run([sys.executable, "-c", FREEZE], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.split() == ["True", "True", "True"], out
