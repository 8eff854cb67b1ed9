"""opskit/stack/nginx.py on a real `nginx -T` capture (tests/captures/nginx-1.22-debian12,
made by tests/captures/refresh_nginx.py): the dump's files, directives with file:line and
block path, include resolution, effective values, byte-exact edits, and the edited file
loaded by the real nginx binary.

The expected values below were read off nginx-T.txt by hand (line numbers are those
of each file in the dump), never from the parser.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from crossplane.lexer import _lex_file_object
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from lab.nginx_tree import run_nginx, write_tree
from opskit.stack import nginx

CAPTURE = Path(__file__).parent.parent.parent / "captures" / "nginx-1.22-debian12" / "nginx-T.txt"
PREFIX = "/tmp/opskit-capture/nginx"
ETC = PREFIX + "/etc/nginx"
SITE = ETC + "/sites-enabled/example.com"
SERVER = ("http", "server[example.com]")
PHP = "~ \\.php$"


@pytest.fixture(scope="module")
def dump() -> str:
    return CAPTURE.read_bytes().decode("utf-8")


@pytest.fixture(scope="module")
def config(dump) -> nginx.NginxConfig:
    return nginx.parse_dump(dump)


def find(config, name, file=None, line=None):
    found = [d for d in config.directives if d.name == name and (file is None or d.file == file)
             and (line is None or d.line == line)]
    assert len(found) == 1, found
    return found[0]


# -- the dump -----------------------------------------------------------------

def test_dump_lists_every_file_once_in_nginx_order(dump):
    files = nginx.split_dump(dump)
    assert list(files) == [ETC + "/nginx.conf", ETC + "/mime.types", ETC + "/conf.d/timeouts.conf",
                           ETC + "/conf.d/upstreams.conf", ETC + "/sites-enabled/default", SITE,
                           ETC + "/snippets/wordpress.conf", ETC + "/snippets/fastcgi-php.conf", ETC + "/fastcgi.conf"]
    # nginx prints "# configuration file PATH:\n" + the file + "\n": the split gives it back exactly
    assert "".join(f"# configuration file {path}:\n{text}\n" for path, text in files.items()) == dump
    assert files[ETC + "/conf.d/timeouts.conf"] == (
        "# opskit capture: fleet-wide settings (http context, included by nginx.conf)\n"
        "proxy_read_timeout 90s;\nclient_max_body_size 64m;\n")


def test_dump_ignores_what_stderr_printed_first(dump):
    with_stderr = "nginx: the configuration file /x syntax is ok\nnginx: configuration file /x test is successful\n" + dump
    assert nginx.split_dump(with_stderr) == nginx.split_dump(dump)


def test_not_a_dump_is_refused():
    with pytest.raises(nginx.NginxConfigError, match="not the output of nginx -T"):
        nginx.parse_dump("nginx: [emerg] unknown directive \"foo\"\n")


# -- directives, blocks, includes -----------------------------------------------

def test_directive_file_line_and_block_path(config):
    in_php = find(config, "fastcgi_read_timeout", SITE)
    assert (in_php.args, in_php.line, in_php.block) == (("120s",), 29, (*SERVER, f"location {PHP}"))
    assert in_php.block_path == "http > server[example.com] > location ~ \\.php$"
    at_http = find(config, "fastcgi_read_timeout", ETC + "/nginx.conf")
    assert (at_http.args, at_http.line, at_http.block_path) == (("300s",), 30, "http")
    assert find(config, "worker_processes").block == ()
    assert find(config, "worker_connections").block_path == "events"


def test_includes_resolved_from_the_dump(config):
    # a conf.d glob inside http
    assert find(config, "proxy_read_timeout", ETC + "/conf.d/timeouts.conf").block == ("http",)
    # a snippet included inside the example.com server block, with its own locations
    from_snippet = find(config, "proxy_read_timeout", ETC + "/snippets/wordpress.conf")
    assert (from_snippet.line, from_snippet.block) == (2, SERVER)
    hidden = [b for b in config.blocks if b.file == ETC + "/snippets/wordpress.conf" and b.name == "location"]
    assert [b.block_path for b in hidden] == ["http > server[example.com] > location = /favicon.ico",
                                               "http > server[example.com] > location ~ /\\.(?!well-known)"]
    # a chain: example.com → snippets/fastcgi-php.conf (relative to the main file's folder) → fastcgi.conf
    params = [d for d in config.directives if d.file == ETC + "/fastcgi.conf" and d.name == "fastcgi_param"]
    assert len(params) == 21 and {d.block for d in params} == {(*SERVER, f"location {PHP}")}
    assert find(config, "include", ETC + "/snippets/fastcgi-php.conf").line == 13
    # the mime types of the main file's relative include
    assert find(config, "types").block == ("http",)
    assert config.unresolved == ()


def test_comments_and_quoted_semicolons(config):
    note = find(config, "add_header", SITE)
    assert (note.args, note.line) == (("X-Opskit-Note", "a;b #not a comment", "always"), 20)
    assert find(config, "fastcgi_send_timeout", SITE).line == 20   # the second directive on that line
    assert find(config, "server_name", SITE, 14).args == ("example.com",)   # its trailing comment is no argument
    # Debian's default site: its commented-out PHP location is not read
    default_site = [d.name for d in config.directives if d.file == ETC + "/sites-enabled/default"]
    assert "fastcgi_pass" not in default_site and default_site.count("location") == 1


def test_block_ranges(config):
    by_path = {b.block_path: b for b in config.blocks}
    server = by_path["http > server[example.com]"]
    assert (server.file, server.line, server.open_line, server.close_line) == (SITE, 11, 11, 37)
    xmlrpc = by_path["http > server[example.com] > location = /xmlrpc.php"]
    assert (xmlrpc.open_line, xmlrpc.close_line) == (36, 36)
    http = by_path["http"]
    assert (http.file, http.open_line, http.close_line) == (ETC + "/nginx.conf", 12, 74)
    assert by_path["http > server[www.example.com]"].close_line == 9
    assert [d.name for d in config.children(by_path[f"http > server[example.com] > location {PHP}"])][:3] == [
        "include", "fastcgi_split_path_info", "try_files"]


def small(*files: tuple[str, str]) -> str:
    return "".join(f"# configuration file {path}:\n{text}\n" for path, text in files)


def test_include_paths_and_globs():
    dump = small(("/etc/nginx/nginx.conf", "http { include /etc/nginx/conf.d/*.conf; include extra.conf; "
                                           "include sites/[ab]*; include sites/none-*.conf; }\n"),
                 ("/etc/nginx/conf.d/b.conf", "b on;\n"),
                 ("/etc/nginx/conf.d/.hidden.conf", "hidden on;\n"),
                 ("/etc/nginx/conf.d/a.conf", "a on;\n"),
                 ("/etc/nginx/conf.d/sub/c.conf", "c on;\n"),
                 ("/etc/nginx/extra.conf", "extra on;\n"),
                 ("/etc/nginx/sites/bsite", "bsite on;\n"),
                 ("/etc/nginx/sites/csite", "csite on;\n"))
    config = nginx.parse_dump(dump)
    # glob results sorted; '*' neither matches a leading dot nor crosses '/'; no match is no error
    assert [d.name for d in config.directives if d.name != "include"] == ["http", "a", "b", "extra", "bsite"]
    assert config.unresolved == ()


def test_include_of_a_missing_plain_file_is_unresolved():
    config = nginx.parse_files({"/etc/nginx/nginx.conf": "http {\n  include /etc/nginx/gone.conf;\n}\n"},
                               "/etc/nginx/nginx.conf")
    assert [(d.file, d.line, d.args) for d in config.unresolved] == [("/etc/nginx/nginx.conf", 2, ("/etc/nginx/gone.conf",))]


def test_a_file_included_twice_is_read_at_both_places():
    config = nginx.parse_dump(small(
        ("/etc/nginx/nginx.conf", "http {\n server { server_name a; include t.conf; }\n server { server_name b; include t.conf; }\n}\n"),
        ("/etc/nginx/t.conf", "fastcgi_read_timeout 90s;\n")))
    assert [d.block for d in config.directives if d.name == "fastcgi_read_timeout"] == [
        ("http", "server[a]"), ("http", "server[b]")]


@pytest.mark.parametrize("text, reason, line", [
    ("http {\n  server {\n}\n", 'unexpected end of file, expecting "}"', 3),
    ("http {\n}\n}\n", 'unexpected "}"', 3),
    ("http {\n  ;\n}\n", 'unexpected ";"', 2),
    ("events { worker_connections 1 }\n", 'unexpected "}" after "worker_connections"', 1),
    ("worker_processes 2\n", 'unexpected end of file after "worker_processes", expecting ";" or "}"', 1),
])
def test_syntax_errors_name_file_and_line(text, reason, line):
    with pytest.raises(nginx.NginxConfigError) as error:
        nginx.parse_files({"/etc/nginx/nginx.conf": text}, "/etc/nginx/nginx.conf")
    assert (error.value.reason, error.value.file, error.value.line) == (reason, "/etc/nginx/nginx.conf", line)


def test_include_loop_is_refused():
    files = {"/n/a.conf": "include b.conf;\n", "/n/b.conf": "include a.conf;\n"}
    with pytest.raises(nginx.NginxConfigError, match="include loop: /n/a.conf -> /n/b.conf -> /n/a.conf"):
        nginx.parse_files(files, "/n/a.conf")


# -- effective values ---------------------------------------------------------------

@pytest.mark.parametrize("server, location, name, value, source, where", [
    ("example.com", PHP, "fastcgi_read_timeout", "120s", "set", (SITE, 29)),
    ("example.com", "/", "fastcgi_read_timeout", "300s", "inherited", (ETC + "/nginx.conf", 30)),
    ("example.com", "/", "proxy_read_timeout", "75s", "inherited", (ETC + "/snippets/wordpress.conf", 2)),
    ("example.com", None, "proxy_read_timeout", "75s", "set", (ETC + "/snippets/wordpress.conf", 2)),
    ("www.example.com", None, "proxy_read_timeout", "90s", "inherited", (ETC + "/conf.d/timeouts.conf", 2)),
    ("example.com", "/wp-admin/", "client_max_body_size", "256m", "set", (SITE, 33)),
    ("example.com", None, "send_timeout", "60s", "default", None),
    ("example.com", PHP, "uwsgi_read_timeout", "60s", "default", None),
    (None, None, "fastcgi_read_timeout", "300s", "set", (ETC + "/nginx.conf", 30)),
    # no server has this name: nginx answers with the default_server (Debian's default site)
    ("unknown.example", "/", "proxy_read_timeout", "90s", "inherited", (ETC + "/conf.d/timeouts.conf", 2)),
    # URIs: a regex location wins over the longest prefix, as in nginx
    ("example.com", "/index.php", "fastcgi_read_timeout", "120s", "set", (SITE, 29)),
    ("example.com", "/wp-admin/post.php", "client_max_body_size", "64m", "inherited", (ETC + "/conf.d/timeouts.conf", 3)),
    ("example.com", "/wp-admin/css/a.css", "client_max_body_size", "256m", "set", (SITE, 33)),
])
def test_effective(config, server, location, name, value, source, where):
    got = nginx.effective(config, server, location, name)
    assert (got.value, got.source) == (value, source)
    assert (got.directive.file, got.directive.line) == where if where else got.directive is None


def test_effective_with_a_given_default(config):
    assert nginx.effective(config, "example.com", "/", "fastcgi_buffers", "8 4k").value == "8 4k"
    assert nginx.effective(config, "example.com", "/", "fastcgi_buffers").value is None


def test_servers_and_locations(config):
    assert [nginx.server_names(config, s) for s in nginx.servers(config)] == [
        ("_",), ("www.example.com",), ("example.com",)]
    assert nginx.default_server(config).label == "server[_]"
    assert nginx.servers_named(config, "EXAMPLE.com")[0].label == "server[example.com]"
    server = nginx.servers_named(config, "example.com")[0]
    assert nginx.find_location(config, server, "=   /xmlrpc.php").label == "location = /xmlrpc.php"
    assert nginx.find_location(config, server, "/xmlrpc.php").label == "location = /xmlrpc.php"
    assert nginx.find_location(config, server, "/.git/config").label == "location ~ /\\.(?!well-known)"
    assert nginx.find_location(config, server, "/.well-known/x").label == "location /"
    assert nginx.find_location(config, server, "@fallback") is None


def test_uri_matching_prefix_rules():
    config = nginx.parse_files({"/n.conf": """http { server { server_name s;
        location / { }
        location ^~ /static/ { location ~ \\.gz$ { } }
        location /api/ { location /api/v2/ { } }
        location ~* \\.JPG$ { }
        location =/exact { }
        location ~ (?<name>x) { }
    } }
"""}, "/n.conf")
    server = nginx.servers(config)[0]
    label = lambda uri: nginx.find_location(config, server, uri).label  # noqa: E731
    assert label("/static/a.jpg") == "location ^~ /static/"          # ^~ stops the regexes of its level
    assert label("/static/a.gz") == "location ~ \\.gz$"              # ...not the nested ones
    assert label("/api/v2/x") == "location /api/v2/"
    assert label("/photo.jpg") == "location ~* \\.JPG$"              # ~* is case-insensitive
    assert label("/exact") == "location =/exact"
    assert label("/other") == "location /"                          # a PCRE-only regex is skipped


# -- edits --------------------------------------------------------------------------

def test_set_directive_keeps_every_other_byte(config):
    text = config.files[SITE]
    got = nginx.set_directive(text, 29, "fastcgi_read_timeout", ["300s"])
    assert got == text.replace("\t\tfastcgi_read_timeout 120s; # the importer needs two minutes\n",
                               "\t\tfastcgi_read_timeout 300s; # the importer needs two minutes\n")
    assert got != text


def test_set_the_second_directive_of_a_line(config):
    text = config.files[SITE]
    line_20 = '\tadd_header X-Opskit-Note "a;b #not a comment" always; fastcgi_send_timeout 45s;\n'
    got = nginx.set_directive(text, 20, "fastcgi_send_timeout", ["90s"])
    assert got == text.replace(line_20, line_20.replace("45s", "90s"))
    got = nginx.set_directive(text, 20, "add_header", ["X-Opskit-Note", "c d;e", "always"])
    assert got == text.replace(line_20, "\tadd_header X-Opskit-Note 'c d;e' always; fastcgi_send_timeout 45s;\n")


def test_set_inside_a_one_line_block(config):
    text = config.files[SITE]
    got = nginx.set_directive(text, 36, "access_log", ["/var/log/nginx/xmlrpc.log"])
    assert got == text.replace("{ deny all; access_log off; }", "{ deny all; access_log /var/log/nginx/xmlrpc.log; }")


def test_set_a_directive_written_over_several_lines():
    text = "http {\n    keepalive_timeout   # idle\n        75s\n        60s ;\n}\n"
    assert nginx.set_directive(text, 2, "keepalive_timeout", ["30s"]) == "http {\n    keepalive_timeout   # idle\n        30s ;\n}\n"


def test_set_refuses_a_line_without_the_directive(config):
    with pytest.raises(ValueError, match="no fastcgi_read_timeout directive starts on line 28"):
        nginx.set_directive(config.files[SITE], 28, "fastcgi_read_timeout", ["1s"])
    with pytest.raises(ValueError, match="at least one argument"):
        nginx.set_directive(config.files[SITE], 29, "fastcgi_read_timeout", [])


def test_add_directive_in_a_location(config):
    text = config.files[SITE]
    got = nginx.add_directive(text, 22, "fastcgi_read_timeout", ["600s"])
    assert got == text.replace("\tlocation / {\n", "\tlocation / {\n\t\tfastcgi_read_timeout 600s;\n")
    assert nginx.insertion_line(text, 22) == 23


def test_add_directive_in_a_server_and_in_http(config):
    text = config.files[SITE]
    got = nginx.add_directive(text, 11, "send_timeout", ["90s"])
    assert got == text.replace("}\n\nserver {\n\tlisten 80;\n\tlisten [::]:80;\n\tserver_name example.com;",
                               "}\n\nserver {\n\tsend_timeout 90s;\n\tlisten 80;\n\tlisten [::]:80;\n\tserver_name example.com;")
    main = config.files[ETC + "/nginx.conf"]
    # http's first line inside is blank and the next a comment: indented like its first directive
    assert nginx.add_directive(main, 12, "send_timeout", ["90s"]) == main.replace("http {\n", "http {\n\tsend_timeout 90s;\n")


def test_add_directive_in_a_one_line_block(config):
    text = config.files[SITE]
    got = nginx.add_directive(text, 36, "fastcgi_read_timeout", ["10s"])
    assert got == text.replace("{ deny all;", "{ fastcgi_read_timeout 10s; deny all;")
    assert nginx.insertion_line(text, 36) == 36


@pytest.mark.parametrize("text, expected", [
    ("server {\n    location / {\n    }\n}\n", "server {\n    location / {\n        x 1;\n    }\n}\n"),
    ("server {\n\tlocation / {\n\t}\n}\n", "server {\n\tlocation / {\n\t\tx 1;\n\t}\n}\n"),
    ("server {\r\n  location / { # empty\r\n  }\r\n}\r\n", "server {\r\n  location / { # empty\r\n    x 1;\r\n  }\r\n}\r\n"),
    ("location / {", "location / {\n    x 1;\n"),
])
def test_add_directive_in_an_empty_block(text, expected):
    assert nginx.add_directive(text, text.count("\n", 0, text.index("location")) + 1, "x", ["1"]) == expected


def test_add_directive_with_an_indent_and_quoting():
    text = "server {\n  listen 80;\n}\n"
    assert nginx.add_directive(text, 1, "add_header", ["X-A", "#1 a;b"], indent="\t") == (
        "server {\n\tadd_header X-A '#1 a;b';\n  listen 80;\n}\n")
    with pytest.raises(ValueError, match="no block opens on line 2"):
        nginx.add_directive(text, 2, "x", ["1"])


@pytest.mark.parametrize("arg, written", [
    ("120s", "120s"), ("a b", "'a b'"), ("a;b", "'a;b'"), ("#x", "'#x'"), ("a#b", "a#b"), ("", "''"),
    ("it's", '"it\'s"'), ("$host", "$host"), ("{x}", "'{x}'"),
])
def test_quote_arg(arg, written):
    assert nginx.quote_arg(arg) == written
    token, = nginx.tokenize(written)   # nginx reads it back as one argument with the same text
    assert token.value == arg


# -- the tokenizer agrees with crossplane's lexer -----------------------------------------

def test_tokenizer_agrees_with_crossplane_on_the_capture(config):
    for path, text in config.files.items():
        mine = [(t.value, t.line, t.kind == "quoted") for t in nginx.tokenize(text)]
        assert mine == list(_lex_file_object(io.StringIO(text))), path


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(list("ab;{}#\"'\\$ \n\t")), max_size=30).map("".join))
def test_tokenizer_agrees_with_crossplane_on_any_text(text):
    # Left out, where crossplane itself is off: an unterminated quote (it drops it),
    # `${` (it glues the next space to the token) and an escaped newline (it counts a line early).
    text += "\n;\n"
    assume("${" not in text and "\\\n" not in text)
    tokens = nginx.tokenize(text)
    assume(all(t.end - t.start >= 2 and text[t.end - 1] == text[t.start] for t in tokens if t.kind == "quoted"))
    assert [(t.value, t.line, t.kind == "quoted") for t in tokens] == list(_lex_file_object(io.StringIO(text)))


# -- times ----------------------------------------------------------------------------

@pytest.mark.parametrize("text, seconds", [
    ("60", 60), ("60s", 60), ("1m", 60), ("1m30s", 90), ("1h 30m", 5400), ("500ms", 0.5), ("2d", 172800),
    ("1w", 604800), ("1M", 2592000), ("1y", 31536000), ("", None), ("s", None), ("1x", None), ("30 1m", None),
    ("1m ", 60), (" 1m", None), ("1m 30", 90),
])
def test_nginx_seconds(text, seconds):
    assert nginx.nginx_seconds(text) == seconds


def test_same_value():
    assert nginx.same_value("fastcgi_read_timeout", ["60"], ["1m"])
    assert not nginx.same_value("client_max_body_size", ["1m"], ["60"])   # a size, not a time
    assert nginx.same_value("client_max_body_size", ["1m"], ["1m"])
    assert not nginx.same_value("keepalive_timeout", ["75s", "60s"], ["75s"])


# -- the real nginx reads the edited file ---------------------------------------------------

def rebuilt_tree(config, root: Path, edits: dict[str, str]) -> None:
    """The capture's files written under `root` (prefix stripped), some of them edited."""
    files = {path[len(PREFIX):]: edits.get(path, text) for path, text in config.files.items()}
    write_tree(root, files)


def test_nginx_t_accepts_the_edited_file(config, tmp_path):
    text = config.files[SITE]
    edited = nginx.add_directive(nginx.set_directive(text, 29, "fastcgi_read_timeout", ["300s"]),
                                 22, "fastcgi_read_timeout", ["10m"])
    rebuilt_tree(config, tmp_path, {SITE: edited})
    proc = run_nginx(tmp_path, "/etc/nginx/nginx.conf")
    assert proc.returncode == 0, proc.stderr
    assert "test is successful" in proc.stderr


def test_nginx_t_refuses_a_broken_edit(config, tmp_path):
    # proves the check above is real: nginx does read the edited copy
    broken = nginx.set_directive(config.files[SITE], 29, "fastcgi_read_timeout", ["soon"])
    rebuilt_tree(config, tmp_path, {SITE: broken})
    proc = run_nginx(tmp_path, "/etc/nginx/nginx.conf")
    assert proc.returncode != 0
    assert '"fastcgi_read_timeout" directive invalid value' in proc.stderr and "example.com:29" in proc.stderr
