#!/usr/bin/env bash
# Builds nkprobe's Debian package from this checkout with Debian's own tools (dpkg-buildpackage,
# debhelper, dh-python's pybuild with its pyproject plugin), without touching the tree:
#
#   deploy/debian/build.sh [--version V] [--out DIR]
#
# writes nkprobe_VERSION_all.deb into DIR (default: the checkout's top directory), then prints its path
# on stdout. The packaging is this directory (it becomes debian/ of a copy of the source in a temporary
# directory); the systemd units come from deploy/systemd/ and /etc/nkprobe/config.toml from
# deploy/config.example.toml, so each exists once.
#   --version V   build version V (digits and dots, e.g. 0.1.0.1) instead of the release in
#                 debian/changelog: a snapshot entry is added to the changelog and agent.__version__ of
#                 the copy set to V, so `nkprobe --version` says which build is installed.
#   --out DIR     where the .deb goes.
# Needs: dpkg-dev debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools
# python3-wheel (Debian bookworm or later; `dpkg-checkbuilddeps` names what is missing).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
die() { echo "build.sh: $*" >&2; exit 2; }

version=""
out=$REPO
while [ $# -gt 0 ]; do
  case "$1" in
    --version) version=${2:?--version needs a value}; shift 2 ;;
    --out) out=${2:?--out needs a value}; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2; exit 2 ;;
    *) die "unknown argument '$1' (see $0 --help)" ;;
  esac
done
[ -z "$version" ] || [[ $version =~ ^[0-9]+(\.[0-9]+)*$ ]] \
  || die "--version '$version': use digits and dots (e.g. 0.1.0.1), a version both Debian and Python accept"
out=$(mkdir -p "$out" && cd "$out" && pwd) || die "--out $out: cannot create that directory"
if ! command -v dpkg-buildpackage >/dev/null || ! command -v dh >/dev/null; then
  die "Debian's build tools are missing: sudo apt-get install --no-install-recommends dpkg-dev debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools python3-wheel"
fi

# The release: debian/changelog's top entry, which must be agent.__version__ (one version, two files).
released=$(dpkg-parsechangelog -l "$HERE/changelog" -S Version)
code=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$REPO/agent/__init__.py")
[ "$released" = "$code" ] || [ -n "$version" ] \
  || die "deploy/debian/changelog says $released but agent/__init__.py says $code: add a changelog entry (dch -v $code) or fix one of them"

work=$(mktemp -d "${TMPDIR:-/tmp}/nkprobe-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
src=$work/nkprobe
mkdir -p "$src"
tar -C "$REPO" --exclude=__pycache__ --exclude='*.pyc' -cf - \
    pyproject.toml README.md agent deploy/config.example.toml deploy/README.md \
  | tar -C "$src" -xf -
mkdir "$src/debian"
tar -C "$HERE" --exclude=build.sh --exclude=smoke-test.sh -cf - . | tar -C "$src/debian" -xf -
# dh_installsystemd takes the package's units from debian/: nkprobe.service by the package's name, the
# others as nkprobe.UNIT.
cp "$REPO/deploy/systemd/nkprobe.service" "$src/debian/nkprobe.service"
for unit in nkprobe-asn-update.service nkprobe-asn-update.timer; do
  cp "$REPO/deploy/systemd/$unit" "$src/debian/nkprobe.$unit"
done

if [ -n "$version" ]; then
  sed -i "s/^__version__ = .*/__version__ = \"$version\"/" "$src/agent/__init__.py"
  maint=$(dpkg-parsechangelog -l "$HERE/changelog" -S Maintainer)
  {
    printf 'nkprobe (%s) unstable; urgency=medium\n\n' "$version"
    printf '  * Snapshot build of %s (deploy/debian/build.sh --version).\n\n' "$released"
    printf ' -- %s  %s\n\n' "$maint" "$(date -R)"
    cat "$HERE/changelog"
  } > "$src/debian/changelog"
fi
built=$(dpkg-parsechangelog -l "$src/debian/changelog" -S Version)

# Debian's python3 and tools only: a venv or pyenv earlier on PATH would build for another interpreter.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
unset PYTHONPATH PYTHONHOME VIRTUAL_ENV
( cd "$src" && dpkg-checkbuilddeps ) || die "install the build dependencies named above (apt-get install --no-install-recommends ...)"
( cd "$src" && dpkg-buildpackage -b -us -uc ) > "$work/build.log" 2>&1 \
  || { tail -n 40 "$work/build.log" >&2; die "dpkg-buildpackage failed (its last lines are above)"; }
deb=nkprobe_${built}_all.deb
mv -f "$work/$deb" "$out/$deb"
echo "$out/$deb"
