#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite: unit tests on captured
# output and integration tests against real sshd / nginx / php-fpm / MariaDB /
# WordPress started by the suite on 127.0.0.0/8. Needs root (it starts sshd and
# creates one unix user per simulated host); extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ "$(id -u)" != 0 ]; then
  exec sudo -E .venv/bin/python -m pytest "$@"
fi
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then
  echo "test.sh: pytest collected no tests — that is a failure here, not a pass" >&2
  exit 1
fi
exit "$rc"
