"""opskit.stack.php_errors: PHP fatals grouped by signature, in the three shapes logs write them."""

from __future__ import annotations

from pathlib import Path

from opskit.probes._collect import Collected
from opskit.stack import php_errors

CAPTURE = Path(__file__).parent.parent.parent / "captures" / "probes" / "app_errors" / "php-log-and-debug-log.txt"

FPM = ('[01-Dec-2026 10:15:00] WARNING: [pool www] child 12 said into stderr: "PHP Fatal error:  Uncaught Error: '
       'Call to undefined function foo() in /srv/wp/wp-content/plugins/shop/shop.php:17"')
NGINX = ('2026/12/01 10:15:01 [error] 7#7: *1 FastCGI sent in stderr: "PHP message: PHP Fatal error:  Allowed memory '
         'size of 134217728 bytes exhausted (tried to allocate 20480 bytes) in /srv/wp/wp-includes/class-wpdb.php '
         'on line 2056" while reading response header from upstream, client: 10.0.0.1, server: x')
TIMEOUT = "[01-Dec-2026 10:15:02 UTC] PHP Fatal error:  Maximum execution time of 30 seconds exceeded in /a.php on line 3"


def test_the_real_php_cli_log():
    tails = Collected.parse(CAPTURE.read_text()).tails
    [(_, section)] = [t for path, t in tails.items() if path.endswith("/logs/php-error.log")]
    groups = php_errors.group(section, "php-error.log")
    [first] = [g for g in groups if "opskit_capture_undefined" in g.signature]
    assert first.count == 3 and first.kind == "fatal"
    assert first.code_file.endswith("/wp-content/plugins/broken/broken.php") and first.code_line == 3
    assert first.sample.startswith("[01-Dec-2026 ") and first.first and first.last


def test_fpm_stderr_nginx_fastcgi_and_the_timeout_left_out():
    groups = php_errors.group("\n".join([FPM, NGINX, TIMEOUT, FPM.replace("10:15:00", "10:16:00")]), "mixed")
    assert [(g.count, g.code_file, g.code_line) for g in groups] == [
        (2, "/srv/wp/wp-content/plugins/shop/shop.php", 17), (1, "/srv/wp/wp-includes/class-wpdb.php", 2056)]
    assert groups[0].first == "2026-12-01T10:15:00" and groups[0].last == "2026-12-01T10:16:00"
    # long numbers are the variable part: the same exhaustion at another size is the same defect
    assert groups[1].signature.startswith("Allowed memory size of N bytes exhausted (tried to allocate N bytes)")
    assert not groups[1].signature.endswith('"')


def test_variable_parts_do_not_split_a_signature():
    a = "[01-Dec-2026 10:15:00 UTC] PHP Fatal error:  Uncaught Exception: order 123456 failed in /p/x.php:9"
    b = "[01-Dec-2026 10:15:05 UTC] PHP Fatal error:  Uncaught Exception: order 987654 failed in /p/x.php:9"
    [group] = php_errors.group(a + "\n" + b, "debug.log")
    assert group.count == 2 and "order N failed" in group.signature and group.sample == b and group.line == 2


def test_a_cut_first_line_is_dropped():
    assert php_errors.group("Fatal error:  half a line\n" + TIMEOUT, "x", partial_first_line=True) == []
