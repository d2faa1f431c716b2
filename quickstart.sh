#!/usr/bin/env bash
# One command from a fresh clone on Debian bookworm, Raspberry Pi OS or Ubuntu:
#   sudo ./quickstart.sh demo    install everything, then run the demo in the namespace lab
#   sudo ./quickstart.sh test    install everything, then run ruff, mypy and the whole test suite
# Everything goes into ./.venv; system packages come from apt.
set -euo pipefail
cd "$(dirname "$0")"
what=${1:-}
case "$what" in demo|test|install) ;; *) echo "usage: sudo $0 demo|test|install" >&2; exit 2 ;; esac
if [ "$(id -u)" != 0 ]; then
  echo "quickstart: the lab needs root; run: sudo $0 $what" >&2
  exit 2
fi

packages=(iproute2 python3 python3-venv python3-pip procps util-linux libcap2-bin iputils-ping nftables)
if [ "$what" = test ]; then
  # Reference tools the tests cross-check against, Debian's real Prometheus and promtool, vmagent,
  # Alertmanager and amtool, openssl (TLS test certificates), mmdebstrap (the minimal bookworm and
  # trixie roots the package and install.sh are installed in), apache2-utils (htpasswd,
  # deploy/central/setup.sh's first way to hash a password), chromium (the status page in a real
  # browser, headless), python3-websockets (bookworm's 10.4: the older websockets API the live BGP view
  # also speaks), the Debian package's build tools (deploy/debian/build.sh) and lintian.
  packages+=(traceroute mtr-tiny scamper prometheus prometheus-alertmanager shellcheck systemd
    victoria-metrics openssl mmdebstrap apache2-utils chromium python3-websockets dpkg-dev debhelper
    dh-python pybuild-plugin-pyproject python3-all python3-setuptools python3-wheel lintian)
fi
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if [ "$what" = test ]; then
  .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
else
  .venv/bin/pip install -q --disable-pip-version-check -e .
fi

case "$what" in
  demo) exec .venv/bin/nkprobe demo ;;
  test)
    .venv/bin/ruff check agent tests bench
    .venv/bin/mypy
    # pytest exits 5 when it collected no test: that is a failure here too.
    exec .venv/bin/python -m pytest -q -p no:cacheprovider ;;
  install) echo "installed: .venv/bin/nkprobe" ;;
esac
