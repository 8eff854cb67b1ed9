"""opskit/changes/config.py beyond the data situations (test_config_edit_captures.py):
parameter checks, refusals that need no capture, the diff's format, bytes kept exactly.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from opskit.changes.config import ConfigEditParams, plan_edit, unified_diff

SITE = "/etc/nginx/sites-enabled/a"
MAIN = "/etc/nginx/nginx.conf"
NGINX_FILES = {
    MAIN: b"events {}\nhttp {\n    include sites-enabled/*;\n}\n",
    SITE: b"server {\n    server_name a.test;\n    location / {\n        fastcgi_read_timeout 60s;\n    }\n}\n",
}


def nginx_params(**changes) -> ConfigEditParams:
    values = {"file": MAIN, "format": "nginx", "directive": "fastcgi_read_timeout", "value": "120s",
              "server_name": "a.test", "location": "/", **changes}
    return ConfigEditParams(**values)


def dump_of(files: dict[str, bytes]) -> str:
    return "".join(f"# configuration file {path}:\n{data.decode()}\n" for path, data in files.items())


@pytest.mark.parametrize("changes, message", [
    ({"file": "etc/nginx/nginx.conf"}, "absolute path"),
    ({"directive": "fastcgi_read_timeout 1"}, "one directive name"),
    ({"value": ""}, "non-empty value on one line"),
    ({"value": "1\n2"}, "non-empty value on one line"),
    ({"format": "lighttpd"}, "Input should be"),
    ({"listen": "80"}, "Extra inputs are not permitted"),
])
def test_params_are_checked(changes, message):
    with pytest.raises(ValidationError, match=message):
        nginx_params(**changes)


def test_a_plan_from_the_files_alone():
    plan = plan_edit(nginx_params(), NGINX_FILES)
    assert (plan.path, plan.action, plan.line) == (SITE, "set", 4)
    assert plan.new == NGINX_FILES[SITE].replace(b"60s", b"120s") and plan.old == NGINX_FILES[SITE]
    assert plan.changes


@pytest.mark.parametrize("changes, files, reason", [
    ({"value": "1s; return 200"}, NGINX_FILES, "'1s; return 200' is not a list of nginx arguments"),
    ({"server_name": None}, NGINX_FILES, "a location needs a server_name"),
    ({"location": "~ \\.php$"}, NGINX_FILES, f"no location matches ~ \\.php$ in server[a.test] at {SITE}:1"),
    ({}, {SITE: NGINX_FILES[SITE]}, f"{MAIN} was not read from the host"),
    ({}, {**NGINX_FILES, SITE: b"server {\n"}, f"nginx would not read this config: {SITE}:1: "
                                               'unexpected end of file, expecting "}"'),
])
def test_nginx_refusals(changes, files, reason):
    plan = plan_edit(nginx_params(**changes), files)
    assert (plan.blocked, plan.action, plan.noop, plan.diff) == (reason, None, None, "")
    assert plan.new == plan.old


def test_nginx_refuses_when_the_file_changed_since_the_dump():
    dump = dump_of(NGINX_FILES)
    changed = {**NGINX_FILES, SITE: NGINX_FILES[SITE].replace(b"    server_name", b"\n    server_name")}
    plan = plan_edit(nginx_params(), changed, dump)
    assert plan.blocked == f"{SITE} differs from the copy in the nginx -T dump: it changed since, run again"
    assert plan_edit(nginx_params(), NGINX_FILES, dump).action == "set"


def test_nginx_with_a_dump_needs_the_bytes_of_the_file_it_edits():
    plan = plan_edit(nginx_params(), {MAIN: NGINX_FILES[MAIN]}, dump_of(NGINX_FILES))
    assert plan.blocked == f"{SITE} was not read from the host"


def test_nginx_http_level_when_no_server_is_named():
    plan = plan_edit(nginx_params(server_name=None, location=None, directive="proxy_read_timeout"), NGINX_FILES)
    assert (plan.path, plan.action, plan.line) == (MAIN, "add", 3)
    assert plan.new == NGINX_FILES[MAIN].replace(b"http {\n", b"http {\n    proxy_read_timeout 120s;\n")


def test_bytes_that_are_not_utf8_survive():
    latin1 = NGINX_FILES[SITE].replace(b"server {\n", b"server { # caf\xe9\n")
    plan = plan_edit(nginx_params(), {**NGINX_FILES, SITE: latin1})
    assert plan.new == latin1.replace(b"60s", b"120s")
    assert "caf\ufffd" in plan.diff   # shown, not crashed on


def test_php_fpm_refusals():
    files = {"/f/php-fpm.conf": b"[global]\ninclude=/f/pool.d/*.conf\n",
             "/f/pool.d/a.conf": b"[a]\nlisten = 1\n", "/f/pool.d/b.conf": b"[b]\nlisten = 2\n"}
    params = {"file": "/f/php-fpm.conf", "format": "php-fpm", "directive": "request_terminate_timeout", "value": "60"}
    assert plan_edit(ConfigEditParams(**params), files).blocked == "2 pools (a, b): name the pool"
    assert plan_edit(ConfigEditParams(**params, pool="b"), files).path == "/f/pool.d/b.conf"
    missing = {"/f/php-fpm.conf": b"[global]\ninclude=/f/www.conf\n"}
    assert plan_edit(ConfigEditParams(**params), missing).blocked == (
        "include=/f/www.conf (/f/php-fpm.conf:2) names a file that was not read")
    global_key = plan_edit(ConfigEditParams(**{**params, "directive": "process_control_timeout"}, pool="global"), files)
    assert global_key.new == b"[global]\ninclude=/f/pool.d/*.conf\nprocess_control_timeout=60\n"


def test_php_fpm_time_values_compare_as_times():
    files = {"/f/www.conf": b"[www]\nrequest_terminate_timeout = 60s\n"}
    plan = plan_edit(ConfigEditParams(file="/f/www.conf", format="php-fpm", directive="request_terminate_timeout",
                                      value="1m"), files)
    assert plan.noop == "request_terminate_timeout is already 60s at /f/www.conf:2 ([www])"


def test_php_ini_sections():
    files = {"/p/php.ini": b"[PHP]\nmemory_limit = 128M\n[PATH=/var/www/slow]\n"}
    params = {"file": "/p/php.ini", "format": "php-ini", "directive": "max_execution_time", "value": "300"}
    assert plan_edit(ConfigEditParams(**params, section="Session"), files).blocked == "/p/php.ini has no [Session] section"
    scoped = plan_edit(ConfigEditParams(**params, section="PATH=/var/www/slow"), files)
    assert (scoped.action, scoped.line) == ("add", 4)
    assert scoped.new == files["/p/php.ini"] + b"max_execution_time = 300\n"
    assert plan_edit(ConfigEditParams(**{**params, "value": "30"}), files).noop == (
        "max_execution_time is already 30 (the default) in [PHP]")


def test_unified_diff_marks_a_missing_last_newline():
    assert unified_diff("/x", b"a\nb", b"a\nc") == (
        "--- /x\n+++ /x\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+c\n\\ No newline at end of file\n")
    assert unified_diff("/x", b"a\n", b"a\n") == ""


HTTP_LEVEL = {
    MAIN: b"events {}\nhttp {\n    fastcgi_read_timeout 30s;\n    include sites-enabled/*;\n}\n",
    SITE: b"server {\n    server_name a.test;\n    location / {\n        fastcgi_pass unix:/run/php.sock;\n    }\n}\n",
}


def test_an_inherited_value_is_edited_where_it_is_set_by_default():
    plan = plan_edit(nginx_params(), HTTP_LEVEL)
    assert (plan.path, plan.action, plan.line) == (MAIN, "set", 3)
    assert "inherited by location /" in plan.summary


def test_override_sets_an_inherited_value_in_the_sites_own_block():
    plan = plan_edit(nginx_params(inherited="override"), HTTP_LEVEL)
    assert (plan.path, plan.action, plan.line) == (SITE, "add", 4)
    assert plan.new == HTTP_LEVEL[SITE].replace(b"location / {\n", b"location / {\n        fastcgi_read_timeout 120s;\n")
    assert plan.summary == (f"nginx: fastcgi_read_timeout 30s (inherited from {MAIN}:3) → 120s added at {SITE}:4 "
                            "(location /)")
    assert plan_edit(nginx_params(inherited="override", value="30s"), HTTP_LEVEL).noop


POOL = "/etc/php/8.2/fpm/pool.d/www.conf"
FPM_MAIN = "/etc/php/8.2/fpm/php-fpm.conf"
FPM_FILES = {FPM_MAIN: f"[global]\npid = /run/php.pid\ninclude = {POOL}\n".encode(),
             POOL: b"[www]\nuser = www\nphp_admin_value[max_execution_time] = 30\n"}


def test_a_pools_php_admin_value_is_set_in_place():
    params = ConfigEditParams(file=FPM_MAIN, format="php-fpm", directive="php_admin_value[max_execution_time]",
                              value="120", pool="www")
    plan = plan_edit(params, FPM_FILES)
    assert (plan.path, plan.action, plan.line) == (POOL, "set", 3)
    assert plan.new == FPM_FILES[POOL].replace(b"= 30", b"= 120")


APACHE = "/srv/apache/apache2.conf"
APACHE_FILES = {APACHE: b"ServerRoot /srv/apache\nTimeout 60\nProxyTimeout 2\n\n<VirtualHost 127.0.0.1:80>\n"
                        b"\tServerName site1.example.test\n\tDocumentRoot /srv/www\n</VirtualHost>\n"}


def apache_params(**changes) -> ConfigEditParams:
    return ConfigEditParams(**{"file": APACHE, "format": "apache", "directive": "ProxyTimeout", "value": "40",
                               "server_name": "site1.example.test", "server_root": "/srv/apache", **changes})


def test_apache_a_server_level_value_is_set_in_place_or_overridden_in_the_virtual_host():
    edited = plan_edit(apache_params(), APACHE_FILES)
    assert (edited.action, edited.line) == ("set", 3)
    assert edited.new == APACHE_FILES[APACHE].replace(b"ProxyTimeout 2\n", b"ProxyTimeout 40\n")
    added = plan_edit(apache_params(inherited="override"), APACHE_FILES)
    assert (added.action, added.line) == ("add", 6)
    assert added.new == APACHE_FILES[APACHE].replace(b":80>\n", b":80>\n\tProxyTimeout 40\n")   # indented like the block
    assert "(inherited from /srv/apache/apache2.conf:3)" in added.summary


def test_apache_unset_is_added_in_the_virtual_host_and_a_value_in_force_is_a_noop():
    unset = {APACHE: APACHE_FILES[APACHE].replace(b"ProxyTimeout 2\n", b"")}
    plan = plan_edit(apache_params(inherited="override"), unset)
    assert (plan.action, plan.line) == ("add", 5) and b"\tProxyTimeout 40\n\tServerName" in plan.new
    assert plan_edit(apache_params(value="2"), APACHE_FILES).noop
    assert plan_edit(apache_params(server_name=None), unset).blocked == \
        "ProxyTimeout is set nowhere and no <VirtualHost> is named to add it in"


def test_apache_a_continued_directive_is_not_rewritten():
    continued = {APACHE: APACHE_FILES[APACHE].replace(b"ProxyTimeout 2\n", b"ProxyTimeout \\\n  2\n")}
    plan = plan_edit(apache_params(), continued)
    assert plan.blocked == "the directive on line 3 goes on over several lines; edit it by hand"
