"""nkprobe: which upstream carries each /24 of North Korea's one routed block, measured continuously."""

__version__ = "0.1.0"
