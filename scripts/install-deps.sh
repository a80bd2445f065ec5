#!/usr/bin/env bash
# Install what development, tests, the demo and CI need on a fresh Debian 12 machine, then make
# .venv (Debian's python3 with its python3-* packages, plus the test tools). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  # what the .deb depends on
  python3 python3-yaml python3-requests python3-dnspython python3-netaddr python3-watchdog
  python3-systemd python3-cryptography python3-idna nftables publicsuffix
  # development, tests and the lab
  python3-venv iproute2 minisign unbound bind9 bind9-utils bind9-dnsutils knot knot-resolver
  lua-cqueues
  faketime  # the kill switch's clock-jump tests (tests/lab/test_isolation_trust.py)
  curl make
  # `make deb` and its test: build, lint, install into a debootstrap tree, systemd-analyze
  debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools python3-wheel
  debootstrap lintian systemd
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing Debian packages: ${missing[*]}" >&2
    echo "install-deps: run as root, or: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "install-deps: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d: do not start the distribution's unbound/named services; tests run their own
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import yaml, netaddr, dns' 2>/dev/null; then
  rm -rf .venv
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
stamp=.venv/.deps-$(sha256sum requirements-dev.txt pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  .venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
  .venv/bin/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e . \
    || .venv/bin/pip install -q --disable-pip-version-check --no-deps -e .
  rm -f .venv/.deps-*
  touch "$stamp"
fi
