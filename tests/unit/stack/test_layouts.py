"""opskit/stack/layouts.py: the search paths are data; these check its shape and its two helpers."""

from __future__ import annotations

import pytest

from opskit.stack import layouts


def test_search_by_kind_software_and_layout():
    assert [l.path for l in layouts.search("log", "php-fpm", layouts=("debian", "cpanel"))] == [
        "/var/log/php*-fpm.log", "/opt/cpanel/ea-php*/root/usr/var/log/php-fpm/error.log"]
    pools = layouts.search("config", "php-fpm")
    assert "/etc/php/*/fpm/pool.d/*.conf" in [l.path for l in pools]
    assert "/opt/cpanel/ea-php*/root/etc/php-fpm.d/*.conf" in [l.path for l in pools]
    nginx_logs = [l.path for l in layouts.search("log", "nginx")]
    assert nginx_logs.count("/var/log/nginx/error.log") == 1   # listed by three layouts, given once
    with pytest.raises(ValueError, match="unknown layout"):
        layouts.search(layouts=("windows",))


def test_the_layouts_the_issue_names_are_there():
    paths = {l.path for l in layouts.LOCATIONS}
    for wanted in ("/etc/nginx/nginx.conf", "/etc/php/*/fpm/php-fpm.conf", "/var/log/nginx/error.log",
                   "/var/log/php*-fpm.log", "/opt/cpanel/ea-php*/root/etc/php-fpm.d/*.conf", "/etc/apache2/conf.d/*.conf",
                   "/usr/local/apache/logs/error_log", "/etc/apache2/logs/error_log",
                   "/etc/nginx/plesk.conf.d/vhosts/*.conf", "/var/www/vhosts/system/*/conf/nginx.conf",
                   "/var/www/vhosts/system/*/logs/error_log", "/opt/alt/php*/etc/php.ini", "~/logs/*",
                   "~/public_html/error_log", "{docroot}/wp-content/debug.log", "/etc/csf/csf.conf", "/proc/lve"):
        assert wanted in paths, wanted
    assert all(l.kind in ("config", "log", "killer") and l.holds for l in layouts.LOCATIONS)
    assert layouts.LOCATIONS[0].to_json()["layout"] == "debian"


def test_expand():
    assert layouts.expand("~/public_html/error_log", home="/home/bob/") == "/home/bob/public_html/error_log"
    assert layouts.expand("{docroot}/wp-content/debug.log", docroot="/srv/wp") == "/srv/wp/wp-content/debug.log"
    assert layouts.expand("~/logs/*") is None and layouts.expand("{docroot}/x") is None
    assert layouts.expand("/var/log/nginx/error.log") == "/var/log/nginx/error.log"
