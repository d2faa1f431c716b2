"""A small built-in IP-to-AS table: the main blocks of the default upstreams and of the destination.

So that a fresh install tags sensibly offline, before `nkprobe asn update` has run. Hand-written from
public facts, not a copy of any dataset; a configured or updated table overrides it (later sources win).

Sources (checked 2026-11-26):
- APNIC's delegation of 175.45.176.0/22 to KP (2010-01-22), announced by AS131279; China Unicom AS4837
  backbone in 219.158.0.0/16 (not all of it announced: 219.158.64.0/19 is unannounced router space and is left
  out on purpose); AS9929 218.105.0.0/16, 210.51.0.0/16, 210.52.0.0/15 with AS4837 more-specifics inside;
  AS10099 162.219.80.0/21; AS134544 103.35.252.0/23 and 103.35.254.0/24 (103.35.255.254, the last China-side
  hop in December 2025, is unannounced: see agent.classify's known borders); AS20485 217.150.32.0/19 and
  188.43.0.0/16.
- The announced, aggregated IPv4 routes of these ASes as published by RIPEstat "announced-prefixes" and
  mirrored by the public ipverse/asn-ip lists (2026), from which only the largest blocks are named here.
"""

from __future__ import annotations

BUILTIN_SOURCE = "built-in"
BUILTIN_DATE = "2026-11-26"

# CAIDA prefix2as layout (PREFIX<TAB>LENGTH<TAB>ASN), read by agent.asn.loaders like any other file.
BUILTIN_PFX2AS = """\
# destination: STAR-KP
175.45.176.0	22	131279
# China Unicom China169 backbone (router space in 219.158/16)
219.158.0.0	19	4837
219.158.32.0	20	4837
219.158.58.0	23	4837
219.158.60.0	22	4837
219.158.96.0	19	4837
210.51.212.0	22	4837
# China Unicom CUII
218.105.0.0	16	9929
218.106.0.0	16	9929
210.51.0.0	16	9929
210.52.0.0	15	9929
210.83.0.0	16	9929
210.14.192.0	18	9929
# China Unicom Global
162.219.32.0	21	10099
162.219.80.0	21	10099
119.252.136.0	21	10099
202.77.16.0	21	10099
203.160.64.0	19	10099
# Cenbong International (the China-side neighbour of AS131279 in 2026)
103.35.252.0	23	134544
103.35.254.0	24	134544
# TransTeleCom
188.43.0.0	16	20485
217.150.32.0	19	20485
62.33.0.0	16	20485
83.234.0.0	16	20485
80.237.0.0	17	20485
31.134.224.0	19	20485
46.38.0.0	19	20485
62.249.128.0	19	20485
80.82.160.0	19	20485
89.186.224.0	19	20485
"""
