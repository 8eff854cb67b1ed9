"""nginx configuration as nginx reads it: the files of an `nginx -T` dump, their
directives with file:line and block path, the value a directive really has in a
server/location (nginx's inheritance and defaults), and edits that keep every
other byte of a file.

    config = parse_dump(dump)                          # the stdout of `nginx -T`
    value = effective(config, "example.com", "~ \\\\.php$", "fastcgi_read_timeout")
    value.value, value.source                          # ('120s', 'set')
    value.directive.file, value.directive.line         # ('/etc/nginx/sites-enabled/example.com', 29)
    value.directive.block_path                         # 'http > server[example.com] > location ~ \\\\.php$'
    new_text = set_directive(text, 29, "fastcgi_read_timeout", ["300s"])

Each file is lexed with crossplane; `include` is resolved from the dump's own
file map (never from this machine's disk), the way nginx does it: a relative path
is relative to the main file's folder, a pattern with * ? [ is a glob (sorted, no
match is fine), a plain path must exist.

Limits of the matching (document, not guess): server_name matches exact names only
(case-insensitive; no *.wildcards or ~regex names), then the default_server, then
the first server, and `listen` ports are not compared. A location is found by its
own text ("~ \\\\.php$", "/wp-admin/") or, for a URI ("/wp-admin/post.php"), by
nginx's order: exact =, longest prefix (^~ stops there), nested locations, then
regexes in order with Python's re (a PCRE-only pattern Python cannot compile is
skipped). Directives inside `if` blocks are not counted: they apply only sometimes.
The edit tokenizer does not know the *_by_lua_block syntax.
"""

from __future__ import annotations

import io
import posixpath
import re
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping, Sequence

from crossplane.builder import _enquote
from crossplane.errors import NgxParserSyntaxError
from crossplane.lexer import _balance_braces, _lex_file_object

from opskit.stack import globs
from opskit.stack.effective import EffectiveValue
from opskit.stack.lines import insert_line, leading_space, split_lines

# nginx's documented defaults of the directives opskit reads and tunes.
DEFAULTS: dict[str, str] = {
    "fastcgi_read_timeout": "60s",
    "fastcgi_send_timeout": "60s",
    "fastcgi_connect_timeout": "60s",
    "proxy_read_timeout": "60s",
    "proxy_send_timeout": "60s",
    "proxy_connect_timeout": "60s",
    "uwsgi_read_timeout": "60s",
    "scgi_read_timeout": "60s",
    "send_timeout": "60s",
    "client_body_timeout": "60s",
    "client_header_timeout": "60s",
    "keepalive_timeout": "75s",
    "client_max_body_size": "1m",
}

# Directives whose value is a time: "60", "60s" and "1m" are the same setting.
TIME_DIRECTIVES = frozenset(name for name in DEFAULTS if name.endswith("_timeout"))

_HEADER = re.compile(r"^# configuration file (.+):\n", re.MULTILINE)
_MODIFIERS = ("=", "^~", "~*", "~", "@")


class NginxConfigError(ValueError):
    """A file that nginx would refuse to read (unbalanced braces, a stray `;`, an include loop)."""

    def __init__(self, reason: str, file: str, line: int | None = None):
        super().__init__(f"{file}:{line}: {reason}" if line else f"{file}: {reason}")
        self.reason, self.file, self.line = reason, file, line


@dataclass(frozen=True)
class Directive:
    name: str
    args: tuple[str, ...]
    file: str
    line: int
    block: tuple[str, ...] = ()   # labels of the enclosing blocks, outermost first
    parent: int | None = None     # index in NginxConfig.blocks of the enclosing block (None: main context)
    opens: int | None = None      # index in NginxConfig.blocks of the block this directive opens

    @property
    def block_path(self) -> str:
        return " > ".join(self.block)

    @property
    def value(self) -> str:
        return " ".join(self.args)


@dataclass(frozen=True)
class Block:
    index: int
    name: str
    args: tuple[str, ...]
    label: str                 # "http", "server[example.com]", "location ~ \\.php$"
    path: tuple[str, ...]      # labels from the outermost block down to this one
    file: str
    line: int                  # the line of the block's name
    open_line: int             # the line of its `{`
    close_line: int            # the line of its `}` (always in the same file)
    parent: int | None

    @property
    def block_path(self) -> str:
        return " > ".join(self.path)


@dataclass(frozen=True)
class NginxConfig:
    main: str
    files: Mapping[str, str]
    directives: tuple[Directive, ...]
    blocks: tuple[Block, ...]
    unresolved: tuple[Directive, ...] = ()   # includes of a plain path that is not in the file map

    def children(self, block: Block | None) -> tuple[Directive, ...]:
        """The directives directly inside `block` (None: the main context), included ones too."""
        index = block.index if block is not None else None
        return tuple(d for d in self.directives if d.parent == index)

    def child_blocks(self, block: Block | None, name: str) -> tuple[Block, ...]:
        index = block.index if block is not None else None
        return tuple(b for b in self.blocks if b.parent == index and b.name == name)

    def ancestors(self, block: Block) -> tuple[Block, ...]:
        """`block` and the blocks around it, narrowest first."""
        chain = [block]
        while chain[-1].parent is not None:
            chain.append(self.blocks[chain[-1].parent])
        return tuple(chain)


# -- the dump ---------------------------------------------------------------

def split_dump(text: str) -> dict[str, str]:
    """`nginx -T` stdout → {path: text}, main file first. nginx prints each file as
    "# configuration file PATH:\\n" + its bytes + "\\n"; anything before the first
    header (the "syntax is ok" lines of a 2>&1 capture) is not a file. A file's text
    that itself holds such a header line would be split there: nginx gives no way to tell."""
    headers = list(_HEADER.finditer(text))
    files: dict[str, str] = {}
    for number, header in enumerate(headers):
        last = number == len(headers) - 1
        body = text[header.end(): len(text) if last else headers[number + 1].start()]
        if body.endswith("\n"):
            body = body[:-1]   # the newline nginx adds after each file
        files.setdefault(header.group(1), body)
    return files


def parse_dump(text: str) -> NginxConfig:
    """The configuration in an `nginx -T` capture; raises NginxConfigError when it is not one."""
    files = split_dump(text)
    if not files:
        raise NginxConfigError("no '# configuration file PATH:' line: not the output of nginx -T", "<dump>")
    return parse_files(files, next(iter(files)))


def parse_files(files: Mapping[str, str], main: str) -> NginxConfig:
    """The configuration starting at `main`, its includes taken from `files` ({path: text})."""
    if main not in files:
        raise NginxConfigError("the main file is not among the files", main)
    conf_dir = posixpath.dirname(main)
    nodes = _read_file(main, files, conf_dir, including=())
    return _flatten(main, files, nodes)


# -- lexing and the tree ----------------------------------------------------

@dataclass
class _Node:
    name: str
    args: tuple[str, ...]
    file: str
    line: int
    children: list[_Node] | None = None   # None: a simple directive
    open_line: int = 0
    close_line: int = 0
    unresolved: bool = False


def _lex(text: str, file: str) -> list[tuple[str, int, bool]]:
    # crossplane.lex() only reads from disk; its lexer takes any file object.
    try:
        return list(_balance_braces(_lex_file_object(io.StringIO(text)), file))
    except NgxParserSyntaxError as error:
        raise NginxConfigError(error.strerror, file, error.lineno) from None


def _nodes(tokens: list[tuple[str, int, bool]], file: str) -> list[_Node]:
    """crossplane's tokens → the file's statements, blocks holding their children."""
    top: list[_Node] = []
    levels: list[list[_Node]] = [top]
    open_blocks: list[_Node] = []
    words: list[tuple[str, int]] = []
    for token, line, quoted in tokens:
        if not quoted and token.startswith("#"):
            continue   # a comment: '#' starts one only where a token starts
        if quoted or token not in (";", "{", "}"):
            words.append((token, line))
        elif token == "}":
            if words:
                raise NginxConfigError(f'unexpected "}}" after "{words[0][0]}"', file, line)
            block = open_blocks.pop()
            block.close_line = line
            levels.pop()
        else:
            if not words:
                raise NginxConfigError(f'unexpected "{token}"', file, line)
            node = _Node(words[0][0], tuple(w for w, _ in words[1:]), file, words[0][1])
            levels[-1].append(node)
            if token == "{":
                node.children, node.open_line = [], line
                open_blocks.append(node)
                levels.append(node.children)
            words = []
    if words:
        raise NginxConfigError(f'unexpected end of file after "{words[0][0]}", expecting ";" or "}}"', file, words[-1][1])
    return top


def _read_file(path: str, files: Mapping[str, str], conf_dir: str, including: tuple[str, ...]) -> list[_Node]:
    if path in including:
        raise NginxConfigError("include loop: " + " -> ".join((*including, path)), path)
    nodes = _nodes(_lex(files[path], path), path)
    return _expand_includes(nodes, files, conf_dir, (*including, path))


def _expand_includes(nodes: list[_Node], files: Mapping[str, str], conf_dir: str,
                     including: tuple[str, ...]) -> list[_Node]:
    """Each include followed by the statements of the files it names, at its place."""
    expanded: list[_Node] = []
    for node in nodes:
        expanded.append(node)
        if node.children is not None:
            node.children = _expand_includes(node.children, files, conf_dir, including)
        elif node.name == "include" and len(node.args) == 1:
            targets = include_targets(node.args[0], conf_dir, files)
            node.unresolved = targets is None
            for target in targets or ():
                expanded.extend(_read_file(target, files, conf_dir, including))
    return expanded


def include_targets(pattern: str, conf_dir: str, paths: Iterable[str]) -> list[str] | None:
    """The paths an `include pattern;` reads, in nginx's order; None when a plain
    (non-glob) path is not among `paths` (nginx would refuse the config). A relative
    pattern is relative to the main file's folder (nginx's conf prefix)."""
    full = pattern if pattern.startswith("/") else conf_dir.rstrip("/") + "/" + pattern
    return globs.expand(full, paths)


def _label(node: _Node) -> str:
    if node.name == "server":
        names = next((child.args for child in node.children or () if child.name == "server_name" and child.args), ())
        return f"server[{names[0]}]" if names else "server"
    return " ".join((node.name, *node.args))


def _flatten(main: str, files: Mapping[str, str], nodes: list[_Node]) -> NginxConfig:
    directives: list[Directive] = []
    blocks: list[Block] = []
    unresolved: list[Directive] = []

    def visit(children: list[_Node], parent: int | None, path: tuple[str, ...]) -> None:
        for node in children:
            opens = len(blocks) if node.children is not None else None
            directive = Directive(node.name, node.args, node.file, node.line, path, parent, opens)
            directives.append(directive)
            if node.unresolved:
                unresolved.append(directive)
            if node.children is not None:
                label = _label(node)
                blocks.append(Block(opens, node.name, node.args, label, (*path, label), node.file, node.line,
                                    node.open_line, node.close_line, parent))
                visit(node.children, opens, (*path, label))

    visit(nodes, None, ())
    return NginxConfig(main, dict(files), tuple(directives), tuple(blocks), tuple(unresolved))


# -- servers, locations and the value a directive has there -------------------

def http_block(config: NginxConfig) -> Block | None:
    return next(iter(config.child_blocks(None, "http")), None)


def servers(config: NginxConfig) -> tuple[Block, ...]:
    """The http server blocks, in file order."""
    return tuple(s for http in config.child_blocks(None, "http") for s in config.child_blocks(http, "server"))


def server_names(config: NginxConfig, server: Block) -> tuple[str, ...]:
    return tuple(arg for d in config.children(server) if d.name == "server_name" for arg in d.args)


def servers_named(config: NginxConfig, name: str) -> tuple[Block, ...]:
    """The server blocks listing `name` in a server_name (exact, case-insensitive)."""
    wanted = name.lower()
    return tuple(s for s in servers(config) if wanted in (n.lower() for n in server_names(config, s)))


def default_server(config: NginxConfig) -> Block | None:
    for server in servers(config):
        for d in config.children(server):
            if d.name == "listen" and ("default_server" in d.args or "default" in d.args):
                return server
    return None


def find_server(config: NginxConfig, name: str) -> Block | None:
    """The server block nginx would pick for Host: `name`: by exact name, else the
    default_server, else the first server."""
    every = servers(config)
    return next(iter(servers_named(config, name)), None) or default_server(config) or (every[0] if every else None)


def locations(config: NginxConfig, parent: Block) -> tuple[Block, ...]:
    return config.child_blocks(parent, "location")


def find_location(config: NginxConfig, server: Block, location: str) -> Block | None:
    """The location named by its own text ("~ \\.php$"), anywhere in `server`;
    else, for a URI, the location nginx would pick."""
    text = " ".join(location.split())
    for block in config.blocks:
        if block.name == "location" and " ".join(block.args) == text and server in config.ancestors(block):
            return block
    if location.startswith("/"):
        return _match_uri(config, server, location)[0]
    return None


def _location_kind(block: Block) -> tuple[str, str]:
    """(modifier, pattern): nginx accepts "= /x" and "=/x" alike."""
    if len(block.args) == 2:
        return block.args[0], block.args[1]
    arg = block.args[0] if block.args else ""
    for modifier in _MODIFIERS:
        if arg.startswith(modifier):
            return (modifier, arg) if modifier == "@" else (modifier, arg[len(modifier):])
    return "", arg


def _match_uri(config: NginxConfig, parent: Block, uri: str) -> tuple[Block | None, bool]:
    """(location, decided) as ngx_http_core_find_location: an exact or a regex match
    decides; a prefix match goes on to nested locations, then to this level's regexes
    (unless it is ^~)."""
    children = locations(config, parent)
    for block in children:
        if _location_kind(block) == ("=", uri):
            return block, True
    prefixes = [b for b in children if _location_kind(b)[0] in ("", "^~") and uri.startswith(_location_kind(b)[1])]
    found: Block | None = None
    no_regex = False
    if prefixes:
        prefix = max(prefixes, key=lambda b: len(_location_kind(b)[1]))
        no_regex = _location_kind(prefix)[0] == "^~"
        nested, decided = _match_uri(config, prefix, uri)
        if decided:
            return nested, True
        found = nested or prefix
    if not no_regex:
        for block in children:
            if _regex_matches(block, uri):
                return _match_uri(config, block, uri)[0] or block, True
    return found, False


def _regex_matches(block: Block, uri: str) -> bool:
    modifier, pattern = _location_kind(block)
    if modifier not in ("~", "~*"):
        return False
    try:
        return re.search(pattern, uri, re.IGNORECASE if modifier == "~*" else 0) is not None
    except re.error:
        return False   # PCRE syntax Python does not know: not evaluated (see the module's limits)


def value_at(config: NginxConfig, block: Block, name: str, default: str | None = None) -> EffectiveValue:
    """The value of `name` in `block`: set there, inherited from an enclosing block, or the default."""
    for depth, holder in enumerate(config.ancestors(block)):
        found = next((d for d in config.children(holder) if d.name == name), None)
        if found is not None:
            return EffectiveValue(found.value, found, "set" if depth == 0 else "inherited")
    return EffectiveValue(default if default is not None else DEFAULTS.get(name), None, "default")


def effective(config: NginxConfig, server_name: str | None, location: str | None, name: str,
              default: str | None = None) -> EffectiveValue:
    """The value of `name` for requests to `server_name` (None: the http level) in
    `location` (None, or a location that matches nothing: the server level).
    `default` (else DEFAULTS) when set nowhere."""
    narrowest = http_block(config)
    if server_name is not None:
        server = find_server(config, server_name)
        narrowest = server or narrowest
        if server is not None and location is not None:
            narrowest = find_location(config, server, location) or server
    if narrowest is None:
        return EffectiveValue(default if default is not None else DEFAULTS.get(name), None, "default")
    return value_at(config, narrowest, name, default)


def nginx_seconds(text: str) -> float | None:
    """nginx's time syntax ("90", "90s", "1m30s", "1h 30m", "500ms") in seconds; None if it is not one.
    As ngx_parse_time: a space may follow a unit only, a bare number (seconds) comes last."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "M": 2592000, "y": 31536000}
    match = re.fullmatch(r"((?:\d+(?:ms|[smhdwMy]) *)*)(\d*)", text)
    if not text or match is None:
        return None
    parts = re.findall(r"(\d+)(ms|[smhdwMy])", match.group(1))
    return sum(int(number) * units[unit] for number, unit in parts) + int(match.group(2) or 0)


def same_value(name: str, a: Sequence[str], b: Sequence[str]) -> bool:
    """Whether two argument lists set `name` alike (60 and 1m are the same timeout)."""
    if tuple(a) == tuple(b):
        return True
    if name in TIME_DIRECTIVES and len(a) == len(b) == 1:
        seconds = nginx_seconds(a[0]), nginx_seconds(b[0])
        return None not in seconds and seconds[0] == seconds[1]
    return False


# -- edits that keep every other byte ---------------------------------------

@dataclass(frozen=True)
class Token:
    kind: str        # "word", "quoted", "comment", ";", "{", "}"
    value: str       # a quoted token's text without its quotes (\\" unescaped, as crossplane does)
    start: int       # offsets in the text, quotes included
    end: int
    line: int


def tokenize(text: str) -> list[Token]:
    """The tokens of a file with their offsets, by nginx's (and crossplane's) rules."""
    tokens: list[Token] = []
    position, line = 0, 1
    while position < len(text):
        char = text[position]
        if char.isspace():
            line += char == "\n"
            position += 1
            continue
        if char == "#":
            end = text.find("\n", position)
            end = len(text) if end < 0 else end
            tokens.append(Token("comment", text[position:end], position, end, line))
        elif char in ";{}":
            end = position + 1
            tokens.append(Token(char, char, position, end, line))
        elif char in "\"'":
            end = _quoted_end(text, position)
            tokens.append(Token("quoted", _unquote(text[position + 1:end - 1], char), position, end, line))
        else:
            end = _word_end(text, position)
            tokens.append(Token("word", text[position:end], position, end, line))
        line += text.count("\n", position, end)
        position = end
    return tokens


def _quoted_end(text: str, start: int) -> int:
    quote, position = text[start], start + 1
    while position < len(text) and text[position] != quote:
        position += 2 if text[position] == "\\" else 1
    return min(position + 1, len(text))


def _unquote(inner: str, quote: str) -> str:
    pieces, position = [], 0
    while position < len(inner):
        pair = inner[position:position + 2] if inner[position] == "\\" else inner[position]
        pieces.append(quote if pair == "\\" + quote else pair)
        position += len(pair)
    return "".join(pieces)


def _word_end(text: str, start: int) -> int:
    position = start
    while position < len(text):
        char = text[position]
        if char == "\\":
            position += 2
        elif char == "{" and position > start and text[position - 1] == "$":
            while position < len(text) and text[position] != "}" and not text[position].isspace():
                position += 1   # ${variable}: its braces are not a block
            position += position < len(text) and text[position] == "}"
        elif char.isspace() or char in ";{}":
            break
        else:
            position += 1
    return min(position, len(text))


def _statements(tokens: list[Token]) -> Iterator[tuple[Token, list[Token]]]:
    """(name token, argument tokens) of every statement, comments left out."""
    name: Token | None = None
    args: list[Token] = []
    for token in tokens:
        if token.kind == "comment":
            continue
        if token.kind in (";", "{", "}"):
            if name is not None:
                yield name, args
            name, args = None, []
        elif name is None:
            name = token
        else:
            args.append(token)


def quote_arg(arg: str) -> str:
    """An argument as it must be written: crossplane's quoting, and a leading '#' quoted
    too (crossplane would leave it, and nginx would read a comment)."""
    if arg.startswith("#"):
        return repr(arg).replace("\\\\", "\\")
    return _enquote(arg)


def format_args(args: Sequence[str]) -> str:
    if not args:
        raise ValueError("a directive needs at least one argument here")
    return " ".join(quote_arg(arg) for arg in args)


def set_directive(text: str, line: int, name: str, args: Sequence[str]) -> str:
    """`text` with the arguments of the `name` directive starting on `line` (the first
    one, if the line holds two) replaced; every byte outside them kept: spacing, the
    `;`, comments, other directives. A comment between two arguments goes with them."""
    found = [(n, a) for n, a in _statements(tokenize(text)) if n.line == line and n.kind == "word" and n.value == name]
    if not found:
        raise ValueError(f"no {name} directive starts on line {line}")
    name_token, arg_tokens = found[0]
    if not arg_tokens:
        return text[:name_token.end] + " " + format_args(args) + text[name_token.end:]
    return text[:arg_tokens[0].start] + format_args(args) + text[arg_tokens[-1].end:]


def add_directive(text: str, block_open_line: int, name: str, args: Sequence[str], indent: str | None = None) -> str:
    """`text` with `name args;` as the first line inside the block whose `{` is on
    `block_open_line` (the first `{` there), indented like the block's lines; a block
    written on one line gets it right after its `{`."""
    tokens = tokenize(text)
    opening = _opening_brace(tokens, block_open_line)
    statement = f"{name} {format_args(args)};"
    if insertion_line(text, block_open_line) == block_open_line:
        brace = tokens[opening]
        return text[:brace.end] + " " + statement + text[brace.end:]
    if indent is None:
        indent = _inner_indent(text, tokens, opening)
    return insert_line(text, block_open_line, indent + statement)


def insertion_line(text: str, block_open_line: int) -> int:
    """The line add_directive puts a directive on: the one after the `{` line, or the
    `{` line itself when the block goes on there (`location = /x { deny all; }`)."""
    tokens = tokenize(text)
    opening = _opening_brace(tokens, block_open_line)
    goes_on = any(t.line == block_open_line and t.kind != "comment" for t in tokens[opening + 1:])
    return block_open_line if goes_on else block_open_line + 1


def _opening_brace(tokens: list[Token], line: int) -> int:
    found = next((i for i, t in enumerate(tokens) if t.kind == "{" and t.line == line), None)
    if found is None:
        raise ValueError(f"no block opens on line {line}")
    return found


def _inner_indent(text: str, tokens: list[Token], opening: int) -> str:
    """The indentation of the block's first directive line; for an empty block, the
    closing brace's plus one step of the file's indentation."""
    depth = 0
    fallback = None
    for token in tokens[opening + 1:]:
        before = _indent_before(text, token)
        if token.kind == "}" and depth == 0:
            if fallback is not None:
                return fallback
            return (before if before is not None else _line_indent(text, tokens[opening])) + _indent_step(text)
        if depth == 0 and before is not None:
            if token.kind != "comment":
                return before
            fallback = fallback if fallback is not None else before
        depth += token.kind == "{"
        depth -= token.kind == "}"
    return _indent_step(text)


def _indent_before(text: str, token: Token) -> str | None:
    """The whitespace before `token` on its line when it is the line's first token, else None."""
    line_start = text.rfind("\n", 0, token.start) + 1
    before = text[line_start:token.start]
    return before if before.strip(" \t") == "" else None


def _line_indent(text: str, token: Token) -> str:
    return leading_space(text[text.rfind("\n", 0, token.start) + 1:token.start])


def _indent_step(text: str) -> str:
    """One level of the file's indentation: its first indented line's (a tab, or spaces)."""
    for line in split_lines(text):
        stripped = line.lstrip(" \t")
        if stripped.strip() and stripped != line:
            space = line[: len(line) - len(stripped)]
            return "\t" if space.startswith("\t") else " " * min(len(space), 8)
    return "    "
