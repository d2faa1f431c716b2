"""What our results look like outside the process: RIPE Atlas' result formats (ripe), which
`nkprobe trace --json`, `nkprobe ping --json` and `nkprobe classify` write and read."""
