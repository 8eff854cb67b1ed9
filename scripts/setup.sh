#!/usr/bin/env bash
# Install everything opskit's tests and demo need on a fresh Debian 12 machine:
# the real servers (from Debian packages; their system services are never started
# by us), a virtual environment in .venv, and the project with its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
PACKAGES=(
  openssh-server openssh-client   # sshd per simulated host, ssh-keygen, ssh for the benchmark
  cron                            # the crontab command: the guard's second scheduler
  nginx-light php-fpm php-cli php-mysql mariadb-server wordpress apache2   # the WordPress stack (wordpress pulls apache2 anyway)
  nsd unbound                     # dns-check: an authoritative server and a caching resolver (lab/dns.py)
  nftables iptables               # diagnose: a firewall rule dropping the edge (tests), captured iptables-save/nft output
  chromium                        # diagnose --report FILE.html, rendered headless in the tests
  python3-venv procps util-linux passwd ca-certificates
  sudo                            # become: sudo, tested with a lab user granted NOPASSWD for one test
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # Package scripts must not start system services (we run our own copies on loopback).
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e '.[test]'
# Byte-compile the checkout: pip does not compile an editable install, and where
# PYTHONDONTWRITEBYTECODE is set nothing writes the .pyc files later either, so every
# `opskit` start (hundreds in the test suite) would compile opskit from source again.
.venv/bin/python -m compileall -q -j 0 opskit lab >/dev/null
