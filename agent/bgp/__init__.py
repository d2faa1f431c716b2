"""The control-plane cross-check: what BGP (RIPEstat snapshots, read offline) says about the destination
AS's neighbours per /24, against the upstream the traceroutes show."""

from agent.bgp.load import load_check, load_view, read_document
from agent.bgp.ripestat import Document, Neighbour, Route, parse_document
from agent.bgp.view import BgpCheck, BgpView, PrefixView, build_view, tags_of

__all__ = [
    "BgpCheck",
    "BgpView",
    "Document",
    "Neighbour",
    "PrefixView",
    "Route",
    "build_view",
    "load_check",
    "load_view",
    "parse_document",
    "read_document",
    "tags_of",
]
