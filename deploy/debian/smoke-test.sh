#!/bin/sh
# Installs a built nkprobe .deb with apt on this (Debian or Raspberry Pi OS) system and starts the agent
# once, as its unit would (user nkprobe, CAP_NET_RAW only), for the emulated-Pi checks of deploy/README.md:
#
#   sudo deploy/debian/smoke-test.sh nkprobe_VERSION_all.deb
#
# The agent runs in a network namespace of its own with only loopback up, on a config whose one target
# is in the lab's test space (198.18.0.0/15), so no probe can leave the machine; the check is that it
# starts, serves /metrics and stops cleanly. Prints the install time and apt's installed size. The
# package's own command and Python are used by path (/usr/bin), whatever else is on PATH.
# Exit status: 0 ok; 1 a failure. (Under qemu-user, which refuses SO_TIMESTAMPNS, the agent logs that it
# takes RTTs at read time and runs: agent.net.sockets.enable_timestamps.)
# Needs root, apt's package lists (it runs apt-get update), unshare and setpriv (util-linux), ip (iproute2).
set -eu
deb=${1:?usage: $0 nkprobe_VERSION_all.deb}
case "$deb" in /*) ;; *) deb=$(pwd)/$deb ;; esac
[ -f "$deb" ] || { echo "smoke-test.sh: no such file: $deb" >&2; exit 2; }
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
t0=$(date +%s)
apt-get install -y "$deb" > /tmp/nkprobe-apt.log 2>&1 || { cat /tmp/nkprobe-apt.log >&2; exit 1; }
t1=$(date +%s)
echo "installed in $((t1 - t0)) s; apt: $(grep -o 'After this operation, .* disk space will be used' /tmp/nkprobe-apt.log)"
grep '^nkprobe: ' /tmp/nkprobe-apt.log || true
if dpkg-query -W -f '${Status}' python3-scapy 2>/dev/null | grep -q 'ok installed'; then
    echo "smoke-test.sh: a plain install pulled in python3-scapy" >&2; exit 1
fi
/usr/bin/nkprobe --version
/usr/bin/nkprobe check-config /etc/nkprobe/config.toml
# Every module of the package imports with this release's libraries (the lab's pyroute2 included, from
# the Recommends).
/usr/bin/python3 -c 'import importlib, os, pkgutil, agent
names = [m.name for m in pkgutil.walk_packages(agent.__path__, "agent.") if m.name != "agent.__main__"]
for name in names:
    importlib.import_module(name)
print(len(names), "modules of", os.path.dirname(agent.__file__), "import")'

conf=$(mktemp /tmp/nkprobe-smoke.XXXXXX.toml)
chmod 644 "$conf"
cat > "$conf" <<'TOML'
[agent]
name = "smoke-test"
listen = "127.0.0.1:9931"
state_dir = "/var/lib/nkprobe"
max_pps = 5

[[targets]]
address = "198.19.176.10"

[destination]
asn = 131279
prefixes = ["198.19.176.0/22"]

[classify]
routed_prefixes = ["198.18.0.0/15"]
TOML
# shellcheck disable=SC2016  # expanded by the inner shell
unshare --net sh -c '
    ip link set lo up
    setpriv --reuid=nkprobe --regid=nkprobe --init-groups --inh-caps=-all,+net_raw \
        --ambient-caps=-all,+net_raw --bounding-set=-all,+net_raw --no-new-privs \
        /usr/bin/nkprobe run --config "$0" > /tmp/nkprobe-smoke.log 2>&1 &
    pid=$!
    i=0
    until /usr/bin/python3 -c "import urllib.request as u; print(u.urlopen(\"http://127.0.0.1:9931/metrics\", timeout=5).read().decode())" > /tmp/nkprobe-smoke.metrics 2>/dev/null; do
        i=$((i + 1))
        if [ "$i" -gt 300 ] || ! kill -0 "$pid" 2>/dev/null; then
            echo "smoke-test.sh: the agent did not serve /metrics:" >&2; cat /tmp/nkprobe-smoke.log >&2; exit 1
        fi
        sleep 1
    done
    echo "agent up after about $i s"
    kill -TERM "$pid"
    wait "$pid"
' "$conf" || exit $?
grep -E '^nkprobe_(build_info|agent_info)' /tmp/nkprobe-smoke.metrics
rm -f "$conf"
echo "smoke-test.sh: ok"
