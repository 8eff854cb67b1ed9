"""Capture `php-fpm8.2 -tt` (the effective configuration, defaults included) for
opskit.stack.phpfpm.parse_tt.

    .venv/bin/python tests/captures/refresh_phpfpm_tt.py      (as root or any user)

Writes a private php-fpm.conf and two pool files under BASE = /tmp/opskit-capture/php-fpm-tt
(pid and error_log there too: php-fpm -tt opens its error_log, and must not touch
/run/php or /var/log), runs `php-fpm8.2 -n -tt -y BASE/php-fpm.conf`, and saves the
config files and php-fpm's stderr (where -tt prints) under
tests/captures/php-fpm-8.2-debian12/tt/. No server is started: -tt tests and exits.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

OUT = Path(__file__).resolve().parent / "php-fpm-8.2-debian12" / "tt"
BASE = Path("/tmp/opskit-capture/php-fpm-tt")
PHP_FPM = "/usr/sbin/php-fpm8.2"

FILES = {
    "php-fpm.conf": f"""\
; opskit capture: a private php-fpm.conf (pid and error_log under {BASE})
[global]
pid = {BASE}/run/php-fpm.pid
error_log = {BASE}/log/php-fpm.log
include = {BASE}/pool.d/*.conf
""",
    "pool.d/site1.conf": f"""\
; a WordPress site's pool with its own timeouts
[site1]
user = nobody
group = nogroup
listen = {BASE}/run/$pool.sock
pm = ondemand
pm.max_children = 8
pm.process_idle_timeout = 10s
request_terminate_timeout = 45s
request_slowlog_timeout = 5
slowlog = {BASE}/log/$pool.slow.log
php_admin_value[max_execution_time] = 40
php_value[memory_limit] = 256M
""",
    "pool.d/site2.conf": """\
; a pool that leaves almost everything to php-fpm's defaults
[site2]
user = nobody
group = nogroup
listen = 127.0.50.9:9002
pm = static
pm.max_children = 3
""",
}


def main() -> None:
    if BASE.exists():
        shutil.rmtree(BASE)
    for name, text in FILES.items():
        (BASE / name).parent.mkdir(parents=True, exist_ok=True)
        (BASE / name).write_text(text)
    for folder in ("run", "log"):
        (BASE / folder).mkdir()
    proc = subprocess.run([PHP_FPM, "-n", "-tt", "-y", str(BASE / "php-fpm.conf")], capture_output=True, text=True,
                          env={"PATH": "/usr/sbin:/usr/bin:/bin", "LC_ALL": "C"}, timeout=30)
    if proc.returncode != 0:
        raise SystemExit(f"php-fpm -tt failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    if OUT.exists():
        shutil.rmtree(OUT)
    for name, text in FILES.items():
        (OUT / name).parent.mkdir(parents=True, exist_ok=True)
        (OUT / name).write_text(text)
    (OUT / "php-fpm-tt.txt").write_text(proc.stderr)
    version = subprocess.run([PHP_FPM, "-n", "-v"], capture_output=True, text=True).stdout.splitlines()[0]
    package = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Version}", "php8.2-fpm"],
                             capture_output=True, text=True).stdout
    (OUT / "README.md").write_text(f"""# php-fpm 8.2 -tt: the effective configuration as php-fpm prints it

- php-fpm-tt.txt: php-fpm's stderr (stdout was empty) of `{PHP_FPM} -n -tt -y {BASE}/php-fpm.conf`, made by
  `.venv/bin/python tests/captures/refresh_phpfpm_tt.py` on Debian 12 with {package} ({version}).
  -tt prints every global and pool setting, defaults included, as `[date] NOTICE: \\tkey = value` lines
  ("undefined" for an unset one), then "configuration file ... test is successful". It started no server.
- php-fpm.conf, pool.d/site1.conf and pool.d/site2.conf: the files it read (ours, written by the script under
  {BASE}; the pid and error_log are private: -tt opens the error_log).
- site1 sets request_terminate_timeout, request_slowlog_timeout (as plain seconds, printed back as "5s"), slowlog
  with $pool, pm ondemand and php_admin_value/php_value; site2 leaves them to php-fpm's defaults.
""")
    shutil.rmtree(BASE)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
