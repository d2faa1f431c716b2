"""The namespace lab: a small simulated Internet between a vantage host and a "North Korea" of test hosts.

`nkprobe lab up` builds it in network namespaces named <prefix><role> (prefix: NKPROBE_LAB_PREFIX, default
"nkp-"), all addressed inside 198.18.0.0/15, with real kernel forwarding; `lab down` removes exactly those
namespaces and the lab's helper processes. Topology (link names in brackets; every /30 is numbered from the
AS block of its far end, so each traceroute hop shows an address of its own AS):

                        AS64512           AS64513
    nkp-vp ---[vp-home]--- nkp-home ---[home-isp]--- nkp-isp
    198.18.0.1   198.18.0.2   198.18.1.2                 |
                                         +---------------+----------------+
                                  [isp-cu1]                          [isp-ttk1]
                             AS4837  |                                   |  AS20485
                 198.18.48.2 nkp-cu1                         nkp-ttk1 198.18.85.2
                                  [cu1-cu2]                         [ttk1-ttk2]
                 198.18.48.6 nkp-cu2                         nkp-ttk2 (silent: sends no ICMP)
                                     |                          [ttk2-ttk3]
                                     |                       nkp-ttk3 198.18.85.10
                               [cu2-border]                     [ttk3-border]
                                     +-------------+------------------+
                       AS131279 198.19.180.2 nkp-border 198.19.180.6
                                                   |
                 [border-d176] [border-d177] [border-d178] [border-d179]
                   nkp-d176      nkp-d177      nkp-d178      nkp-d179
               198.19.176.10/.20     .177.x        .178.x        .179.x

    198.19.176.0/24  always via the China-Unicom-like chain (cu1, cu2)
    198.19.177.0/24  always via the TransTeleCom-like chain (ttk1, ttk2, ttk3)
    198.19.178.0/24  split per flow over both (ECMP, L4 hash); each flow returns the way it came
    198.19.179.0/24  follows `nkprobe lab flip china_unicom|transtelecom` (starts on china_unicom)
    host .10         answers ICMP echo and TCP port 80
    host .20         sends no ICMP at all (ignores echo), accepts TCP port 80

The ISP chooses the chain by destination, the border by source (policy rules), so a flow's forward and
return paths cross the same chain and `flip` changes both at once. Routers answer from the interface a
probe came in on (icmp_errors_use_inbound_ifaddr=1); ICMP rate limits are off in the lab
unless `lab up --rate-limit`. With `--nat` the home router masquerades the vantage host (nftables), with
`--cgnat` the ISP is a carrier-grade NAT (home-isp link in 100.64.1.0/30, customers translated to
198.18.1.254); `--home` is all three, the demo's default (topology.Options, README.md).

Delay: links named in the scenario (default.toml) carry a one-way delay in both directions. With a netem
qdisc in the kernel it is used; otherwise (this project's CI kernel) both ends of such a link are veths
whose peers sit in the `<prefix>wire` namespace, where one helper process (wire.py) copies frames between
them after the delay. Helper processes (wire, listener) and files live in /run/nkprobe-lab/<name>/.

Modules: topology (the fixed shape, pure), scenario (TOML delays, validated), build (up, down, flip,
status: when, state files, helper processes), kernel (one namespace's sysctls, links, addresses, routes,
rules, netem and NAT, with pyroute2 and nft), wire (the delay link), listener (TCP 80 on the hosts), nsutil
(setns, sysctls, offloads), info (LabInfo, read by tests and tools).
"""
