"""`nkprobe demo`: bring the lab up, run the agent against it, flip the upstream now and then, and tear
everything down on Ctrl-C, SIGTERM or after `--duration S`.

The agent (`nkprobe run --netns <vantage>`) probes five of the lab's hosts (`demo_targets`) from inside
the lab's vantage namespace and serves its metrics and status page on 127.0.0.1 of the current
namespace; the demo prints the page's address. `--no-agent`
only brings the lab up and prints what to try. Exit status: 0 after a clean teardown, 2 if the lab cannot
be built (not root, already up: `nkprobe lab down` first).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.lab.info import LabInfo


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--duration", type=float, metavar="S", help="stop after S seconds (default: until Ctrl-C)"
    )
    parser.add_argument(
        "--flip-every",
        type=float,
        default=60.0,
        metavar="S",
        help="switch 198.19.179.0/24 to the other upstream as soon as the agent has tagged a target in it, "
        "then every S seconds (0: never; default 60)",
    )
    parser.add_argument(
        "--web.listen-address",
        dest="listen",
        default="127.0.0.1:9931",
        metavar="HOST:PORT",
        help="where the agent serves /metrics (default 127.0.0.1:9931)",
    )
    parser.add_argument("--no-agent", action="store_true", help="only bring the lab up; do not run the agent")
    parser.add_argument("--scenario", metavar="FILE", help="lab scenario TOML (default: built-in)")
    parser.add_argument(
        "--plain",
        action="store_true",
        help="a lab without NAT, CGNAT and ICMP rate limits (by default the demo's vantage host sits "
        "behind all three, as a volunteer's does)",
    )


def _program() -> str:
    """`nkprobe` if that is what PATH finds for this installation, else this installation's full path."""
    here = shutil.which("nkprobe")
    beside = Path(sys.executable).with_name("nkprobe")
    if beside.exists() and (here is None or Path(here).resolve() != beside.resolve()):
        return str(beside)
    return "nkprobe"


def hints(lab: LabInfo, listen: str | None) -> list[str]:
    """What to try while the demo runs (all of it inside the lab, never toward real addresses)."""
    vp = lab.vantage_ns
    # The command as it can be typed here: a venv's nkprobe (./quickstart.sh) is often not on PATH.
    me = _program()
    flip_host = lab.prefixes["198.19.179.0/24"].echo_host
    ttk_host = lab.prefixes["198.19.177.0/24"].echo_host
    out = [
        f"  ip netns exec {vp} traceroute -n -I {flip_host}",
        f"  ip netns exec {vp} traceroute -n -I {ttk_host}          # the '*' is the silent TTK router",
        f"  ip netns exec {vp} {me} trace {flip_host} --config {lab.config_file}",
        f"  ip netns exec {vp} ping -c 5 {lab.prefixes['198.19.176.0/24'].echo_host}",
        f"  {me} lab --prefix {lab.prefix} flip transtelecom     # and back: flip china_unicom",
        f"  {me} lab --prefix {lab.prefix} status",
    ]
    if listen:
        out.append(f"  curl -s http://{listen}/metrics | grep nkprobe_path_upstream")
    return out


def page_url(listen: str) -> str:
    """The status page's address for a listen address (a wildcard one is opened on loopback).

    >>> page_url("127.0.0.1:9931"), page_url("0.0.0.0:9931"), page_url("[::]:9931")
    ('http://127.0.0.1:9931/', 'http://127.0.0.1:9931/', 'http://127.0.0.1:9931/')
    """
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


def demo_targets(lab: LabInfo) -> tuple[str, ...]:
    """What the demo's agent probes: each /24's echo host, and both hosts of the /24 it flips.

    Fewer targets than the lab's config (every /24's two hosts) because the home lab's routers
    rate-limit their ICMP errors per peer as Linux does by default (icmp_ratelimit 1000 ms, a burst of
    6: net/ipv4/icmp.c), and behind NAT every trace of every target is that one peer: ten targets' first
    rounds at once leave most of them unanswered for seconds. With five, the flip /24 is tagged within
    seconds and its change is on /metrics well inside a 20 s demo (tests/lab/test_demo_lab.py).
    """
    return tuple(
        a
        for prefix, p in lab.prefixes.items()
        for a in ((p.echo_host, p.quiet_host) if prefix == FLIP_PREFIX else (p.echo_host,))
    )


def run(args: argparse.Namespace) -> int:
    from agent.lab import build, info, scenario

    prefix = info.resolve_prefix(None)
    build.require_root()
    sc = scenario.load(args.scenario)
    if not args.plain:
        sc = scenario.with_home_network(sc)  # NAT, CGNAT, ICMP rate limits (agent/lab/README.md)
    lab = build.up(prefix, sc)
    agent: subprocess.Popen[bytes] | None = None

    me = os.getpid()

    def stop(_signum: int, _frame: object) -> None:
        if os.getpid() == me:  # never unwind (and tear the lab down) from a forked child
            raise KeyboardInterrupt

    old_term = signal.signal(signal.SIGTERM, stop)
    try:
        print(f"nkprobe demo: lab {prefix!r} is up ({lab.delay_backend} delay links); try:")
        if not args.no_agent:
            config = lab.state_dir / "demo.toml"  # removed with the lab
            config.write_text(build.agent_config(lab, demo_targets(lab)))
            agent = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "agent",
                    "run",
                    "--config",
                    str(config),
                    "--netns",
                    lab.vantage_ns,
                    "--web.listen-address",
                    args.listen,
                ]
            )
        for line in hints(lab, None if args.no_agent else args.listen):
            print(line)
        if not args.no_agent:
            print(
                f"Open {page_url(args.listen)} in a browser: the agent's status page (the upstream of "
                "each /24, the traces and their evidence, the flips), refreshed every 30 s."
            )
        print("Ctrl-C stops the demo and removes the lab.", flush=True)
        _wait(args, prefix, agent)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, old_term)
        if agent is not None and agent.poll() is None:
            agent.terminate()
            try:
                agent.wait(timeout=10)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()
        build.down(prefix)
        print(f"nkprobe demo: lab {prefix!r} removed", flush=True)
    return 0


def _wait(args: argparse.Namespace, prefix: str, agent: subprocess.Popen[bytes] | None) -> None:
    from agent.lab import build
    from agent.lab.topology import CHINA, TTK

    start = time.monotonic()
    # The first flip comes as soon as the agent has tagged a target of the /24 (a newcomer sees a change
    # within seconds, not after a minute); the later ones every --flip-every. Without the agent: on the
    # clock.
    first_flip_on_tag = agent is not None and args.flip_every > 0
    next_flip = start + args.flip_every if args.flip_every > 0 else float("inf")
    upstream = CHINA
    next_look = start
    while args.duration is None or time.monotonic() - start < args.duration:
        now = time.monotonic()
        if first_flip_on_tag and now >= next_look:
            next_look = now + 0.5
            if _tagged(args.listen, FLIP_PREFIX, upstream):
                first_flip_on_tag = False
                next_flip = now
        if now >= next_flip:
            first_flip_on_tag = False
            upstream = TTK if upstream == CHINA else CHINA
            build.flip(prefix, upstream)
            print(f"nkprobe demo: {FLIP_PREFIX} now via {upstream}", flush=True)
            next_flip = now + args.flip_every
        if agent is not None and agent.poll() is not None:
            print(
                f"nkprobe demo: the agent exited with status {agent.returncode}; the lab stays up", flush=True
            )
            agent = None
        time.sleep(0.2)


FLIP_PREFIX = "198.19.179.0/24"  # the /24 the demo moves between upstreams (agent/lab/topology.py)


def _tagged(listen: str, prefix: str, upstream: str) -> bool:
    """Whether the demo's agent, serving /metrics at `listen` (HOST:PORT), tags a target of `prefix` with
    `upstream`: its change is then counted when the flip comes (a target tagged only after the flip gets
    its first tag, not a change). False while it does not answer (it is still starting)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(page_url(listen) + "metrics", timeout=1) as response:
            text = response.read().decode()
    except (OSError, ValueError):
        return False
    return any(
        s.labels.get("prefix") == prefix and s.labels.get("upstream") == upstream and s.value == 1
        for family in text_string_to_metric_families(text)
        if family.name == "nkprobe_path_upstream"
        for s in family.samples
    )
