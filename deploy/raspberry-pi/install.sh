#!/usr/bin/env bash
# Installs an nkprobe agent on a Raspberry Pi, or any Debian 12+, Ubuntu 24.04+ or Raspberry Pi OS
# machine (armhf, arm64, amd64). The volunteer's one command, from a clone of the repository:
#
#   sudo ./deploy/raspberry-pi/install.sh --name pi-berlin-1 \
#       --central-url https://central.example.org:9090/api/v1/write --username pi-berlin-1 --password SECRET
#
# (the central operator's `deploy/central/setup.sh add-agent NAME` prints that line ready to paste).
# What it sets up:
#   the Debian package nkprobe (built from this clone with deploy/debian/build.sh, or the one given with
#   --deb), installed with apt, which brings its libraries from the system's archive and sets up the user
#   nkprobe, /etc/nkprobe/config.toml (a conffile: your edits are kept), the state directory,
#   nkprobe.service (the agent, CAP_NET_RAW only) and nkprobe-asn-update.timer (daily IP-to-AS refresh);
#   then agent.name in the config (while it is the shipped "nkprobe") and nkprobe-forwarder.service
#   (scrapes the agent on loopback and remote-writes to the central server, buffering on disk while it is
#   unreachable: vmagent from Debian's victoria-metrics package, or Prometheus in agent mode where that
#   package does not exist). A pip install in /opt/nkprobe left by an older install.sh is replaced.
# Running it again upgrades: the newer package is installed over the old one, the forwarder re-rendered;
# the config, the password (unless a new one is given) and the history are kept.
#
#   sudo ./deploy/raspberry-pi/install.sh uninstall [--purge]
#       removes the forwarder and the package (apt remove); keeps /etc/nkprobe, the path history in
#       /var/lib/nkprobe and the forwarder's unsent buffer. --purge (apt purge) removes those and the
#       nkprobe user too. The libraries and the forwarder's package stay installed.
#
# Options:
#   --name NAME             agent name, the `agent` label of every series (default: agent.name of an
#                           existing config, else the host name)
#   --central-url URL       the central server's remote-write URL (kept from the last run if omitted)
#   --username USER         its basic-auth user (default: the last run's, else NAME)
#   --password PW           its password; or --password-file FILE ("-" reads standard input)
#   --forwarder KIND        auto (default: vmagent where available), vmagent, prometheus, or none
#                           (no forwarder: the agent's /metrics on 127.0.0.1:9931 only)
#   --agent-address H:P     where the forwarder scrapes the agent (default 127.0.0.1:9931, agent.listen)
#   --no-start              install and enable the services but do not (re)start them
#   --deb FILE              install this nkprobe_VERSION_all.deb instead of building one from the clone
#                           (building needs dpkg-dev, debhelper and dh-python; they are installed if
#                           missing)
#
# Test hooks (environment): ROOT=DIR installs into the Debian system rooted at DIR, running its commands
# with chroot (CHROOT=CMD replaces chroot); SYSTEMCTL=CMD runs CMD instead of systemctl (a recorder, in
# tests). The package is built, when it is, on this machine, not in ROOT.
set -euo pipefail
umask 022

ROOT=${ROOT:-}
ROOT=${ROOT%/}
CHROOT=${CHROOT:-chroot}
read -r -a SYSTEMCTL_CMD <<< "${SYSTEMCTL:-systemctl}"

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
DEPLOY=$REPO/deploy

LEGACY_PREFIX=/opt/nkprobe  # the venv of install.sh before the Debian package
ETC=/etc/nkprobe
STATE=/var/lib/nkprobe
UNITS=/etc/systemd/system
USER_NAME=nkprobe
FORWARDER_STATE=/var/lib/private/nkprobe-forwarder  # DynamicUser= keeps StateDirectory= here

die() { echo "install.sh: $*" >&2; exit 2; }
say() { echo "install.sh: $*" >&2; }

# Run a command inside the target system.
inroot() {
  if [ -n "$ROOT" ]; then
    "$CHROOT" "$ROOT" "$@"
  else
    "$@"
  fi
}

sysctl_() { "${SYSTEMCTL_CMD[@]}" "$@"; }

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2; exit 2; }

# --- arguments --------------------------------------------------------------------------------------
action=install
purge=0
name=""
url=""
username=""
password=""
password_given=0
forwarder=auto
agent_address=127.0.0.1:9931
start=1
deb=""

if [ $# -gt 0 ] && [ "$1" = uninstall ]; then action=uninstall; shift; fi
if [ $# -gt 0 ] && [ "$1" = install ]; then shift; fi
while [ $# -gt 0 ]; do
  case "$1" in
    --name) name=${2:?--name needs a value}; shift 2 ;;
    --central-url) url=${2:?--central-url needs a value}; shift 2 ;;
    --username) username=${2:?--username needs a value}; shift 2 ;;
    --password) password=${2:?--password needs a value}; password_given=1; shift 2 ;;
    --password-file)
      f=${2:?--password-file needs a value}
      if [ "$f" = - ]; then IFS= read -r password || true; else password=$(cat -- "$f"); fi
      [ -n "$password" ] || die "--password-file $f is empty"
      password_given=1; shift 2 ;;
    --forwarder) forwarder=${2:?--forwarder needs a value}; shift 2 ;;
    --agent-address) agent_address=${2:?--agent-address needs a value}; shift 2 ;;
    --no-start) start=0; shift ;;
    --deb) deb=${2:?--deb needs a value}; shift 2 ;;
    --purge) purge=1; shift ;;
    -h|--help) usage ;;
    *) die "unknown argument '$1' (see $0 --help)" ;;
  esac
done

if [ -z "$ROOT" ] && [ "$(id -u)" != 0 ]; then
  die "run as root: sudo $0 $*"
fi
if [ -n "$ROOT" ] && [ ! -d "$ROOT" ]; then
  die "ROOT=$ROOT is not a directory"
fi

case "$forwarder" in auto|vmagent|prometheus|none) ;; *) die "--forwarder must be auto, vmagent, prometheus or none" ;; esac
[ "$purge" = 0 ] || [ "$action" = uninstall ] || die "--purge goes with uninstall"

# Values land in YAML and systemd files: keep them to characters that need no quoting anywhere.
check_value() {  # what value regex
  [[ $2 =~ $3 ]] || die "bad $1 '$2'"
}
[ -z "$name" ] || check_value "--name" "$name" '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$'
[ -z "$username" ] || check_value "--username" "$username" '^[A-Za-z0-9][A-Za-z0-9._@-]{0,62}$'
[ -z "$url" ] || check_value "--central-url" "$url" '^https?://[A-Za-z0-9.:_/%@~+-]+$'
check_value "--agent-address" "$agent_address" '^[][A-Za-z0-9.:_-]+:[0-9]+$'
case "$password" in *$'\n'*) die "the password must be one line" ;; esac

# --- helpers ----------------------------------------------------------------------------------------
# Replace @KEY@ placeholders; values are quoted so "&" or "\" in them stay literal (bash 5.2
# patsub_replacement).
render() {  # template KEY=VALUE...
  local text kv
  text=$(cat "$1")
  shift
  for kv in "$@"; do
    text=${text//"@${kv%%=*}@"/"${kv#*=}"}
  done
  printf '%s\n' "$text"
}

# Write stdin to a file of the target system with a mode, atomically, only if its content changed.
put() {  # path mode
  local dest=$ROOT$1 tmp
  tmp=$(mktemp "$(dirname "$dest")/.nkprobe.XXXXXX")
  cat > "$tmp"
  chmod "$2" "$tmp"
  if [ -f "$dest" ] && cmp -s "$tmp" "$dest"; then
    rm -f "$tmp"
    chmod "$2" "$dest"
    return 0
  fi
  mv -f "$tmp" "$dest"
}

pkg_installed() {
  # shellcheck disable=SC2016  # ${Status} is dpkg-query's field, not a shell variable
  inroot dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

pkg_available() {
  inroot apt-cache show "$1" >/dev/null 2>&1
}

# The agent name in an existing config's [agent] table, if any.
config_name() {
  [ -f "$ROOT$ETC/config.toml" ] || return 0
  awk '/^[[:space:]]*\[/ { in_agent = ($0 ~ /^[[:space:]]*\[agent\][[:space:]]*(#.*)?$/) }
       in_agent && /^[[:space:]]*name[[:space:]]*=/ {
         sub(/^[^=]*=[[:space:]]*"/, ""); sub(/".*$/, ""); print; exit }' "$ROOT$ETC/config.toml"
}

env_value() {  # file key: a KEY=value line of an existing env file
  [ -f "$ROOT$1" ] || return 0
  sed -n "s/^$2=//p" "$ROOT$1" | tail -n 1
}

# install.sh before the Debian package: a venv in /opt/nkprobe and its own copies of the units in
# /etc/systemd/system (which would hide the package's). Removed; the config and history stay.
legacy_units() {
  [ -d "$ROOT$LEGACY_PREFIX" ] || return 0
  say "removing the pip install in $LEGACY_PREFIX and its units (the Debian package replaces them)"
  sysctl_ disable nkprobe.service nkprobe-asn-update.timer || true
  rm -f "$ROOT$UNITS/nkprobe.service" "$ROOT$UNITS/nkprobe-asn-update.service" "$ROOT$UNITS/nkprobe-asn-update.timer"
  rm -rf "${ROOT:?}$LEGACY_PREFIX"
}

# --- uninstall --------------------------------------------------------------------------------------
if [ "$action" = uninstall ]; then
  sysctl_ disable --now nkprobe-forwarder.service || true
  rm -f "$ROOT$UNITS/nkprobe-forwarder.service"
  legacy_units
  export DEBIAN_FRONTEND=noninteractive
  # shellcheck disable=SC2016  # ${Status} is dpkg-query's field, not a shell variable
  status=$(inroot dpkg-query -W -f='${Status}' nkprobe 2>/dev/null || true)
  if [ "$purge" = 1 ] && [[ $status == *" installed" || $status == *" config-files" ]]; then
    inroot apt-get purge -y -q nkprobe  # also after an earlier remove left its config
  elif [[ $status == *" installed" ]]; then
    inroot apt-get remove -y -q nkprobe  # the prerm stops the agent
  fi
  sysctl_ daemon-reload || true
  if [ "$purge" = 1 ]; then
    rm -rf "${ROOT:?}$ETC" "${ROOT:?}$STATE" "${ROOT:?}$FORWARDER_STATE" "${ROOT:?}/var/lib/nkprobe-forwarder"
    if inroot getent passwd "$USER_NAME" >/dev/null 2>&1; then
      inroot userdel "$USER_NAME" || say "could not remove user $USER_NAME"
    fi
    say "removed nkprobe, its configuration, history, forwarder buffer and user"
  else
    say "removed nkprobe; kept $ETC (configuration), $STATE (path history) and the forwarder's buffer"
    say "remove those too with: $0 uninstall --purge"
  fi
  exit 0
fi

# --- install: checks --------------------------------------------------------------------------------
[ -f "$DEPLOY/forwarder/forwarder.yml.in" ] || die "$DEPLOY/forwarder is missing: run from a full clone"
if [ -n "$deb" ]; then
  [ -f "$deb" ] || die "--deb $deb: no such file"
  deb=$(cd "$(dirname "$deb")" && pwd)/$(basename "$deb")
  [ "$(dpkg-deb -f "$deb" Package 2>/dev/null)" = nkprobe ] || die "--deb $deb is not an nkprobe package"
fi
# shellcheck disable=SC1091  # the target system's file, read at run time
os_id=$( . "$ROOT/etc/os-release" 2>/dev/null && echo "${ID:-} ${ID_LIKE:-}" ) || os_id=""
case " $os_id " in
  *" debian "*|*" ubuntu "*|*" raspbian "*) ;;
  *) die "this installer knows Debian, Ubuntu and Raspberry Pi OS; /etc/os-release says '$os_id'" ;;
esac
arch=$(inroot dpkg --print-architecture 2>/dev/null || echo unknown)
case "$arch" in
  amd64|arm64|armhf) ;;
  *) say "warning: architecture '$arch' is untested (armhf, arm64 and amd64 are)" ;;
esac

# Keep what the last run set unless told otherwise.
[ -n "$name" ] || name=$(config_name)
if [ -z "$name" ] || [ "$name" = nkprobe ]; then
  name=$(cat "$ROOT/etc/hostname" 2>/dev/null || hostname)
  name=${name%%.*}
fi
check_value "agent name" "$name" '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$'
[ -n "$url" ] || url=$(env_value "$ETC/forwarder.env" NKPROBE_REMOTE_WRITE_URL)
[ -n "$username" ] || username=$(env_value "$ETC/forwarder.env" NKPROBE_REMOTE_WRITE_USERNAME)
[ -n "$username" ] || username=$name
if [ "$forwarder" != none ]; then
  [ -n "$url" ] || die "--central-url is required (the central operator gives it to you), or use --forwarder none"
  if [ "$password_given" = 0 ] && [ ! -s "$ROOT$ETC/remote-write-password" ]; then
    die "--password or --password-file is required for the central server"
  fi
fi

# --- packages ---------------------------------------------------------------------------------------
export DEBIAN_FRONTEND=noninteractive
updated=0
apt_update() { [ "$updated" = 1 ] || { inroot apt-get update -q; updated=1; }; }
missing=()

forwarder_pkg=""
if [ "$forwarder" = auto ]; then
  if pkg_installed victoria-metrics; then
    forwarder=vmagent
  else
    apt_update
    if pkg_available victoria-metrics; then forwarder=vmagent; else forwarder=prometheus; fi
  fi
  say "forwarder: $forwarder"
fi
case "$forwarder" in
  vmagent) forwarder_pkg=victoria-metrics ;;
  prometheus) forwarder_pkg=prometheus ;;
esac
fresh_forwarder_pkg=0
if [ -n "$forwarder_pkg" ] && ! pkg_installed "$forwarder_pkg"; then
  missing+=("$forwarder_pkg")
  fresh_forwarder_pkg=1
fi

# The package: built here from this clone unless given.
if [ -z "$deb" ]; then
  if ! command -v dpkg-buildpackage >/dev/null || ! command -v dh >/dev/null || ! command -v dh_python3 >/dev/null; then
    [ -z "$ROOT" ] || die "building the package needs dpkg-dev, debhelper and dh-python here; install them or pass --deb FILE"
    say "installing the tools that build the package"
    apt_update
    apt-get install -y -q --no-install-recommends dpkg-dev debhelper dh-python pybuild-plugin-pyproject \
      python3-all python3-setuptools python3-wheel
  fi
  built=$(mktemp -d)
  deb=$("$REPO/deploy/debian/build.sh" --out "$built" | tail -n 1) || die "building the package failed (see above)"
fi
version=$(dpkg-deb -f "$deb" Version)
legacy_units

# apt installs the package with its dependencies from the archive (and its Recommends, as a plain
# `apt install` does: python3-pyroute2; never scapy, a Suggests), then the forwarder's package without
# its Recommends (Prometheus would bring node-exporter). Your config is a conffile: --force-confold
# keeps it when a new version ships a different example.
apt_update
mkdir -p "$ROOT/tmp"
incoming=$(mktemp -d "$ROOT/tmp/nkprobe-deb.XXXXXX")
chmod 755 "$incoming"
cp "$deb" "$incoming/"
in_root_deb=${incoming#"$ROOT"}/$(basename "$deb")
if [ ${#missing[@]} -gt 0 ]; then
  inroot apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
if ! inroot apt-get install -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "$in_root_deb"; then
  rm -rf "$incoming"
  die "apt could not install nkprobe $version (see above); if the config is invalid, fix $ETC/config.toml and run this again"
fi
rm -rf "$incoming" ${built:+"$built"}
say "installed the package nkprobe $version"

# --- the config ------------------------------------------------------------------------------------
# The package installed $ETC/config.toml (the shipped example, agent.name = "nkprobe"); name the agent.
[ -f "$ROOT$ETC/config.toml" ] || die "the package did not install $ETC/config.toml; reinstall it: apt-get install --reinstall nkprobe"
existing=$(config_name)
if [ "$existing" = nkprobe ]; then
  tmp=$(mktemp "$ROOT$ETC/.config.XXXXXX")
  awk -v name="$name" '
    /^[[:space:]]*\[/ { in_agent = ($0 ~ /^[[:space:]]*\[agent\]/) }
    in_agent && !done && /^name[[:space:]]*=/ { sub(/"[^"]*"/, "\"" name "\""); done = 1 }
    { print }' "$ROOT$ETC/config.toml" > "$tmp"
  cat "$tmp" > "$ROOT$ETC/config.toml"  # in place: owner and mode stay
  rm -f "$tmp"
  say "set agent.name = \"$name\" in $ETC/config.toml; edit it, then: systemctl reload nkprobe"
else
  if [ -n "$existing" ] && [ "$existing" != "$name" ]; then
    say "warning: $ETC/config.toml has agent.name = \"$existing\" but the forwarder labels series" \
      "agent=\"$name\"; make them equal (edit the config or pass --name $existing)"
  fi
  say "kept your $ETC/config.toml"
fi

# Forwarder.
mkdir -p "$ROOT$ETC" "$ROOT$UNITS"
if [ "$forwarder" != none ]; then
  if [ "$password_given" = 1 ]; then
    printf '%s' "$password" | put "$ETC/remote-write-password" 0600
  fi
  inroot chown root:root "$ETC/remote-write-password"
  {
    render "$DEPLOY/forwarder/forwarder.yml.in" "AGENT_ADDRESS=$agent_address" "AGENT_NAME=$name"
    if [ "$forwarder" = prometheus ]; then
      render "$DEPLOY/forwarder/remote-write-prometheus.yml.in" "REMOTE_WRITE_URL=$url" \
        "REMOTE_WRITE_USERNAME=$username"
    fi
  } | put "$ETC/forwarder.yml" 0644
  printf '# Generated by install.sh: rerun it to change.\nNKPROBE_REMOTE_WRITE_URL=%s\nNKPROBE_REMOTE_WRITE_USERNAME=%s\n' \
    "$url" "$username" | put "$ETC/forwarder.env" 0644
  if [ "$forwarder" = vmagent ]; then
    put "$UNITS/nkprobe-forwarder.service" 0644 < "$DEPLOY/systemd/nkprobe-forwarder.service"
  else
    put "$UNITS/nkprobe-forwarder.service" 0644 < "$DEPLOY/systemd/nkprobe-forwarder-prometheus.service"
  fi
elif [ -e "$ROOT$UNITS/nkprobe-forwarder.service" ]; then
  sysctl_ disable --now nkprobe-forwarder.service || true
  rm -f "$ROOT$UNITS/nkprobe-forwarder.service"
fi

# The config must be valid before the agent starts (exit 2 and every problem listed otherwise).
inroot /usr/bin/nkprobe check-config "$ETC/config.toml" >/dev/null \
  || die "$ETC/config.toml is invalid (see above); fix it and run this again"

# --- services ---------------------------------------------------------------------------------------
sysctl_ daemon-reload
if [ "$fresh_forwarder_pkg" = 1 ]; then
  # We installed the package only for its binary: its own server (victoria-metrics on :8428, or a full
  # Prometheus on :9090, both listening on every interface) is not wanted on a volunteer's Pi.
  sysctl_ disable --now "$forwarder_pkg.service" || true
fi
enable=(nkprobe.service nkprobe-asn-update.timer)
[ "$forwarder" = none ] || enable+=(nkprobe-forwarder.service)
sysctl_ enable "${enable[@]}"
if [ "$start" = 1 ]; then
  restart=(nkprobe.service)
  [ "$forwarder" = none ] || restart+=(nkprobe-forwarder.service)
  sysctl_ restart "${restart[@]}"
  sysctl_ start nkprobe-asn-update.timer
  # The first IP-to-AS table now rather than tonight; the agent reloads when it lands.
  sysctl_ start --no-block nkprobe-asn-update.service
fi

say "done: agent '$name'$([ "$forwarder" = none ] || echo ", pushing to $url via $forwarder")"
say "metrics: curl -s http://$agent_address/metrics | grep nkprobe_target_up"
say "logs: journalctl -u nkprobe -u nkprobe-forwarder -f"
