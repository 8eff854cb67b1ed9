"""ssh_config as OpenSSH reads it.

The reference is OpenSSH itself: `ssh -G [-F CONFIG] NAME` prints the final settings ssh
would use for NAME (Include, Match, Host, tokens, defaults all applied). When the `ssh`
binary is not there, a fallback reads the file with paramiko's SSHConfig, after this module
has expanded `Include` (which paramiko does not know) and handled `Host` blocks around it.

Pure parts (no subprocess): `parse_dump` (the text `ssh -G` prints), `parse_text` and
`scan` (the Host/Match blocks of a config and its Includes, with file:line — for
"did you mean", for `inventory convert --from-ssh-config`, and to skip `ssh -G` when no
block could set anything opskit uses), `host_matches` (ssh's pattern lists), `settings`
(the -G keywords → opskit Host fields). The subprocess is `ssh_dump`; `Resolver` runs
them in parallel and caches them for the process.

"Set by the ssh config" (which beats the inventory's groups and defaults, while a value set
on the host itself beats it): a value `ssh -G` prints that differs from what ssh prints with
no config at all (`ssh -G -F /dev/null`), or whose keyword is written in a Host block that
matches the name. "No Host entry" for an alias: no Host pattern other than a bare `*`
matches it, and `ssh -G` prints for it exactly what it prints for a name nothing can match
(the name swapped for that one): then no Host or Match block applied to it.

Start-up cost: a config file with any line in it is checked once (`ssh -G` of a name nothing
matches: ssh refuses a whole file with a mistake anywhere, and so does opskit); a name for which
no block could set anything opskit uses needs no `ssh -G` of its own; names the same Host blocks
apply to (and no Match block, %-token or CanonicalizeHostname) share one. A fleet of addresses
under `Host *` costs three `ssh -G` runs, not one per host.
"""

from __future__ import annotations

import difflib
import fnmatch
import glob
import os
import pwd
import re
import shlex
import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from opskit.errors import InputError

SYSTEM_CONFIG = "/etc/ssh/ssh_config"
USER_CONFIG = "~/.ssh/config"
UNMATCHABLE = "opskit-no-such-host.invalid"   # .invalid never resolves (RFC 6761)
MAX_INCLUDE_DEPTH = 16   # OpenSSH's READCONF_MAX_DEPTH

# ssh -G keyword → opskit Host field, in the order the README lists them
FIELDS = {
    "hostname": "address",
    "port": "port",
    "user": "user",
    "identityfile": "identity_file",
    "identitiesonly": "identities_only",
    "proxyjump": "proxy_jump",
    "proxycommand": "proxy_command",
    "userknownhostsfile": "known_hosts",
    "stricthostkeychecking": "strict_host_key_checking",
    "connecttimeout": "connect_timeout",
    "serveraliveinterval": "server_alive_interval",
}


# -- pure: the text ssh -G prints ------------------------------------------------------------
def parse_dump(text: str) -> dict[str, list[str]]:
    """`ssh -G` output → {keyword: [value, ...]} (keywords lower case; repeated ones in order)."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        key, _, value = line.partition(" ")
        out.setdefault(key.lower(), []).append(value.strip())
    return out


def _home() -> str:
    """ssh expands ~ to the passwd entry's home, not $HOME."""
    try:
        return pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:
        return os.path.expanduser("~")


def expand_home(path: str) -> str:
    return _home() + path[1:] if path == "~" or path.startswith("~/") else path


def settings(dump: dict[str, list[str]], baseline: dict[str, list[str]], name: str,
             written: set[str] = frozenset()) -> dict[str, object]:
    """The opskit Host fields the ssh config sets for `name`: values `ssh -G` printed that differ
    from ssh's own defaults (`baseline`, printed for the same name with an empty config), or whose
    keyword is `written` in a block that applies to the name."""
    out: dict[str, object] = {}
    for key, target in FIELDS.items():
        values = dump.get(key)
        if not values:
            continue
        if key == "hostname":
            if values[0].lower() != name.lower() or key in written:
                out[target] = values[0]
            continue
        if values == baseline.get(key) and key not in written:
            continue
        value = _convert(key, values)
        if value is not None:
            out[target] = value
    return out


def _convert(key: str, values: list[str]):
    first = values[0]
    if key == "port":
        return int(first) if first.isdigit() else None
    if key in ("identityfile", "userknownhostsfile"):
        # the first file; ssh tries the others after it (opskit: one key file, one known_hosts)
        files = first.split() if key == "userknownhostsfile" else [first]
        return files[0] if files and files[0].lower() != "none" else None
    if key == "identitiesonly":
        return first.lower() in ("yes", "true")
    if key in ("proxyjump", "proxycommand"):
        return None if first.lower() == "none" else first
    if key == "stricthostkeychecking":
        return {"true": "yes", "yes": "yes", "false": "no", "no": "no", "off": "no",
                "accept-new": "accept-new", "ask": "ask"}.get(first.lower())
    if key in ("connecttimeout", "serveraliveinterval"):
        return int(first) if first.isdigit() and int(first) > 0 else None
    return first


# -- pure: the blocks of a config file ---------------------------------------------------------
@dataclass
class Option:
    keyword: str      # lower case
    args: list[str]
    file: str
    line: int


@dataclass
class Block:
    """One Host or Match block (or the global lines before the first one)."""

    kind: str                 # "global", "host" or "match"
    patterns: list[str]       # Host patterns, or the Match criteria words
    file: str
    line: int
    options: list[Option] = field(default_factory=list)
    parent: "Block | None" = None   # the Host/Match block an Include sits in

    def value(self, keyword: str) -> str | None:
        for option in self.options:
            if option.keyword == keyword:
                return " ".join(option.args)
        return None


_LINE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9]*)(?:\s*=\s*|\s+)(.*?)\s*$")


def tokenize(line: str) -> tuple[str, list[str]] | None:
    """One ssh_config line → (keyword lower case, args); None for blank lines and comments."""
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return None
    found = _LINE.match(stripped)
    if not found:
        return stripped.lower(), []
    try:
        args = shlex.split(found.group(2), comments=True)
    except ValueError:
        args = found.group(2).split()
    return found.group(1).lower(), args


def include_paths(pattern: str, system: bool) -> list[str]:
    """The files an Include names: ~ expanded, relative to ~/.ssh (user configs, which -F files
    are) or /etc/ssh (the system config), globs sorted as OpenSSH's glob(3) does."""
    path = expand_home(pattern)
    if not os.path.isabs(path):
        path = os.path.join("/etc/ssh" if system else os.path.join(_home(), ".ssh"), path)
    return sorted(glob.glob(path)) if glob.has_magic(path) else ([path] if os.path.exists(path) else [])


def scan(path: str, system: bool = False, _depth: int = 0, _parent: Block | None = None) -> list[Block]:
    """The blocks of one config file and the files it Includes, in the order ssh reads them.
    A missing file is no blocks (ssh ignores a missing ~/.ssh/config)."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return []
    except OSError as exc:
        raise InputError(f"cannot read ssh config {path}: {exc.strerror or exc}") from None
    return parse_text(text, path, system, _depth, _parent)


def parse_text(text: str, file: str, system: bool = False, depth: int = 0, parent: Block | None = None) -> list[Block]:
    if depth > MAX_INCLUDE_DEPTH:
        raise InputError(f"{file}: Include nested more than {MAX_INCLUDE_DEPTH} deep (a loop?)")
    current = Block("global", [], file, 1, parent=parent)
    blocks = [current]
    for number, line in enumerate(text.splitlines(), 1):
        token = tokenize(line)
        if token is None:
            continue
        keyword, args = token
        if keyword in ("host", "match"):
            current = Block(keyword, args, file, number, parent=parent)
            blocks.append(current)
        elif keyword == "include":
            for pattern in args:
                for included in include_paths(pattern, system):
                    blocks.extend(scan(included, system, depth + 1, current if current.kind != "global" else parent))
            # after an Include, ssh is back in the block it sat in
            current = Block(current.kind, current.patterns, current.file, current.line, parent=current.parent)
            blocks.append(current)
        else:
            current.options.append(Option(keyword, args, file, number))
    return [b for b in blocks if b.options or b.kind != "global"]


def pattern_matches(name: str, pattern_list: list[str]) -> bool:
    """ssh's match_pattern_list: some positive pattern matches and no negated one does
    (case-insensitive, * and ? wildcards; commas separate patterns too)."""
    name = name.lower()
    positive = False
    for word in (p for item in pattern_list for p in item.split(",") if p):
        negated = word.startswith("!")
        pattern = word[1:] if negated else word
        if fnmatch.fnmatchcase(name, pattern.lower()):
            if negated:
                return False
            positive = True
    return positive


def _is_wildcard_only(pattern: str) -> bool:
    return bool(pattern) and set(pattern) <= {"*", "?"}


def host_matches(block: Block, name: str) -> bool | None:
    """Whether a block applies to `name`: True/False for global and Host blocks (and their
    Include parents), None for Match blocks (only ssh can tell)."""
    if block.parent is not None:
        outer = host_matches(block.parent, name)
        if outer is False:
            return False
        if outer is None:
            return None
    if block.kind == "global":
        return True
    if block.kind == "host":
        return pattern_matches(name, block.patterns)
    return None


def has_host_entry(blocks: list[Block], name: str) -> bool:
    """A Host pattern other than a bare `*` matches `name`."""
    for block in blocks:
        if block.kind == "host" and host_matches(block, name):
            if any(not p.startswith("!") and not _is_wildcard_only(p) and pattern_matches(name, [p]) for p in block.patterns):
                return True
    return False


def written_keywords(blocks: list[Block], name: str) -> set[str]:
    """Keywords written in blocks that certainly apply to `name` (global lines, matching Host blocks)."""
    out: set[str] = set()
    for block in blocks:
        if host_matches(block, name):
            out.update(option.keyword for option in block.options)
    return out


def may_set_anything(blocks: list[Block], name: str) -> bool:
    """Could any block set a keyword opskit uses for `name`? False → ssh -G has nothing to add."""
    for block in blocks:
        if host_matches(block, name) is False:
            continue
        if any(option.keyword in FIELDS for option in block.options):
            return True
    return False


def concrete_hosts(blocks: list[Block]) -> list[tuple[str, Block]]:
    """Each name of a Host line that is a plain name (no wildcard, no negation), first one wins."""
    seen: dict[str, Block] = {}
    for block in blocks:
        if block.kind != "host":
            continue
        for pattern in block.patterns:
            if pattern.startswith("!") or glob.has_magic(pattern) or "," in pattern:
                continue
            seen.setdefault(pattern, block)
    return list(seen.items())


def did_you_mean(name: str, blocks: list[Block]) -> str:
    close = difflib.get_close_matches(name, [n for n, _ in concrete_hosts(blocks)], n=3)
    return f"; did you mean {', '.join(close)}?" if close else ""


# -- the configs a name is read from -------------------------------------------------------------
def config_label(config: str | None) -> str:
    return USER_CONFIG if config is None else config


def config_blocks(config: str | None) -> list[Block]:
    """What ssh reads: the -F file alone, or ~/.ssh/config then /etc/ssh/ssh_config."""
    if config is not None:
        path = expand_home(config)
        if not os.path.exists(path):
            raise InputError(f"ssh config {config} not found")
        return scan(path)
    return scan(expand_home(USER_CONFIG)) + scan(SYSTEM_CONFIG, system=True)


# -- the subprocess ----------------------------------------------------------------------------
def ssh_binary() -> str | None:
    """The OpenSSH client: $OPSKIT_SSH when set (empty: none, use the fallback parser), else `ssh` on PATH."""
    if "OPSKIT_SSH" in os.environ:
        return os.environ["OPSKIT_SSH"] or None
    return shutil.which("ssh")


def ssh_dump(name: str, config: str | None, ssh: str = "ssh") -> str:
    """`ssh -G` for one name: OpenSSH's own resolution (it connects nowhere)."""
    argv = [ssh, "-T", "-G"] + (["-F", expand_home(config)] if config is not None else []) + ["--", name]
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        raise InputError(f"`ssh -G {name}` did not finish in 30s (a Match exec in {config_label(config)}?)") from None
    if done.returncode != 0:
        message = "; ".join(line.strip() for line in done.stderr.splitlines() if line.strip() and "Pseudo-terminal" not in line)
        raise InputError(f"{config_label(config)}: ssh refuses this config: {message or f'ssh -G {name} exited {done.returncode}'}")
    return done.stdout


# -- the fallback when there is no ssh binary ----------------------------------------------------
def flatten(config: str | None, name: str) -> str:
    """The config text with Includes expanded in place for paramiko: an Include inside a Host
    block that does not match `name` is left out, and the block's header is written again after
    the included text (ssh returns to the enclosing block)."""
    files = [expand_home(config)] if config is not None else [expand_home(USER_CONFIG), SYSTEM_CONFIG]
    return "".join(_flatten_file(path, config is None and path == SYSTEM_CONFIG, name, 0) for path in files)


def _flatten_file(path: str, system: bool, name: str, depth: int) -> str:
    if depth > MAX_INCLUDE_DEPTH:
        raise InputError(f"{path}: Include nested more than {MAX_INCLUDE_DEPTH} deep (a loop?)")
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    out: list[str] = []
    header = None      # the Host/Match line we are under
    for line in text.splitlines():
        token = tokenize(line)
        if token and token[0] in ("host", "match"):
            header = line.strip()
            out.append(header)
        elif token and token[0] == "include":
            if header is not None:
                kind, words = tokenize(header)
                if kind == "host" and not pattern_matches(name, words):
                    continue   # the Include sits in a Host block that does not apply
            for pattern in token[1]:
                for included in include_paths(pattern, system):
                    out.append(_flatten_file(included, system, name, depth + 1))
            out.append(header or "Host *")
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def fallback_settings(name: str, config: str | None) -> tuple[dict[str, object], bool]:
    """(settings, matched) from paramiko's SSHConfig on the flattened text (keys it returns are
    the ones the config sets)."""
    import paramiko

    parsed = paramiko.SSHConfig.from_text(flatten(config, name))
    found = parsed.lookup(name)
    dump: dict[str, list[str]] = {}
    for key, value in found.items():
        dump[key.lower()] = value if isinstance(value, list) else [str(value)]
    explicit = {k: v for k, v in dump.items() if k != "hostname" or v[0].lower() != name.lower()}
    # matched: the name gets something a name nothing matches does not (Host * applies to both)
    unmatched = {k: [str(x).replace(UNMATCHABLE, name) for x in (v if isinstance(v, list) else [v])]
                 for k, v in paramiko.SSHConfig.from_text(flatten(config, UNMATCHABLE)).lookup(UNMATCHABLE).items()}
    matched = dump != unmatched
    out = {}
    for key, target in FIELDS.items():
        if key in explicit:
            value = _convert(key, explicit[key])
            if value is not None:
                out[target] = value
    return out, matched


# -- resolution, cached for the process ---------------------------------------------------------
@dataclass(frozen=True)
class Resolution:
    name: str
    config: str | None
    values: dict              # opskit Host field → value the ssh config sets
    matched: bool             # some Host/Match block applied to the name
    method: str               # "ssh -G", "parser" or "nothing to read"

    @property
    def label(self) -> str:
        return config_label(self.config)


class Resolver:
    """Resolves (name, config) pairs once per process, in parallel."""

    def __init__(self, ssh: str | None = None, workers: int = 8):
        self.ssh = ssh if ssh is not None else ssh_binary()
        self.workers = workers
        self._cache: dict[tuple[str, str | None], Resolution] = {}
        self._blocks: dict[str | None, list[Block]] = {}
        self._dumps: dict[tuple[str, str | None], dict[str, list[str]]] = {}
        self._shared: dict[tuple, tuple[str, dict[str, list[str]]]] = {}   # _shared_key → (name, its dump)
        self.ssh_runs = 0   # how many `ssh -G` ran (tests, -v)
        self._lock = threading.Lock()

    def blocks(self, config: str | None) -> list[Block]:
        with self._lock:
            if config not in self._blocks:
                self._blocks[config] = config_blocks(config)
            return self._blocks[config]

    def _shared_key(self, name: str, config: str | None):
        """A key equal for names `ssh -G` prints the same settings for, but their hostname: the
        same Host blocks apply to them, and the config has no Match block, no CanonicalizeHostname
        and no %-token in those blocks. None: this name needs its own `ssh -G`."""
        if name == UNMATCHABLE or config == os.devnull:
            return None
        blocks = self.blocks(config)
        if any(block.kind == "match" for block in blocks):
            return None
        applying = tuple(index for index, block in enumerate(blocks) if host_matches(block, name))
        for index in applying:
            for option in blocks[index].options:
                if option.keyword == "canonicalizehostname" or any("%" in arg for arg in option.args):
                    return None
        return (config, applying)

    def _dump(self, name: str, config: str | None) -> dict[str, list[str]]:
        key = (name, config)
        shared = self._shared_key(name, config) if self.ssh else None
        with self._lock:
            if key in self._dumps:
                return self._dumps[key]
            if shared is not None and shared in self._shared:
                other, dump = self._shared[shared]
                derived = dict(dump)
                if dump.get("hostname") == [other]:
                    derived["hostname"] = [name]
                derived["host"] = [name]
                self._dumps[key] = derived
                return derived
        dump = parse_dump(ssh_dump(name, config, self.ssh))
        with self._lock:
            self.ssh_runs += 1
            self._dumps[key] = dump
            if shared is not None:
                self._shared.setdefault(shared, (name, dump))
        return dump

    def resolve_many(self, requests: list[tuple[str, str | None, bool]]) -> dict[tuple[str, str | None], Resolution]:
        """requests: (name, config, is_alias). Unknown aliases raise InputError (the first one)."""
        todo = [r for r in dict.fromkeys(requests) if (r[0], r[1]) not in self._cache]
        # one `ssh -G` per set of names ssh must resolve alike (see _shared_key), those in parallel;
        # the other names of a set are derived from it
        first, rest, seen = [], [], set()
        for request in todo:
            key = self._shared_key(request[0], request[1]) if self.ssh else None
            (rest if key is not None and key in seen else first).append(request)
            seen.add(key)
        if self.ssh:
            for config in dict.fromkeys(config for _, config, _ in first):
                self._check(config)   # once per file, before the workers would each run it
        if len(first) > 1 and self.ssh:
            if any(may_set_anything(self.blocks(config), name) for name, config, _ in first):
                self._baseline()
            with ThreadPoolExecutor(max_workers=min(self.workers, len(first))) as pool:
                results = list(pool.map(lambda r: self._resolve(*r), first))
        else:
            results = [self._resolve(*r) for r in first]
        results += [self._resolve(*r) for r in rest]
        for request, result in zip(first + rest, results):
            self._cache[(request[0], request[1])] = result
        out = {}
        for name, config, is_alias in requests:
            found = self._cache[(name, config)]
            if is_alias and not found.matched:
                raise InputError(f"no Host entry for {name!r} in {found.label}{did_you_mean(name, self.blocks(config))}")
            out[(name, config)] = found
        return out

    def _check(self, config: str | None) -> None:
        """ssh refuses a whole config with a mistake anywhere in it (`Bad configuration option`,
        with file:line): so does opskit, from one `ssh -G` per file, even when nothing in it
        applies to the hosts."""
        if self.blocks(config):
            self._dump(UNMATCHABLE, config)

    def _resolve(self, name: str, config: str | None, is_alias: bool) -> Resolution:
        blocks = self.blocks(config)
        if self.ssh:
            self._check(config)
        if not may_set_anything(blocks, name):
            return Resolution(name, config, {}, has_host_entry(blocks, name), "nothing to read")
        if not self.ssh:
            values, matched = fallback_settings(name, config)
            return Resolution(name, config, values, matched or has_host_entry(blocks, name), "parser")
        dump = self._dump(name, config)
        baseline = _swap(self._baseline(), UNMATCHABLE, name)
        values = settings(dump, baseline, name, written_keywords(blocks, name))
        matched = has_host_entry(blocks, name)
        if is_alias and not matched:
            # a Match block may still have applied: then the settings differ from a name nothing matches
            unmatched = _swap(self._dump(UNMATCHABLE, config), UNMATCHABLE, name)
            matched = unmatched != dump
        return Resolution(name, config, values, matched, "ssh -G")

    def _baseline(self) -> dict[str, list[str]]:
        return self._dump(UNMATCHABLE, os.devnull)


def _swap(dump: dict[str, list[str]], old: str, new: str) -> dict[str, list[str]]:
    return {k: [v.replace(old, new) for v in values] for k, values in dump.items()}


_resolver: Resolver | None = None


def resolver() -> Resolver:
    global _resolver
    if _resolver is None:
        _resolver = Resolver()
    return _resolver
