"""opskit/stack/phpfpm.py on Debian 12's php-fpm.conf and pool.d/www.conf
(tests/captures/php-fpm-8.2-debian12, copied from the php8.2-fpm package): pools,
directives with file:line:section, includes, effective values and defaults, times.
Expected line numbers were read off the files by hand.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from opskit.stack import ini, phpfpm

CAPTURE = Path(__file__).parent.parent.parent / "captures" / "php-fpm-8.2-debian12"
MAIN = "/etc/php/8.2/fpm/php-fpm.conf"
WWW = "/etc/php/8.2/fpm/pool.d/www.conf"


@pytest.fixture(scope="module")
def files() -> dict[str, str]:
    return {MAIN: (CAPTURE / "php-fpm.conf").read_text(), WWW: (CAPTURE / "pool.d" / "www.conf").read_text()}


@pytest.fixture(scope="module")
def config(files) -> phpfpm.FpmConfig:
    return phpfpm.parse(files, MAIN)


def test_pools_and_sections(config):
    assert config.pools() == ("www",)
    assert config.sections == (phpfpm.FpmSection("global", MAIN, 13, 145), phpfpm.FpmSection("www", WWW, 4, 142))
    assert config.unresolved == ()


def test_directives_with_file_line_and_section(config):
    where = {d.key: (d.file, d.line, d.section, d.value) for d in config.directives}
    assert where["pid"] == (MAIN, 19, "global", "/run/php/php8.2-fpm.pid")
    assert where["include"] == (MAIN, 145, "global", "/etc/php/8.2/fpm/pool.d/*.conf")
    assert where["listen"] == (WWW, 41, "www", "/run/php/php8.2-fpm.sock")
    assert where["pm.max_children"] == (WWW, 127, "www", "5")
    # commented out in Debian's file: not directives
    assert "request_terminate_timeout" not in where and "slowlog" not in where
    assert not any(key.startswith("php_admin_value") for key in where)


def test_effective_and_defaults(config):
    assert phpfpm.effective(config, "www", "pm.max_children").value == "5"
    terminate = phpfpm.effective(config, "www", "request_terminate_timeout")
    assert (terminate.value, terminate.directive, terminate.source) == ("0", None, "default")
    assert phpfpm.effective(config, "www", "listen.backlog").value is None
    assert phpfpm.effective(config, "www", "listen.backlog", "511").value == "511"
    assert phpfpm.effective(config, "nope", "pm.max_children").value is None


def test_pool_settings_of_debian_www(config):
    www = phpfpm.pool_settings(config, "www")
    assert (www.listen.value, www.pm_max_children.value, www.request_terminate_timeout.value,
            www.request_slowlog_timeout.value, www.slowlog.value) == ("/run/php/php8.2-fpm.sock", "5", "0", "0", None)
    assert www.php_admin_values == {} and www.php_values == {}


def test_pool_settings_with_admin_values_and_pool_names():
    files = {MAIN: "[global]\ninclude=pool.d/*.conf\n",
             "/usr/pool.d/site1.conf": ("[site1]\nlisten = /run/php/$pool.sock\nslowlog = /var/log/$pool.slow\n"
                                        "request_terminate_timeout = 30s\nrequest_terminate_timeout = 2m\n"
                                        "php_admin_value[max_execution_time] = 60\nphp_value[memory_limit]=256M\n")}
    config = phpfpm.parse(files, MAIN)   # relative include: php-fpm's prefix, /usr
    site = phpfpm.pool_settings(config, "site1")
    assert site.listen.value == "/run/php/site1.sock" and site.listen.directive.value == "/run/php/$pool.sock"
    assert site.slowlog.value == "/var/log/site1.slow"
    assert (site.request_terminate_timeout.value, site.request_terminate_timeout.directive.line) == ("2m", 5)  # the last wins
    assert {k: v.value for k, v in site.php_admin_values.items()} == {"max_execution_time": "60"}
    assert site.php_admin_values["max_execution_time"].directive.line == 6
    assert {k: v.value for k, v in site.php_values.items()} == {"memory_limit": "256M"}
    assert phpfpm.parse(files, MAIN, prefix="/opt/php").unresolved == ()   # a glob matching nothing is fine


def test_includes_keep_the_section_in_force_and_glob_order():
    files = {"/f/main.conf": "[global]\ninclude=/f/d/*.conf\n[late]\nlisten = 9\n",
             "/f/d/b.conf": "pm = static\n",
             "/f/d/a.conf": "[a]\nlisten = 1\n",
             "/f/d/.x.conf": "[hidden]\n"}
    config = phpfpm.parse(files, "/f/main.conf")
    # a.conf first (sorted); b.conf has no header: it goes on in [a], as php-fpm reads it
    assert [(d.key, d.section, d.file) for d in config.directives] == [
        ("include", "global", "/f/main.conf"), ("listen", "a", "/f/d/a.conf"), ("pm", "a", "/f/d/b.conf"),
        ("listen", "late", "/f/main.conf")]
    assert config.pools() == ("a", "late")


def test_missing_include_and_loops():
    config = phpfpm.parse({"/f/main.conf": "[global]\ninclude=/f/www.conf\n"}, "/f/main.conf")
    assert [(d.file, d.line, d.value) for d in config.unresolved] == [("/f/main.conf", 2, "/f/www.conf")]
    with pytest.raises(ValueError, match="include loop"):
        phpfpm.parse({"/f/a": "include=/f/b\n", "/f/b": "include=/f/a\n"}, "/f/a")
    with pytest.raises(ValueError, match="not among the files"):
        phpfpm.parse({}, "/f/a")


def test_edits_keep_debian_bytes(files):
    text = files[WWW]
    assert ini.set_value(text, 127, "pm.max_children", "20") == text.replace(
        "\npm.max_children = 5\n", "\npm.max_children = 20\n")
    added = ini.add_key(text, 142, "request_terminate_timeout", "120s", like=142)
    assert added == text.replace("\npm.max_spare_servers = 3\n",
                                 "\npm.max_spare_servers = 3\nrequest_terminate_timeout = 120s\n")
    assert phpfpm.effective(phpfpm.parse({**files, WWW: added}, MAIN), "www", "request_terminate_timeout").value == "120s"


@pytest.mark.parametrize("text, seconds", [
    ("0", 0), ("30", 30), ("30s", 30), ("5m", 300), ("1h", 3600), ("1d", 86400), (" 45s ", 45),
    ("", None), ("1h30m", None), ("m", None), ("-5", None), ("5x", None), ("١٢", None),
])
def test_fpm_seconds(text, seconds):
    assert phpfpm.fpm_seconds(text) == seconds


def test_same_value():
    assert phpfpm.same_value("request_terminate_timeout", "60", "1m")
    assert not phpfpm.same_value("pm.max_children", "60", "1m")
    assert phpfpm.same_value("pm.max_children", " 5", "5")
