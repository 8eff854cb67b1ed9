#!/usr/bin/env bash
# Set up (scripts/setup.sh), start a demo WordPress site on loopback (real sshd,
# MariaDB, php-fpm, nginx and WordPress with a CDN-Enabler-like plugin) and run
# opskit's main job against it. Everything stops when the demo ends.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ "$(id -u)" != 0 ]; then
  exec sudo -E .venv/bin/python -m lab.demo "$@"
fi
exec .venv/bin/python -m lab.demo "$@"
