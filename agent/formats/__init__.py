"""What our results look like outside the process: RIPE Atlas' result formats, written by atlas_out
(`nkprobe trace --json`, `nkprobe ping --json`) and read by atlas_in (`nkprobe classify`)."""
