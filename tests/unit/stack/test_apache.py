"""opskit/stack/apache.py on Debian 12's /etc/apache2 (tests/captures/apache-2.4-debian12, copied from
the apache2 packages by tests/captures/refresh_apache.py, with two test virtual hosts), checked
against what the real apache2 reads of it (`apache2 -t -D DUMP_INCLUDES`, `apache2 -S`).
Expected line numbers were read off the files by hand.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from opskit.stack import apache

CAPTURE = Path(__file__).parent.parent.parent / "captures" / "apache-2.4-debian12"
ROOT = CAPTURE / "etc" / "apache2"
MAIN = "/etc/apache2/apache2.conf"


def tree_files() -> dict[str, str]:
    """{/etc/apache2/...: text} as a probe reading the host's files gets them (symlinks followed)."""
    return {"/etc/apache2/" + str(p.relative_to(ROOT)): p.read_text() for p in sorted(ROOT.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def files() -> dict[str, str]:
    return tree_files()


@pytest.fixture(scope="module")
def config(files) -> apache.ApacheConfig:
    envvars = apache.parse_envvars(files["/etc/apache2/envvars"])
    return apache.parse_files(files, MAIN, variables=envvars)


def test_reads_the_files_apache_reads_in_its_order(config):
    dump = (CAPTURE / "apache2-t-DUMP_INCLUDES.txt").read_text()
    apache_order = re.findall(r"^\s+\((?:\*|\d+)\) (\S+)$", dump, re.MULTILINE)
    assert list(config.files_read) == apache_order
    assert config.unresolved == ()


def test_envvars_and_variables(files, config):
    envvars = apache.parse_envvars(files["/etc/apache2/envvars"])
    assert envvars["APACHE_LOG_DIR"] == "/var/log/apache2" and envvars["APACHE_RUN_USER"] == "www-data"
    error_logs = [(d.file, d.line, d.value) for d in config.directives if d.key == "errorlog"]
    assert error_logs == [(MAIN, 134, "/var/log/apache2/error.log"),
                          ("/etc/apache2/sites-enabled/000-default.conf", 20, "/var/log/apache2/error.log"),
                          ("/etc/apache2/sites-enabled/site1.conf", 14, "/var/log/apache2/site1-error.log")]


def test_virtual_hosts_as_apache_S_lists_them(config):
    hosts = config.virtual_hosts()
    assert [(h.label, h.file, h.line) for h in hosts] == [
        ("VirtualHost *:80", "/etc/apache2/sites-enabled/000-default.conf", 1),
        ("VirtualHost *:80", "/etc/apache2/sites-enabled/site1.conf", 2),
        ("VirtualHost *:80", "/etc/apache2/sites-enabled/site2.conf", 2)]
    dash_s = (CAPTURE / "apache2-S.txt").read_text()
    assert "namevhost site1.example.test (/etc/apache2/sites-enabled/site1.conf:2)" in dash_s
    assert "default server 127.0.0.1 (/etc/apache2/sites-enabled/000-default.conf:1)" in dash_s
    assert apache.find_virtual_host(config, "WWW.site1.example.test") == hosts[1]   # ServerAlias, any case
    assert apache.find_virtual_host(config, "unknown.test") == hosts[0]            # the default server


def test_timeouts_of_each_virtual_host(config):
    server = apache.effective(config, None, "Timeout")
    assert (server.value, server.source, server.directive.file, server.directive.line) == ("300", "set", MAIN, 92)
    site1 = apache.effective(config, "site1.example.test", "Timeout")
    assert (site1.value, site1.source) == ("300", "inherited")
    proxy1 = apache.effective(config, "site1.example.test", "ProxyTimeout")
    assert (proxy1.value, proxy1.source, proxy1.directive.line, proxy1.directive.block_path) == (
        "120", "set", 8, "VirtualHost *:80")
    # ProxyTimeout unset: Timeout's value, with Timeout's directive
    proxy2 = apache.effective(config, "site2.example.test", "ProxyTimeout")
    assert (proxy2.value, proxy2.source, proxy2.directive.name, proxy2.directive.line) == ("90", "set", "Timeout", 5)
    default_host = apache.effective(config, "unknown.test", "proxytimeout")
    assert (default_host.value, default_host.source, default_host.directive.line) == ("300", "inherited", 92)


def test_fcgid_timeouts_inside_an_unloaded_module_are_not_counted(config):
    io = apache.effective(config, "site2.example.test", "FcgidIOTimeout")
    busy = apache.effective(config, "site2.example.test", "FcgidBusyTimeout")
    assert (io.value, io.source, busy.value, busy.source) == ("40", "default", "300", "default")
    # the directives are there, with their sections
    found = [d for d in config.directives if d.key == "fcgidiotimeout"]
    assert [(d.line, d.block_path) for d in found] == [(10, "VirtualHost *:80 > IfModule mod_fcgid.c")]


def test_loaded_modules(config):
    modules = config.loaded_modules()
    assert {"proxy_fcgi_module", "mod_proxy_fcgi.c", "mpm_event_module", "mod_version.c"} <= modules
    assert "php_module" not in modules and "mod_fcgid.c" not in modules


def test_which_php_apache_talks_to(config):
    site1 = apache.php_handlers(config, "site1.example.test")
    # Debian's conf-enabled/php8.2-fpm.conf for the whole server, then the site's own (merged later: it wins)
    assert [(h.kind, h.target, h.directive.file, h.directive.line) for h in site1] == [
        ("proxy_fcgi", "unix:/run/php/php8.2-fpm.sock", "/etc/apache2/conf-enabled/php8.2-fpm.conf", 12),
        ("proxy_fcgi", "unix:/run/php/php8.2-fpm-site1.sock", "/etc/apache2/sites-enabled/site1.conf", 11)]
    assert site1[0].directive.block_path == (
        "IfModule !mod_php8.c > IfModule proxy_fcgi_module > FilesMatch .+\\.ph(?:ar|p|tml)$")
    site2 = apache.php_handlers(config, "site2.example.test")
    assert [(h.kind, h.target) for h in site2][-1] == ("proxy_fcgi", "127.0.0.1:9000")
    assert site2[-1].directive.name == "ProxyPassMatch"


def test_mod_php_when_enabled(files):
    """a2dismod mpm_event proxy_fcgi; a2enmod mpm_prefork php8.2 on the same tree."""
    changed = {p: t for p, t in files.items()
               if not p.startswith(("/etc/apache2/mods-enabled/mpm_event", "/etc/apache2/mods-enabled/proxy_fcgi"))}
    for name in ("mpm_prefork.load", "mpm_prefork.conf", "php8.2.load", "php8.2.conf"):
        changed["/etc/apache2/mods-enabled/" + name] = files["/etc/apache2/mods-available/" + name]
    config = apache.parse_files(changed, MAIN, variables=apache.parse_envvars(files["/etc/apache2/envvars"]))
    assert {"php_module", "mod_php.c"} <= config.loaded_modules()
    handlers = apache.php_handlers(config, "unknown.test")
    assert [(h.kind, h.directive.file, h.directive.line) for h in handlers] == [
        ("mod_php", "/etc/apache2/mods-enabled/php8.2.conf", 4)]   # php8.2-fpm.conf: no proxy_fcgi_module


def test_syntax():
    files = {
        "/a/httpd.conf": ("ServerRoot /a\n# a comment \\\nTimeOut 10\nDefine SITE example.test\n"
                          'ProxyPass "/app" \\\n    "unix:/run/x.sock|fcgi://localhost/" retry=0\n'
                          "<IfDefine !NOPE>\n  Include conf.d\n</IfDefine>\n"
                          "<IfDefine NOPE>\n  Timeout 1\n</IfDefine>\n"
                          "IncludeOptional /a/missing.conf\nIncludeOptional /a/none/*.conf\n"),
        "/a/conf.d/b.conf": "<VirtualHost *:80>\n ServerName ${SITE}\n Timeout 20ms\n</VirtualHost>\n",
        "/a/conf.d/sub/a.conf": "KeepAliveTimeout 3\n",
        "/a/conf.d/.hidden.conf": "Timeout 99\n",
    }
    config = apache.parse_files(files, "/a/httpd.conf")
    assert config.files_read == ("/a/httpd.conf", "/a/conf.d/.hidden.conf", "/a/conf.d/b.conf",
                                 "/a/conf.d/sub/a.conf")   # a folder: every file below it, sorted
    proxy = next(d for d in config.directives if d.key == "proxypass")
    assert (proxy.args, proxy.line) == (("/app", "unix:/run/x.sock|fcgi://localhost/", "retry=0"), 5)
    assert [d.value for d in config.directives if d.key == "timeout"] == ["10", "99", "20ms", "1"]   # read order
    assert apache.effective(config, None, "Timeout").value == "99"        # .hidden.conf is read after line 3
    site = apache.effective(config, "example.test", "Timeout")             # ${SITE} from Define
    assert (site.value, apache.seconds(site.value)) == ("20ms", 0.02)
    assert apache.effective(config, None, "KeepAliveTimeout").directive.file == "/a/conf.d/sub/a.conf"
    assert [d.line for d in config.unresolved] == [13]
    assert apache.php_handlers(config, None)[0].target == "unix:/run/x.sock"


@pytest.mark.parametrize("files, message", [
    ({"/a/m": "Include /a/nope.conf\n"}, "not among the files"),
    ({"/a/m": "Include /a/*.x\n"}, "no file matches"),
    ({"/a/m": "Include /a/n\n", "/a/n": "Include /a/m\n"}, "include loop"),
    ({"/a/m": "<VirtualHost *:80>\nTimeout 1\n"}, "was not closed"),
    ({"/a/m": "</Directory>\n"}, "without matching"),
    ({"/a/m": "<Directory />\n</Files>\n"}, "without matching"),
])
def test_errors_apache_would_refuse(files, message):
    with pytest.raises(apache.ApacheConfigError, match=message):
        apache.parse_files(files, "/a/m")


def test_defaults_and_helpers():
    config = apache.parse_files({"/a/m": "ServerName x\n"}, "/a/m")
    assert apache.effective(config, None, "Timeout").value == "60"
    assert apache.effective(config, None, "ProxyTimeout").value == "60"      # = Timeout's default
    assert apache.effective(config, "x", "FcgidIOTimeout").value == "40"
    assert config.loaded_modules() is None                                   # no LoadModule: unknown
    assert apache.proxy_target("proxy:fcgi://127.0.0.1:9000") == "127.0.0.1:9000"
    assert apache.proxy_target("fcgi://localhost:9001/var/www/$1") == "localhost:9001"
    assert apache.proxy_target("http://backend/") is None
    assert [apache.seconds(v) for v in ("300", "5s", "500ms", "x", None)] == [300.0, 5.0, 0.5, None, None]
    assert apache.split_args('a "b c" \'d e\' "f \\"g\\""') == ("a", "b c", "d e", 'f "g"')
