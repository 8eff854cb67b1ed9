"""What the timeout probes share: sh that prints files, command output and process lists
between fences, and the pure reader of that output. (A leading underscore: the step loader
skips this module; it registers no step.)

    script = collect(body, mark, become=True)     # body: sh using show/tailf/run_block/procs
    out = Collected.parse(output)                 # the mark is on the output's first line
    out.files["/etc/nginx/nginx.conf"], out.unreadable["/etc/php/8.2/fpm/php.ini"]
    out.blocks["nginx-T 1234"], out.procs, out.kv["user"]

Output grammar (MARK is random per script, printed first as `mark=MARK`, so no file on the
host can fake a fence):

    key=value                         outside blocks
    MARK file PATH                    PATH's bytes follow, up to
    MARK end STATUS                   (a newline is printed before it: the text is exact)
    MARK tail SIZE PATH               the last bytes of PATH (SIZE: its whole size), then end
    MARK run NAME                     a command's output (stdout and stderr), then end
    MARK missing PATH | MARK denied PATH | MARK dir PATH
    MARK proc PID PPID UID ARGS       one process (ps -e; not opskit's own shells)

With become (the inventory's `become: sudo`) the body runs as root through one
`sudo -n sh -c` (never a password); when sudo refuses, it runs as the login user and the
output says `become=refused`. The login user's name, uid and home are printed before.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from opskit.shell import quote

# sh functions the bodies use. printf, not echo: dash's echo rewrites backslashes in paths.
# procs leaves opskit's own shells out: each one's command line is the whole probe script (tens
# of KB, several times over: the login shell, sudo, sh -c), and that text names nginx, php-fpm, kill.
FUNCTIONS = r"""
PATH="$PATH:/usr/sbin:/sbin:/usr/local/sbin"
show() {
  if [ -d "$1" ]; then printf '%s dir %s\n' "$M" "$1"
  elif [ -f "$1" ] && [ -r "$1" ]; then
    printf '%s file %s\n' "$M" "$1"; head -c "${2:-1048576}" -- "$1" 2>/dev/null; _s=$?; echo; printf '%s end %s\n' "$M" "$_s"
  elif [ -e "$1" ] || [ -L "$1" ] || { _d=$(dirname -- "$1"); [ -d "$_d" ] && ! [ -x "$_d" ]; }; then printf '%s denied %s\n' "$M" "$1"
  else printf '%s missing %s\n' "$M" "$1"; fi
}
tailf() {
  if [ -f "$1" ] && [ -r "$1" ]; then
    _z=$(wc -c < "$1" 2>/dev/null); printf '%s tail %s %s\n' "$M" "${_z:-0}" "$1"
    tail -c "$2" -- "$1" 2>/dev/null; _s=$?; echo; printf '%s end %s\n' "$M" "$_s"
  elif [ -e "$1" ] || [ -L "$1" ] || { _d=$(dirname -- "$1"); [ -d "$_d" ] && ! [ -x "$_d" ]; }; then printf '%s denied %s\n' "$M" "$1"
  else printf '%s missing %s\n' "$M" "$1"; fi
}
run_block() { _n=$1; shift; printf '%s run %s\n' "$M" "$_n"; "$@" 2>&1; _s=$?; echo; printf '%s end %s\n' "$M" "$_s"; }
procs() { ps -e -o pid= -o ppid= -o uid= -o args= 2>/dev/null | while read -r _p _pp _u _a; do case $_a in *OPSKIT-P-*) continue ;; esac; printf '%s proc %s %s %s %s\n' "$M" "$_p" "$_pp" "$_u" "$_a"; done; }
# the files a config includes, queued: follow FILE SED-SCRIPT BASE — shows FILE and every file
# its include lines name (SED-SCRIPT prints their patterns), relative ones under BASE
follow() {
  _queue=$1; _seen=" "; _count=0; _nl='
'
  while [ -n "$_queue" ] && [ "$_count" -lt 300 ]; do
    _f=${_queue%%"$_nl"*}; [ "$_f" = "$_queue" ] && _queue="" || _queue=${_queue#*"$_nl"}
    case $_seen in *" $_f "*) continue ;; esac
    _seen="$_seen$_f "; _count=$((_count + 1))
    show "$_f"
    [ -f "$_f" ] && [ -r "$_f" ] || continue
    _pats=$(sed -n "$2" "$_f" 2>/dev/null | tr -d "\"'")
    set -f
    for _pat in $_pats; do
      set +f
      case $_pat in /*) ;; *) _pat="$3/$_pat" ;; esac
      for _g in $_pat; do
        if [ -d "$_g" ] && [ -n "$4" ]; then
          for _h in "$_g"/* "$_g"/*/*; do [ -f "$_h" ] && _queue="$_queue${_queue:+$_nl}$_h"; done
        elif [ -f "$_g" ]; then _queue="$_queue${_queue:+$_nl}$_g"
        else case $_g in
          *[*?[]*) _dd=$(dirname -- "$_g"); [ -d "$_dd" ] && ! [ -r "$_dd" ] && printf '%s denied %s\n' "$M" "$_g" ;;
          *) _queue="$_queue${_queue:+$_nl}$_g" ;;
        esac; fi
      done
      set -f
    done
    set +f
  done
}
"""


def new_mark() -> str:
    return "OPSKIT-P-" + secrets.token_hex(6)


def collect(body: str, mark: str, become: bool = False, outside: str = "") -> str:
    """A probe's sh: the login user's facts, then `body` (as root with become, when sudo
    lets it), then `outside` (always as the login user: crontab -l)."""
    program = f"M={mark}\n{FUNCTIONS}\n{body}\n"
    lines = [f"M={mark}", "printf 'mark=%s\\n' \"$M\"",
             "printf 'user=%s\\nuid=%s\\nhome=%s\\n' \"$(id -un 2>/dev/null)\" \"$(id -u 2>/dev/null)\" \"$HOME\""]
    if become:
        lines.append(f"if sudo -n true 2>/dev/null; then echo become=sudo; sudo -n sh -c {quote(program)}; "
                     f"else echo become=refused; sh -c {quote(program)}; fi")
    else:
        lines.append(f"sh -c {quote(program)}")
    if outside:
        lines.append(f"M={mark}\n{FUNCTIONS}\n{outside}")
    return "\n".join(lines) + "\ntrue"


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    uid: int | None
    args: str


@dataclass
class Collected:
    kv: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)          # path → text (whole, or up to the cap)
    tails: dict[str, tuple[int, str]] = field(default_factory=dict)   # path → (its size, the tail read)
    blocks: dict[str, tuple[int, str]] = field(default_factory=dict)  # run NAME → (exit status, output)
    unreadable: dict[str, str] = field(default_factory=dict)     # path → why (Permission denied, no such file)
    dirs: list[str] = field(default_factory=list)
    procs: list[Proc] = field(default_factory=list)
    events: list[tuple[str, list[str]]] = field(default_factory=list)   # other MARK KIND lines: (kind, tab-split fields)
    order: list[str] = field(default_factory=list)               # files in the order they were shown

    @property
    def become(self) -> str | None:
        return self.kv.get("become")

    @classmethod
    def parse(cls, output: str) -> "Collected":
        got = cls()
        lines = output.split("\n")
        mark = None
        for line in lines[:5]:
            if line.startswith("mark="):
                mark = line[5:].strip()
                break
        if not mark:
            return got
        prefix = mark + " "
        current: tuple[str, str, int] | None = None   # (kind, name, size)
        body: list[str] = []
        for number, line in enumerate(lines):
            complete = number < len(lines) - 1
            if current is not None:
                if line.startswith(prefix + "end ") and complete:
                    status = line[len(prefix) + 4:].strip()
                    text = "\n".join(body)
                    kind, name, size = current
                    if kind == "file":
                        got.files[name] = text
                        got.order.append(name)
                    elif kind == "tail":
                        got.tails[name] = (size, text)
                    else:
                        got.blocks[name] = (int(status) if status.isdigit() else -1, text)
                    current, body = None, []
                else:
                    body.append(line)
                continue
            if not line.startswith(prefix):
                key, sep, value = line.partition("=")
                if sep and key and " " not in key and not line.startswith(mark):
                    got.kv[key.strip()] = value.strip()
                continue
            kind, _, rest = line[len(prefix):].partition(" ")
            if kind in ("file", "run"):
                current, body = (kind, rest, 0), []
            elif kind == "tail":
                size, _, path = rest.partition(" ")
                current, body = ("tail", path, int(size) if size.isdigit() else 0), []
            elif kind == "missing":
                got.unreadable[rest] = "no such file"
            elif kind == "denied":
                got.unreadable[rest] = "Permission denied"
            elif kind == "dir":
                got.dirs.append(rest)
            elif kind not in ("proc", "end"):
                got.events.append((kind, rest.split("\t")))
            elif kind == "proc":
                fields = rest.split(" ", 3)
                if len(fields) >= 3 and fields[0].isdigit() and fields[1].isdigit():
                    got.procs.append(Proc(int(fields[0]), int(fields[1]),
                                          int(fields[2]) if fields[2].isdigit() else None,
                                          fields[3] if len(fields) > 3 else ""))
        return got

    def why_not(self, path: str | None, user: str | None = None) -> str:
        """Why `path` was not read, for a person."""
        if path is None:
            return "not found"
        reason = self.unreadable.get(path)
        who = user or self.kv.get("user") or "this user"
        if reason == "Permission denied":
            return f"{path} is not readable by {who} (Permission denied)"
        if reason:
            return f"{path}: {reason}"
        return f"{path} was not read"


def words(text: str) -> list[str]:
    return text.split()


def option(args: list[str], flag: str) -> str | None:
    """The value of `-c X` (or `-cX`) in a command's words."""
    for i, word in enumerate(args):
        if word == flag and i + 1 < len(args):
            return args[i + 1]
        if word.startswith(flag) and len(word) > len(flag) and not word.startswith("--"):
            return word[len(flag):]
    return None
