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


# -- php-fpm -tt: tests/captures/php-fpm-8.2-debian12/tt (php-fpm8.2 -n -tt on our private config,
#    made by tests/captures/refresh_phpfpm_tt.py; line numbers read off php-fpm-tt.txt by hand)

TT = CAPTURE / "tt"


@pytest.fixture(scope="module")
def tt_text() -> str:
    return (TT / "php-fpm-tt.txt").read_text()


def test_parse_tt_pools_and_sections(tt_text):
    tt = phpfpm.parse_tt(tt_text)
    assert tt.main == phpfpm.TT_FILE and tt.pools() == ("site1", "site2")
    assert [(s.name, s.line, s.last_key_line) for s in tt.sections] == [("global", 1, 18), ("site1", 20, 62),
                                                                       ("site2", 64, 104)]
    pid = phpfpm.effective(tt, "global", "pid")
    assert (pid.value, pid.directive.line) == ("/tmp/opskit-capture/php-fpm-tt/run/php-fpm.pid", 2)


def test_parse_tt_effective_values_defaults_included(tt_text):
    tt = phpfpm.parse_tt(tt_text)
    site1 = phpfpm.pool_settings(tt, "site1")
    assert (site1.listen.value, site1.pm_max_children.value, site1.request_terminate_timeout.value,
            site1.request_slowlog_timeout.value, site1.slowlog.value) == (
        "/tmp/opskit-capture/php-fpm-tt/run/site1.sock", "8", "45s", "5s",   # $pool expanded by php-fpm; 5 → "5s"
        "/tmp/opskit-capture/php-fpm-tt/log/site1.slow.log")
    assert site1.request_terminate_timeout.directive.line == 51
    assert {k: v.value for k, v in site1.php_admin_values.items()} == {"max_execution_time": "40"}
    assert {k: v.value for k, v in site1.php_values.items()} == {"memory_limit": "256M"}
    site2 = phpfpm.pool_settings(tt, "site2")
    # what the pool file leaves out, -tt prints as php-fpm's default
    assert (site2.request_terminate_timeout.value, site2.request_terminate_timeout.directive.line) == ("0s", 95)
    assert phpfpm.fpm_seconds(site2.request_terminate_timeout.value) == 0
    assert site2.slowlog.value is None and site2.slowlog.source == "default"   # printed "undefined"
    assert phpfpm.effective(tt, "site2", "pm").value == "static"
    assert phpfpm.effective(tt, "site1", "pm.process_idle_timeout").value == "10"


def test_parse_tt_agrees_with_the_pool_files(tt_text):
    files = {f"/tmp/opskit-capture/php-fpm-tt/{p.relative_to(TT)}": p.read_text()
             for p in (TT / "php-fpm.conf", TT / "pool.d" / "site1.conf", TT / "pool.d" / "site2.conf")}
    from_files = phpfpm.parse(files, "/tmp/opskit-capture/php-fpm-tt/php-fpm.conf")
    tt = phpfpm.parse_tt(tt_text)
    for pool in ("site1", "site2"):
        for key in ("pm.max_children", "request_terminate_timeout", "listen"):
            a, b = phpfpm.pool_settings(from_files, pool), phpfpm.pool_settings(tt, pool)
            wanted = {"pm.max_children": "pm_max_children", "request_terminate_timeout": "request_terminate_timeout",
                      "listen": "listen"}[key]
            assert phpfpm.same_value(key, getattr(a, wanted).value, getattr(b, wanted).value), (pool, key)


def test_tt_succeeded_and_errors(tt_text):
    assert phpfpm.tt_succeeded(tt_text) == "/tmp/opskit-capture/php-fpm-tt/php-fpm.conf"
    failed = ("[01-Dec-2026 11:30:11] ERROR: [fpm.conf:12] unknown entry 'rlimit_cpu'\n"
              "[01-Dec-2026 11:30:11] ERROR: failed to load configuration file 'fpm.conf'\n")
    assert phpfpm.tt_succeeded(failed) is None
    with pytest.raises(ValueError, match="not the output of php-fpm -tt"):
        phpfpm.parse_tt(failed)
    undated = phpfpm.parse_tt("NOTICE: [global]\nNOTICE: \tpid = /run/x.pid\nNOTICE: [www]\nNOTICE: \tpm = ondemand\n")
    assert phpfpm.effective(undated, "www", "pm").value == "ondemand"
