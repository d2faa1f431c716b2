"""Bringing the lab up and down, flipping its upstream, reporting its state (kernel.py + two helpers).

Everything lives in network namespaces named <prefix><role> (topology.ROLES); nothing is created in the
namespace `lab up` runs in. Helper processes (the delay link, the TCP listeners) are tracked by pid files
in the state dir /run/nkprobe-lab/<prefix without trailing dash>/, next to asn.pfx2as, config.toml and
lab.json. `down` removes exactly those namespaces and processes, so labs with other prefixes (other
engineers, parallel test sessions) are left alone.

What goes into each namespace's kernel (links, addresses, routes, rules, delay, NAT) is kernel.py's;
this module decides when, and keeps the lab's state files and helper processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

from agent.errors import LabError, PrivilegeError
from agent.lab import kernel, nsutil, topology
from agent.lab.info import RUN_DIR, LabInfo, LinkInfo, PrefixInfo, load, state_dir
from agent.lab.scenario import Scenario
from agent.lab.topology import CHINA, HOSTS, ROLES, TTK, VANTAGE, WIRE

HELPERS = ("wire", "listener")
READY_TIMEOUT_S = 10.0


def require_root() -> None:
    if os.geteuid() != 0:
        raise PrivilegeError("the lab needs root (network namespaces); run it with sudo")


def _names(prefix: str) -> dict[str, str]:
    return {role: topology.namespace(prefix, role) for role in ROLES}


def _pid_dir(state: Path) -> Path:
    return state / "pids"


def _spawn(state: Path, helper: str, args: list[str], ready: Path) -> int:
    log = open(state / f"{helper}.log", "ab")  # noqa: SIM115 - handed to the child
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", f"agent.lab.{helper}", *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # survives the terminal of `lab up`; Ctrl-C there does not reach it
            close_fds=True,
        )
    finally:
        log.close()
    (_pid_dir(state) / f"{helper}.pid").write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not ready.exists():
        if proc.poll() is not None:
            tail = (state / f"{helper}.log").read_text(errors="replace").strip().splitlines()[-1:]
            raise LabError(
                f"lab helper {helper} exited ({tail[0] if tail else 'no output'}); see {state}/{helper}.log"
            )
        if time.monotonic() > deadline:
            raise LabError(
                f"lab helper {helper} did not start within {READY_TIMEOUT_S:g} s; see {state}/{helper}.log"
            )
        time.sleep(0.01)
    return proc.pid


def _lab_info(prefix: str, names: dict[str, str], scenario: Scenario, backend: str, flip: str) -> LabInfo:
    state = state_dir(prefix)
    opts = scenario.options
    prefixes = {}
    for p24 in topology.PREFIX_ROLE:
        ups = topology.upstreams_of(p24)
        prefixes[p24] = PrefixInfo(
            prefix=p24,
            role=topology.PREFIX_ROLE[p24],
            upstreams=ups,
            echo_host=topology.host_address(p24, topology.ECHO_HOST),
            quiet_host=topology.host_address(p24, topology.QUIET_HOST),
            hops={up: topology.expected_hops(p24, up, opts=opts) for up in ups},
            rtt_ms={
                up: round(2 * sum(scenario.one_way_ms(lk.name) for lk in topology.path_links(p24, up)), 6)
                for up in ups
            },
        )
    links = {}
    for lk in topology.links(opts):
        params = scenario.links.get(lk.name)
        links[lk.name] = LinkInfo(
            name=lk.name,
            a_ns=names[lk.a],
            b_ns=names[lk.b],
            a_addr=lk.a_addr,
            b_addr=lk.b_addr,
            delayed=params is not None,
            delay_ms=params.delay_ms if params else 0.0,
            jitter_ms=params.jitter_ms if params else 0.0,
            loss_pct=params.loss_pct if params else 0.0,
        )
    return LabInfo(
        prefix=prefix,
        state_dir=state,
        vantage_ns=names[VANTAGE],
        vantage_address=topology.link("vp-home").a_addr,
        namespaces=tuple(names.values()),
        wire_ns=names[WIRE],
        asn_file=state / "asn.pfx2as",
        config_file=state / "config.toml",
        lab_json=state / "lab.json",
        delay_backend=backend,
        flip=flip,
        prefixes=prefixes,
        links=links,
        scenario=scenario.source,
        options=opts,
    )


def agent_config(info: LabInfo, targets: Collection[str] | None = None) -> str:
    """A ready agent configuration for the lab (README "Configuration"): every /24's echo and quiet host,
    or only those of them in `targets`."""
    lines = [
        "# Written by `nkprobe lab up`: an agent config for this lab. Run the agent inside the vantage",
        f"# namespace: nkprobe run --config {info.config_file} --netns {info.vantage_ns}",
        "",
        "[agent]",
        f'name = "lab-{info.prefix.rstrip("-")}"',
        'listen = "127.0.0.1:9931"',
        f'state_dir = "{info.state_dir / "agent"}"',
        "max_pps = 50",
        "",
    ]
    for p in info.prefixes.values():
        third = p.prefix.split(".")[2]
        for kind, addr in (("echo", p.echo_host), ("quiet", p.quiet_host)):
            if targets is not None and addr not in targets:
                continue
            lines += ["[[targets]]", f'address = "{addr}"', f'name = "lab-{third}-{kind}"', ""]
    lines += [
        "[ping]",
        "interval_s = 1.0",
        "",
        "[trace]",
        "interval_s = 10.0",
        "",
        "[asn]",
        f'files = ["{info.asn_file}"]',
        "",
        "[upstreams]",
        f"{CHINA} = [4837]",
        f"{TTK} = [20485]",
        "",
        "[destination]",
        f"asn = {topology.DESTINATION_ASN}",
        f'prefixes = ["{topology.DESTINATION}"]',
        "",
        "# The lab is numbered in RFC 2544 space, which the classifier otherwise passes over.",
        "[classify]",
        'routed_prefixes = ["198.18.0.0/15"]',
        "",
        "# No live BGP view: RIS Live and RIPEstat know nothing of the lab (and the lab sends nothing out).",
        "[bgp]",
        "live = false",
    ]
    return "\n".join(lines) + "\n"


def _write_state(info: LabInfo) -> None:
    info.asn_file.write_text(topology.pfx2as())
    info.config_file.write_text(agent_config(info))
    tmp = info.lab_json.with_suffix(".tmp")
    tmp.write_text(json.dumps(info.to_json(), indent=1) + "\n")
    tmp.replace(info.lab_json)


def existing(prefix: str) -> list[str]:
    """This lab's namespaces that exist now."""
    return [ns for ns in _names(prefix).values() if nsutil.exists(ns)]


def up(prefix: str, scenario: Scenario) -> LabInfo:
    require_root()
    names = _names(prefix)
    state = state_dir(prefix)
    found = existing(prefix)
    if found or (state / "lab.json").exists():
        what = f"{found[0]} and {len(found) - 1} more namespaces" if found else str(state / "lab.json")
        raise LabError(f"lab {prefix!r} is already up ({what}); run `nkprobe lab down` first")
    try:
        return _up(prefix, names, state, scenario)
    except BaseException as exc:
        with contextlib.suppress(Exception):
            down(prefix)
        if isinstance(exc, LabError | KeyboardInterrupt):
            raise
        raise LabError(f"building lab {prefix!r} failed: {exc!r}; run `nkprobe lab down` and retry") from exc


def _up(prefix: str, names: dict[str, str], state: Path, scenario: Scenario) -> LabInfo:
    from pyroute2 import netns

    _pid_dir(state).mkdir(parents=True, exist_ok=True)
    for stale in ("wire-counters.json", "listener.ready"):
        (state / stale).unlink(missing_ok=True)
    for role, ns in names.items():
        netns.create(ns)
        with nsutil.inside(ns):
            kernel.set_sysctls(role, scenario.options)
    backend = kernel.delay_backend(names[WIRE]) if scenario.links else "wire"
    flip = scenario.flip_start
    kernel.make_links(names, scenario, backend)
    for role, ns in names.items():
        if role != WIRE:
            kernel.configure_namespace(role, ns, scenario, backend, flip)
    info = _lab_info(prefix, names, scenario, backend, flip)
    if backend == "wire" and scenario.links:
        spec = {
            "namespace": names[WIRE],
            "counters": str(state / "wire-counters.json"),
            "links": [
                {
                    "name": name,
                    "a_if": kernel.wire_ifname(name, "a"),
                    "b_if": kernel.wire_ifname(name, "b"),
                    "delay_ms": p.delay_ms,
                    "jitter_ms": p.jitter_ms,
                    "loss_pct": p.loss_pct,
                }
                for name, p in scenario.links.items()
            ],
        }
        (state / "wire.json").write_text(json.dumps(spec, indent=1) + "\n")
        _spawn(state, "wire", [str(state / "wire.json")], state / "wire-counters.json")
    host_ns = [names[h] for h in HOSTS]
    _spawn(
        state,
        "listener",
        [str(state / "listener.ready"), str(topology.LISTEN_PORT), *host_ns],
        state / "listener.ready",
    )
    _write_state(info)
    return info


# --- down -------------------------------------------------------------------------------------------


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def is_helper_cmdline(cmd: list[str], state: Path, names: dict[str, str]) -> bool:
    """Is this command line one of this lab's helpers? Only those are ever signalled.

    >>> names = {"vp": "nkp-vp"}
    >>> is_helper_cmdline(["python", "-m", "agent.lab.wire", "/run/nkprobe-lab/nkp/wire.json"],
    ...                   Path("/run/nkprobe-lab/nkp"), names)
    True
    >>> is_helper_cmdline(["python", "-m", "agent.lab.wire", "/run/nkprobe-lab/nkp-t/wire.json"],
    ...                   Path("/run/nkprobe-lab/nkp"), names)
    False
    """
    if len(cmd) < 4 or cmd[1:3] not in (["-m", "agent.lab.wire"], ["-m", "agent.lab.listener"]):
        return False
    mine = f"{state}/"
    return any(arg.startswith(mine) or arg in names.values() for arg in cmd[3:])


def _is_helper(pid: int, state: Path, names: dict[str, str]) -> bool:
    return is_helper_cmdline(_cmdline(pid), state, names)


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (our helpers' parent may be an init that reaps slowly)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _stop(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 2.0
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    if alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it if `up` ran in this same process


def _helper_pids(state: Path, names: dict[str, str]) -> set[int]:
    pids = set()
    for helper in HELPERS:
        with contextlib.suppress(OSError, ValueError):
            pids.add(int((_pid_dir(state) / f"{helper}.pid").read_text()))
    # Pid files can be lost (a crashed `up`); helpers name the state dir or namespaces on their command line.
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            pids.add(int(entry.name))
    return {pid for pid in pids if _is_helper(pid, state, names)}


def down(prefix: str) -> list[str]:
    """Remove this lab: helpers, namespaces (their links go with them), state dir. Idempotent.

    Returns the namespaces removed."""
    from pyroute2 import netns

    require_root()
    names = _names(prefix)
    state = state_dir(prefix)
    for pid in _helper_pids(state, names):
        _stop(pid)
    removed = []
    for ns in names.values():
        if nsutil.exists(ns):
            netns.remove(ns)
            removed.append(ns)
    shutil.rmtree(state, ignore_errors=True)
    return removed


def all_prefixes(base: str = "nkp-") -> list[str]:
    """Prefixes of every lab on this machine whose prefix starts with `base`: from state dirs and from
    namespace names that end in a lab role (a lab whose state dir is gone still shows in /run/netns)."""
    found = set()
    for ns in nsutil.list_namespaces():
        for role in ROLES:
            if ns.endswith(role) and ns.startswith(base) and len(ns) > len(role):
                found.add(ns[: -len(role)])
    if RUN_DIR.is_dir():
        for entry in RUN_DIR.iterdir():
            if entry.is_dir() and (entry / "lab.json").exists():
                prefix = json.loads((entry / "lab.json").read_text()).get("prefix", "")
                if prefix.startswith(base):
                    found.add(prefix)
    return sorted(found)


# --- flip and status ----------------------------------------------------------------------------------


def flip(prefix: str, upstream: str) -> LabInfo:
    """Move 198.19.179.0/24 to `upstream`: the ISP's forward route and the border's return route."""
    require_root()
    if upstream not in topology.UPSTREAMS:
        raise LabError(f"unknown upstream {upstream!r}: use {' or '.join(topology.UPSTREAMS)}")
    info = load(prefix)
    names = _names(prefix)
    p24 = topology.FLIP_PREFIX
    with kernel.netlink(names["isp"]) as isp, kernel.netlink(names["border"]) as border:
        isp.route("replace", **kernel.dst_args(p24), gateway=topology.gateways_for("isp", p24, upstream)[0])
        border.route(
            "replace",
            dst="0.0.0.0",
            dst_len=0,
            table=topology.TABLE_BY_ROLE["flip"],
            gateway=topology.gateways_for("border", p24, upstream)[0],
        )
    data = info.to_json()
    data["flip"] = upstream
    tmp = info.lab_json.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(info.lab_json)
    return LabInfo.from_json(data)


def _upstreams_of_routes(msgs: list[Any], dst: str, table: int) -> tuple[str, ...]:
    net, length = dst.split("/") if dst != "default" else ("", "0")
    found: list[str] = []
    for msg in msgs:
        if (
            (msg.get("RTA_DST") or "") != net
            or msg["dst_len"] != int(length)
            or msg.get("RTA_TABLE") != table
        ):
            continue
        gws = [msg.get("RTA_GATEWAY")] + [hop.get("RTA_GATEWAY") for hop in msg.get("RTA_MULTIPATH") or ()]
        found += [up for gw in gws if gw and (up := topology.upstream_of_gateway(gw))]
    return tuple(found)


def routes_in_force(prefix: str) -> dict[str, dict[str, tuple[str, ...]]]:
    """Per destination /24, the upstream(s) of the ISP's forward route and of the border's return route
    (the policy table its source rule selects), read back from the kernel."""
    names = _names(prefix)
    # Dump and filter here: get_routes(dst=...) would ask the kernel for a lookup (one resolved path).
    with kernel.netlink(names["isp"]) as ipr:
        isp = list(ipr.get_routes(table=254))
    with kernel.netlink(names["border"]) as ipr:
        border = [m for t in topology.TABLE_BY_ROLE.values() for m in ipr.get_routes(table=t)]
    return {
        p24: {
            "forward": _upstreams_of_routes(isp, p24, 254),
            "return": _upstreams_of_routes(border, "default", topology.TABLE_BY_ROLE[role]),
        }
        for p24, role in topology.PREFIX_ROLE.items()
    }


def _dumps_on_signal(path: Path) -> bool:
    try:
        return bool(json.loads(path.read_text()).get("dumps_on_sigusr1"))
    except (OSError, ValueError, AttributeError):
        return False


def wire_counters(prefix: str) -> dict[str, Any] | None:
    """The delay link's counters, fresh: the helper rewrites its file on SIGUSR1."""
    path = state_dir(prefix) / "wire-counters.json"
    pid = helper_pids(prefix).get("wire")
    if pid and _is_helper(pid, state_dir(prefix), _names(prefix)) and _dumps_on_signal(path):
        with contextlib.suppress(OSError):
            before = path.stat().st_mtime_ns
            os.kill(pid, signal.SIGUSR1)
            deadline = time.monotonic() + 0.5
            while path.stat().st_mtime_ns == before and time.monotonic() < deadline:
                time.sleep(0.005)
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data


def helper_pids(prefix: str) -> dict[str, int | None]:
    state = state_dir(prefix)
    out: dict[str, int | None] = {}
    for helper in HELPERS:
        try:
            pid = int((_pid_dir(state) / f"{helper}.pid").read_text())
        except (OSError, ValueError):
            out[helper] = None
            continue
        out[helper] = pid if alive(pid) else None
    return out
