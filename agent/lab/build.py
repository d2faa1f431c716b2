"""Bringing the lab up and down, flipping its upstream, reporting its state (pyroute2 + two helpers).

Everything lives in network namespaces named <prefix><role> (topology.ROLES); nothing is created in the
namespace `lab up` runs in. Helper processes (the delay link, the TCP listeners) are tracked by pid files
in the state dir /run/nkprobe-lab/<prefix without trailing dash>/, next to asn.pfx2as, config.toml and
lab.json. `down` removes exactly those namespaces and processes, so labs with other prefixes (other
engineers, parallel test sessions) are left alone.
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
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from agent.errors import LabError, PrivilegeError
from agent.lab import nsutil, topology
from agent.lab.info import LabInfo, LinkInfo, PrefixInfo, load, state_dir
from agent.lab.scenario import Scenario
from agent.lab.topology import (
    CHINA,
    HOSTS,
    MULTIPATH_ROUTERS,
    ROLES,
    ROUTERS,
    TTK,
    VANTAGE,
    WIRE,
    Options,
)

BACKEND_ENV = "NKPROBE_LAB_DELAY"  # auto (default), wire or netem
HELPERS = ("wire", "listener")
READY_TIMEOUT_S = 10.0
MULTIPATH_SEED = 28267  # any fixed value, the same on the ISP and the border


def require_root() -> None:
    if os.geteuid() != 0:
        raise PrivilegeError("the lab needs root (network namespaces); run it with sudo")


@contextlib.contextmanager
def _netlink(ns: str) -> Iterator[Any]:
    """An rtnetlink socket inside namespace `ns`.

    The socket is opened while this thread is in `ns` and keeps talking to it afterwards. (pyroute2's own
    IPRoute(netns=...) forks a child to open it; a forked Python child runs our signal handlers and
    `finally` blocks too, which once tore a demo lab down from inside a netlink call.)
    """
    from pyroute2 import IPRoute

    with nsutil.inside(ns):
        ipr = IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def _names(prefix: str) -> dict[str, str]:
    return {role: topology.namespace(prefix, role) for role in ROLES}


def _netem_available(ns: str) -> bool:
    """Try a netem qdisc on the namespace's loopback: the only sure test (the module may be built in)."""
    from pyroute2.netlink.exceptions import NetlinkError

    with _netlink(ns) as ipr:
        try:
            ipr.tc("add", "netem", index=1, handle="1:0", delay=1000)
        except (NetlinkError, OSError):  # ENOENT "Specified qdisc kind is unknown" on this project's CI
            return False
        with contextlib.suppress(NetlinkError, OSError):
            ipr.tc("del", index=1, handle="1:0")
        return True


def _backend(wire_ns: str) -> str:
    wanted = os.environ.get(BACKEND_ENV, "auto")
    if wanted not in ("auto", "wire", "netem"):
        raise LabError(f"{BACKEND_ENV}={wanted!r}: use auto, wire or netem")
    if wanted == "wire":
        return "wire"
    available = _netem_available(wire_ns)
    if wanted == "netem" and not available:
        raise LabError(f"{BACKEND_ENV}=netem but this kernel has no netem qdisc; unset it to use the wire")
    return "netem" if available else "wire"


def _sysctls(role: str, opts: Options) -> None:
    """Run inside the namespace, before any interface exists (new interfaces copy conf/default)."""
    # No IPv6 on lab links: no router solicitations or DAD frames through the delay links.
    nsutil.sysctl("net/ipv6/conf/all/disable_ipv6", 1, missing_ok=True)
    nsutil.sysctl("net/ipv6/conf/default/disable_ipv6", 1, missing_ok=True)
    if opts.rate_limit and role != WIRE:
        # Like real routers and hosts: the kernel's per-peer token bucket (icmp_ratelimit ms a token,
        # burst 6) and its per-namespace cap (icmp_msgs_per_sec, burst icmp_msgs_burst), on the types
        # in the default ratemask (time exceeded, unreachables: never echo replies). Both are per
        # namespace (net->ipv4.sysctl_icmp_*), so each lab router limits on its own.
        nsutil.sysctl("net/ipv4/icmp_ratelimit", opts.icmp_ratelimit_ms)
        nsutil.sysctl("net/ipv4/icmp_ratemask", topology.KERNEL_ICMP_RATEMASK)
        nsutil.sysctl("net/ipv4/icmp_msgs_per_sec", opts.icmp_msgs_per_sec)
        nsutil.sysctl("net/ipv4/icmp_msgs_burst", topology.KERNEL_ICMP_MSGS_BURST)
    else:
        # Traceroute answers must never be rate limited (icmp_ratelimit/ratemask are per namespace, and
        # the default 1 per second per peer after a burst of 6 shows as '*' in repeated test traces).
        nsutil.sysctl("net/ipv4/icmp_ratelimit", 0)
        nsutil.sysctl("net/ipv4/icmp_ratemask", 0)
    if role in ROUTERS:
        nsutil.sysctl("net/ipv4/ip_forward", 1)
        nsutil.sysctl("net/ipv4/conf/all/rp_filter", 0)
        nsutil.sysctl("net/ipv4/conf/default/rp_filter", 0)
        # Answer a probe from the interface it came in on (RFC 1812 4.3.2.4 allows either choice), as
        # most backbone routers do: each hop then shows an address of its own AS.
        nsutil.sysctl("net/ipv4/icmp_errors_use_inbound_ifaddr", 1)
    if role in MULTIPATH_ROUTERS:
        # 1 = layer-4 hash (addresses, protocol, ports): the per-flow split a Paris traceroute keeps.
        nsutil.sysctl("net/ipv4/fib_multipath_hash_policy", 1)
        # The kernel orders a flow's addresses and ports before hashing (__flow_hash_consistentify), so a
        # flow and its reverse hash alike; with one seed on both routers (Linux 6.11+; older kernels share
        # one boot-time key) the border returns every flow over the chain the ISP sent it on.
        nsutil.sysctl("net/ipv4/fib_multipath_hash_seed", MULTIPATH_SEED, missing_ok=True)


def _dst(route_dst: str) -> dict[str, Any]:
    if route_dst == "default":
        return {"dst": "0.0.0.0", "dst_len": 0}
    net, length = route_dst.split("/")
    return {"dst": net, "dst_len": int(length)}


def _route_args(route: topology.Route) -> dict[str, Any]:
    args: dict[str, Any] = {**_dst(route.dst), "table": route.table}
    if len(route.gateways) == 1:
        args["gateway"] = route.gateways[0]
    else:
        args["multipath"] = [{"gateway": gw} for gw in route.gateways]
    return args


def _wire_if(link_name: str, side: str) -> str:
    return f"{link_name}-{side}"  # at most 15 characters: "border-d176-a"


def _make_links(names: dict[str, str], scenario: Scenario, backend: str) -> None:
    wire = names[WIRE]
    for lk in topology.links(scenario.options):
        ns_a, ns_b = names[lk.a], names[lk.b]
        via_wire = backend == "wire" and lk.name in scenario.links
        if via_wire:
            for side, ns, ifname in (("a", ns_a, lk.a_ifname), ("b", ns_b, lk.b_ifname)):
                with _netlink(ns) as ipr:
                    peer = {"ifname": _wire_if(lk.name, side), "net_ns_fd": wire}
                    ipr.link("add", ifname=ifname, kind="veth", peer=peer)
            with _netlink(wire) as ipr:
                for side in ("a", "b"):
                    (idx,) = ipr.link_lookup(ifname=_wire_if(lk.name, side))
                    # Promiscuous: the wire end must take frames addressed to the router on the far side.
                    ipr.link("set", index=idx, flags=0x101, change=0x101)  # IFF_UP | IFF_PROMISC
        else:
            with _netlink(ns_a) as ipr:
                ipr.link(
                    "add", ifname=lk.a_ifname, kind="veth", peer={"ifname": lk.b_ifname, "net_ns_fd": ns_b}
                )


def _configure_namespace(role: str, ns: str, scenario: Scenario, backend: str, flip: str) -> None:
    opts = scenario.options
    lab_links = topology.links(opts)
    delayed_here = {
        (lk.a_ifname if lk.a == role else lk.b_ifname): lk
        for lk in lab_links
        if role in (lk.a, lk.b) and lk.name in scenario.links
    }
    with _netlink(ns) as ipr:
        (lo,) = ipr.link_lookup(ifname="lo")
        ipr.link("set", index=lo, state="up")
        own = []  # (link, our side, our interface index): MACs first, addresses, then up
        for lk in lab_links:
            if role in (lk.a, lk.b):
                side = "a" if lk.a == role else "b"
                (idx,) = ipr.link_lookup(ifname=lk.a_ifname if side == "a" else lk.b_ifname)
                ipr.link("set", index=idx, address=lk.mac(side))
                own.append((lk, side, idx))
        for ifname, addr, plen in topology.addresses(role, opts):
            (idx,) = ipr.link_lookup(ifname=ifname)
            ipr.addr("add", index=idx, address=addr, prefixlen=plen)
        for lk, side, idx in own:
            ipr.link("set", index=idx, state="up")
            # Static neighbours: no ARP through the delay links, no first-packet resolution delay.
            peer_addr, peer_mac = (lk.b_addr, lk.mac("b")) if side == "a" else (lk.a_addr, lk.mac("a"))
            ipr.neigh("add", dst=peer_addr, lladdr=peer_mac, ifindex=idx, state=0x80)  # NUD_PERMANENT
        for route in topology.routes(role, flip, opts):
            ipr.route("add", **_route_args(route))
        for dst in topology.blackhole_routes(role):
            ipr.route("add", **_dst(dst), table=topology.TABLE_BLACKHOLE, type="blackhole")
        for rule in topology.rules(role):
            args: dict[str, Any] = {"priority": rule.priority, "table": rule.table}
            if rule.src:
                net, length = rule.src.split("/")
                args.update(src=net, src_len=int(length))
            if rule.iif_lo:
                args["iifname"] = "lo"
            if rule.ip_proto is not None:
                args["ip_proto"] = rule.ip_proto
            ipr.rule("add", **args)
        if backend == "netem":
            for ifname, lk in delayed_here.items():
                p = scenario.links[lk.name]
                (idx,) = ipr.link_lookup(ifname=ifname)
                ipr.tc(
                    "add",
                    "netem",
                    index=idx,
                    handle="1:0",
                    delay=int(p.delay_ms * 1000),
                    jitter=int(p.jitter_ms * 1000),
                    loss=p.loss_pct,
                )
    if backend == "wire" and delayed_here:
        with nsutil.inside(ns):
            for ifname in delayed_here:
                nsutil.disable_offloads(ifname)
    ruleset = nat_ruleset(role, opts)
    if ruleset:
        _nft(ns, ruleset)


NFT_TABLE = "nkprobe_lab"


def nat_ruleset(role: str, opts: Options) -> str:
    """The nftables ruleset of one namespace for `opts` ("" for none): the home router's masquerade, the
    ISP's CGNAT. Conntrack maps every reply, and every ICMP error quoting a translated probe (RELATED,
    nf_nat_icmp_reply_translation rewrites the quoted header too), back to the vantage.

    >>> print(nat_ruleset("home", Options(nat=True)))
    table ip nkprobe_lab {
      chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "isp" masquerade
      }
    }
    >>> "snat to 198.18.1.254" in nat_ruleset("isp", Options(cgnat=True))
    True
    >>> nat_ruleset("cu1", Options(nat=True, cgnat=True))
    ''
    """
    if role == "home" and opts.nat:
        # A home router (OpenWrt's fw4 does the same): masquerade what leaves the WAN. Ports and ICMP
        # identifiers are kept unless they clash; "random" makes the NAT pick new ones per flow.
        rule = 'oifname "isp" masquerade' + (" random" if opts.nat_random else "")
    elif role == "isp" and opts.cgnat:
        # Carrier-grade NAT (RFC 6888): customers' 100.64.0.0/10 sources leave as one public address.
        rule = f'iifname "home" ip saddr 100.64.0.0/10 snat to {topology.CGNAT_PUBLIC}'
        if not opts.nat:  # without a home NAT the vantage's own address reaches the ISP
            rule = f'iifname "home" oifname != "home" snat to {topology.CGNAT_PUBLIC}'
    else:
        return ""
    return "\n".join(
        (
            f"table ip {NFT_TABLE} {{",
            "  chain postrouting {",
            "    type nat hook postrouting priority srcnat; policy accept;",
            f"    {rule}",
            "  }",
            "}",
        )
    )


def _nft(ns: str, ruleset: str) -> None:
    """Load `ruleset` with nft(8) inside namespace `ns`."""
    nft = shutil.which("nft") or next((p for p in ("/usr/sbin/nft", "/sbin/nft") if Path(p).exists()), None)
    if nft is None:
        raise LabError("the lab's NAT needs nftables: apt-get install nftables (or drop --nat/--cgnat)")
    with nsutil.inside(ns):  # the child inherits this thread's namespace
        proc = subprocess.run([nft, "-f", "-"], input=ruleset, capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise LabError(f"nft in {ns} failed: {proc.stderr.strip() or proc.returncode}; see `nft -f` input")


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
            _sysctls(role, scenario.options)
    backend = _backend(names[WIRE]) if scenario.links else "wire"
    flip = scenario.flip_start
    _make_links(names, scenario, backend)
    for role, ns in names.items():
        if role != WIRE:
            _configure_namespace(role, ns, scenario, backend, flip)
    info = _lab_info(prefix, names, scenario, backend, flip)
    if backend == "wire" and scenario.links:
        spec = {
            "namespace": names[WIRE],
            "counters": str(state / "wire-counters.json"),
            "links": [
                {
                    "name": name,
                    "a_if": _wire_if(name, "a"),
                    "b_if": _wire_if(name, "b"),
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
    from agent.lab.info import RUN_DIR

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
    with _netlink(names["isp"]) as isp, _netlink(names["border"]) as border:
        isp.route("replace", **_dst(p24), gateway=topology.gateways_for("isp", p24, upstream)[0])
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
    with _netlink(names["isp"]) as ipr:
        isp = list(ipr.get_routes(table=254))
    with _netlink(names["border"]) as ipr:
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
