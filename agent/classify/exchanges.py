"""Exchange-point peering LANs the classifier passes over by default (`[classify] exchange_prefixes`).

A member's router on an exchange answers from the exchange's LAN, which says nothing about whose router
it is, so a hop there is passed over like an RFC 1918 one (agent.classify). These are the IPv4 peering
LANs of the exchanges on the usual paths to Russia and Hong Kong, checked 2026-11-26 (all six unchanged)
against public sources found with the project's search tool:
- DE-CIX Frankfurt 80.81.192.0/21: DE-CIX's PeeringDB page (as6695.peeringdb.com, 2024-06-26) puts its
  route servers rs1/rs2.fra.de-cix.net at 80.81.192.157 and 80.81.193.157; NLNOG's BGP filter guide,
  "Peering LANs", uses it as its DE-CIX Frankfurt example.
- AMS-IX 80.249.208.0/21: PeeringDB ix 26 (AMS-IX's earlier LAN was 195.69.144.0/22: ams-ix.net
  "AS1200 peering", 2009).
- LINX LON1 195.66.224.0/21: linx.net "LON1 Netmask Change" (/22 widened to /21 in May 2022);
  PeeringDB ix 18.
- MSK-IX Moscow 195.208.208.0/21: kb.msk-ix.ru "Route Server" (195.208.208.100/21, 195.208.215.100/21);
  PeeringDB ix 100.
- HKIX 123.255.88.0/21: hkix.net "IPv4 Address Renumbering" (a new /21 from June 2015 replaced
  202.40.160.0/23); PeeringDB ix 42, as Microsoft's Azure peering-location data lists it.
- Equinix Ashburn 206.126.236.0/22: PeeringDB ix 1 (ixpfx 386, as peeringdb-py's documentation shows).
Peering LANs get renumbered: re-check at https://www.peeringdb.com/ix/<id> when traces disagree.
"""

from __future__ import annotations

# prefix -> exchange name (the name shows in the evidence of a passed-over hop)
DEFAULT_EXCHANGE_PREFIXES: dict[str, str] = {
    "80.81.192.0/21": "DE-CIX Frankfurt",
    "80.249.208.0/21": "AMS-IX",
    "195.66.224.0/21": "LINX LON1",
    "195.208.208.0/21": "MSK-IX Moscow",
    "123.255.88.0/21": "HKIX",
    "206.126.236.0/22": "Equinix Ashburn",
}
