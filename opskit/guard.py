"""The host-side guard: a POSIX sh script that undoes a transaction by itself.

Layout on the host (all 0700/0600):

    ~/.opskit/lock/                 the host lock (mkdir is atomic): run, expires
    ~/.opskit/tx/RUN/state          open | armed | kept | rolled_back | conflict | failed | done
    ~/.opskit/tx/RUN/deadline       epoch seconds (host clock) when the guard undoes
    ~/.opskit/tx/RUN/guard.sh       this script, rewritten before every change lands
    ~/.opskit/tx/RUN/records.json   the undo records (for humans and other controllers)
    ~/.opskit/tx/RUN/files/         backups of edited files (N.orig)
    ~/.opskit/tx/RUN/undone.N       step N is undone (so undo is idempotent)
    ~/.opskit/tx/RUN/undo.lock/     held while an undo or an apply runs ("pid starttime")
    ~/.opskit/tx/RUN/guard.pid      the detached guard ("pid starttime": a pid alone may be reused)
    ~/.opskit/tx/RUN/guard.log      what the guard did when it ran alone

guard.sh modes:
    wait    sleep until the deadline (detached; survives the SSH session), then run the
            guard.sh that is on disk *then* in mode `wake` (later write-aheads replace the file)
    wake    undo if still due; if a re-arm moved the deadline meanwhile, wait again
    due     undo if the transaction is armed (or its undo failed) and the deadline passed;
    cron    the same, run from the user's crontab every minute
    now     undo at once (Ctrl-C, failures, end of hold); a confirmed transaction stays kept
    revert  `opskit rollback`: undo at once, a confirmed (kept) transaction too
    keep    confirm: keep the changes and disarm
    finish  the transaction made no change: close it and release the lock

Every undo prints `OPSKIT-UNDO <step> <outcome> <message>` and the script ends
with `OPSKIT-STATE <state>`; parse_output() reads them back. Applies run under the
same undo.lock, and only while the transaction is armed (apply_script).

Every script the controller sends starts by printing a newline, so a login banner
printed without one (`printf "Last login: never"` in .bashrc) cannot glue itself to
the first marker line.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from opskit.shell import token

# An sh case pattern for what is not an epoch a deadline can be (empty, not digits, or
# more than 11 digits: past the year 5138, and past sh arithmetic): read as 0, overdue.
NOT_EPOCH = '""|*[!0-9]*|????????????*'

# Shared by guard.sh and the apply, arm and hello scripts. Fail safe: an unreadable
# deadline is overdue, an unknown state of a transaction that has records is armed.
PRELUDE = r"""umask 077
PATH="$PATH:/usr/sbin:/sbin:/usr/local/bin"
TX="$HOME/.opskit/tx/$RUN"
LOCK="$HOME/.opskit/lock"
# start time of a process: with the pid it names one process (pids are reused)
ident() { if [ -r "/proc/$1/stat" ]; then sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d ' ' -f 20; else ps -o lstart= -p "$1" 2>/dev/null; fi; }
me() { printf '%s %s\n' "$$" "$(ident $$)"; }
# is the process recorded in file $1 ("pid starttime") still alive and still that process?
alive() {
  [ -f "$1" ] || return 1
  read -r _p _i < "$1" 2>/dev/null || return 1
  case $_p in ''|*[!0-9]*) return 1 ;; esac
  kill -0 "$_p" 2>/dev/null || return 1
  [ -n "$_i" ] && [ "$(ident "$_p")" = "$_i" ]
}
# end the process recorded in $1 (and its process group: the guard leads one) if it is still ours
end_recorded() {
  alive "$1" || return 0
  [ "$_p" = "$$" ] && return 0
  kill -- "-$_p" 2>/dev/null || kill "$_p" 2>/dev/null
}
# read, not cat: the guard asks often, and a fork per question adds up on a busy host
state() {
  _s=; read -r _s 2>/dev/null < "$TX/state"
  case $_s in
    open|armed|kept|rolled_back|conflict|failed|done) echo "$_s" ;;
    *) if [ -f "$TX/guard.sh" ]; then echo armed; elif [ -d "$TX" ]; then echo open; else echo missing; fi ;;
  esac
}
deadline() {
  _d=; read -r _d 2>/dev/null < "$TX/deadline"
  case $_d in @NOT_EPOCH@) echo 0 ;; *) echo "$_d" ;; esac
}
# a message on one line: line breaks in it (a path) can never forge a marker line of their own
oneline() { printf '%s' "$1" | tr '\r\n' '  '; }
set_state() { printf '%s\n' "$1" > "$TX/state.tmp" && mv -f "$TX/state.tmp" "$TX/state"; }
# write "pid starttime" of this process to $1 whole: a reader never sees it empty
record_me() { me > "$1.$$" && mv -f "$1.$$" "$1"; }
take_undo_lock() {
  if mkdir "$TX/undo.lock" 2>/dev/null; then record_me "$TX/undo.lock/pid"; return 0; fi
  # the holder may be between its mkdir and its pid file: give it a moment
  [ -s "$TX/undo.lock/pid" ] || sleep 1
  if [ ! -s "$TX/undo.lock/pid" ]; then
    # a holder that died before writing it leaves an empty lock: stale after a minute
    [ -n "$(find "$TX/undo.lock" -maxdepth 0 -mmin +1 2>/dev/null)" ] || return 1
  elif alive "$TX/undo.lock/pid"; then
    return 1
  fi
  # the previous holder died mid-undo or mid-apply (a process killer, a cut connection): take over
  mv "$TX/undo.lock" "$TX/undo.lock.stale.$$" 2>/dev/null && rm -rf "$TX/undo.lock.stale.$$"
  mkdir "$TX/undo.lock" 2>/dev/null && record_me "$TX/undo.lock/pid"
}
# take the undo lock, trying $1 times 0.2 s apart
wait_undo_lock() {
  _n=0
  while ! take_undo_lock; do
    _n=$((_n + 1)); [ "$_n" -ge "$1" ] && return 1
    sleep 0.2 2>/dev/null || sleep 1
  done
}
release_undo_lock() { if alive "$TX/undo.lock/pid" && [ "$_p" = "$$" ]; then rm -rf "$TX/undo.lock"; fi; }
# through stdin: GNU sha256sum escapes odd file names and prefixes the hash with '\'
digest() {
  [ -f "$1" ] && if [ -n "${BECOME:-}" ]; then sudo -n -- sh -c 'sha256sum < "$1"' sh "$1" 2>/dev/null
  else sha256sum < "$1" 2>/dev/null; fi | cut -d ' ' -f 1
}
inode() { ls -di -- "$1" 2>/dev/null | awk 'NR == 1 { print $1 }'; }
# rename $1 to $2, never replacing or entering an existing $2; checks the result.
# 0 renamed, 1 $2 exists (nothing moved), 2 nothing at $1, 3 failed (mv's words in $_mv_err)
safe_mv() {
  _mv_err=""
  { [ -e "$1" ] || [ -L "$1" ]; } || return 2
  { [ -e "$2" ] || [ -L "$2" ]; } && return 1
  _ino=$(inode "$1")
  # GNU mv -T -n is renameat2(RENAME_NOREPLACE): atomic; elsewhere -n alone, checked below
  _mv_err=$(mv -T -n -- "$1" "$2" 2>&1) || _mv_err=$(mv -n -- "$1" "$2" 2>&1)
  if [ -e "$1" ] || [ -L "$1" ]; then { [ -e "$2" ] || [ -L "$2" ]; } && return 1; return 3; fi
  [ "$(inode "$2")" = "$_ino" ] && return 0
  # a directory appeared at $2 at the last instant and mv put $1 inside it: take it back out
  _in="$2/$(basename -- "$1")"
  if [ "$(inode "$_in")" = "$_ino" ] && mv -n -- "$_in" "$1" 2>/dev/null; then return 1; fi
  return 3
}
# owner:group of $1 as numbers
owner_of() { ls -nd -- "$1" 2>/dev/null | awk 'NR == 1 { print $3 ":" $4 }'; }
# give $1 the owner uid:gid $2 (only as far as we may); 0 when it has them afterwards
keep_owner() {
  [ "$(owner_of "$1")" = "$2" ] && return 0
  as_root chown "$2" "$1" 2>/dev/null || as_root chgrp "${2#*:}" "$1" 2>/dev/null
  [ "$(owner_of "$1")" = "$2" ]
}
# a change of a root-owned file sets BECOME=1 (inventory: become: sudo): its file commands
# then run through non-interactive sudo, never asking for a password
as_root() { if [ -n "${BECOME:-}" ]; then sudo -n -- "$@"; else "$@"; fi; }
""".replace("@NOT_EPOCH@", NOT_EPOCH)

# the one-line file helpers a read-only script needs too (changes/config_edit.py's read)
PRELUDE_HELPERS = "".join(line + "\n" for line in PRELUDE.splitlines() if line.startswith(("owner_of()", "as_root()")))

GUARD_HEADER = r"""#!/bin/sh
# opskit guard for run @RUN@ — undoes the transaction at its deadline unless confirmed.
# Generated by opskit; rewritten before every change. Safe to run again: undo is idempotent.
RUN=@RUN@
STEPS=@STEPS@
""" + PRELUDE + r"""
mode=${1:-now}
conflicts=0
failures=0
_step=""
_outcome=""
# printf, not echo (dash's echo mangles backslashes); line breaks in a message (a path) are
# folded so a message can never forge a line of its own.
say() { printf 'OPSKIT-UNDO %s %s %s\n' "$_step" "$1" "$(oneline "$2")" | tee -a "$TX/result"; _outcome=$1; }
undone() { say undone "$*"; }
not_applied() { say not_applied "$*"; }
conflict() { say conflict "$*"; conflicts=$((conflicts + 1)); }
failed() { say failed "$*"; failures=$((failures + 1)); }
disarm() {
  end_recorded "$TX/guard.pid"; rm -f "$TX/guard.pid"
  if command -v crontab >/dev/null 2>&1 && crontab -l 2>/dev/null | grep -qF "opskit-guard $RUN"; then
    crontab -l 2>/dev/null | grep -vF "opskit-guard $RUN" | crontab -
  fi
  if [ "$(cat "$LOCK/run" 2>/dev/null)" = "$RUN" ]; then rm -rf "$LOCK"; fi
}
[ -d "$TX" ] || { echo "OPSKIT-STATE missing"; exit 0; }
case $mode in
  wait)
    record_me "$TX/guard.pid"
    while :; do
      [ -d "$TX" ] || exit 0
      [ "$(state)" = armed ] || exit 0
      now=$(date +%s); dl=$(deadline)
      [ "$now" -ge "$dl" ] && break
      # short naps: a re-arm that moves the deadline (earlier, at the hold's start) is seen
      # within a second without starting a new guard
      sleep 1
    done
    echo "guard woke at $(date +%s) for deadline $(deadline)"
    # the file on disk now holds every change written ahead since this guard started
    exec sh "$TX/guard.sh" wake ;;
  wake)
    # a re-arm may have moved the deadline since the wait loop looked: keep waiting then
    case $(state) in
      failed) ;;
      armed) [ "$(date +%s)" -ge "$(deadline)" ] || exec sh "$TX/guard.sh" wait ;;
      *) exit 0 ;;
    esac ;;
  due|cron)
    # a failed undo is retried at once; an armed transaction waits for its deadline
    case $(state) in failed) ;; armed) [ "$(date +%s)" -ge "$(deadline)" ] || exit 0 ;; *) exit 0 ;; esac ;;
  now|revert|keep|finish) ;;
  *) echo "usage: guard.sh wait|wake|due|cron|now|revert|keep|finish" >&2; exit 64 ;;
esac
# an apply or another undo of this run holds the lock: the deadline's guard waits for it,
# the controller's call answers busy (run_guard asks again)
case $mode in wake|due|cron) wait_undo_lock 600 ;; *) take_undo_lock ;; esac || { echo "OPSKIT-STATE busy"; exit 75; }
trap 'release_undo_lock' EXIT
# revert (an admin's explicit `opskit rollback`) also undoes a confirmed transaction, and
# retries one that ended in conflict (once a human has sorted it out; undone steps stay
# undone), under the host lock like any change (disarm gives it back)
if [ "$mode" = revert ] && { [ "$(state)" = kept ] || [ "$(state)" = conflict ]; }; then
  if mkdir "$LOCK" 2>/dev/null; then echo "$RUN" > "$LOCK/run"
  elif [ "$(cat "$LOCK/run" 2>/dev/null)" != "$RUN" ]; then
    echo "OPSKIT-STATE locked $(cat "$LOCK/run" 2>/dev/null)"; exit 0
  fi
  set_state armed
fi
case $(state) in
  # already ended (perhaps by the guard itself a moment ago): repeat what the undo said
  kept|rolled_back|conflict|done) cat "$TX/result" 2>/dev/null; echo "OPSKIT-STATE $(state)"; disarm; exit 0 ;;
esac
if [ "$mode" = keep ]; then
  if [ "$(state)" = failed ]; then echo "OPSKIT-STATE failed"; exit 0; fi
  disarm; set_state kept; echo "OPSKIT-STATE kept"; exit 0
fi
# finish closes a transaction that changed nothing; with undo steps it undoes them instead
if [ "$mode" = finish ] && { [ "$(state)" = open ] || [ "$STEPS" = 0 ]; }; then
  disarm; set_state done; echo "OPSKIT-STATE done"; exit 0
fi
"""

GUARD_STEP = r"""
_step=@N@; _outcome=""
if [ -e "$TX/undone.@N@" ]; then
  echo "OPSKIT-UNDO @N@ done_before already undone" | tee -a "$TX/result"
else
  undo_@N@
  case $_outcome in undone|not_applied) : > "$TX/undone.@N@" ;; "") failed "undo printed no outcome" ;; esac
  [ "$_outcome" = undone ] && : > "$TX/restored"
fi
"""

GUARD_FOOTER = r"""
if [ "$conflicts" -gt 0 ]; then final=conflict
elif [ "$failures" -gt 0 ]; then final=failed
else final=rolled_back; fi
# a failed undo keeps the guard (crontab) and the lock so it is retried (cron, the next
# connection); conflicts need a human. The final state is written last: whoever sees it
# may rely on lock and guard being gone.
if [ "$final" != failed ]; then disarm; fi
set_state "$final"
echo "OPSKIT-STATE $final"
"""


def _header(run_id: str) -> str:
    return f"RUN={token(run_id)}\n" + PRELUDE


# Handlers (a reload after config edits) report on their own lines; a failed one counts as a
# failed undo, so the rollback is retried (cron, the next connection) until the server runs
# the restored files.
HANDLER_HELPERS = r"""
handled() { printf 'OPSKIT-HANDLER %s ok %s\n' "$_handler" "$(oneline "$*")" | tee -a "$TX/result"; }
handler_failed() { printf 'OPSKIT-HANDLER %s failed %s\n' "$_handler" "$(oneline "$*")" | tee -a "$TX/result"; failures=$((failures + 1)); }
"""


def _handler_functions(handlers: list[str]) -> str:
    return HANDLER_HELPERS + "".join(f"handler_{i}() {{\n_handler={i}\n{body}\n}}\n" for i, body in enumerate(handlers))


def guard_script(run_id: str, undo_bodies: list[str], handlers: list[str] | None = None) -> str:
    """The whole guard for a transaction whose steps 0..n-1 have these undo bodies. The
    handlers (sh bodies calling `handled` or `handler_failed`) run once after the undos, so a
    rollback restores the files and then the running server; not before every undo
    succeeded, and not twice."""
    run = token(run_id)
    handlers = handlers or []
    parts = [GUARD_HEADER.replace("@RUN@", run).replace("@STEPS@", str(len(undo_bodies)))]
    for index, body in enumerate(undo_bodies):
        parts.append(f"undo_{index}() {{\n{body}\n}}\n")
    if handlers:
        parts.append(_handler_functions(handlers))
    parts.append(': > "$TX/result"\n')
    for index in reversed(range(len(undo_bodies))):
        parts.append(GUARD_STEP.replace("@N@", str(index)))
    if handlers:
        # only when an undo restored something (now or in an earlier try): a change that
        # never applied leaves the running server as it was
        parts.append('if [ "$failures" -eq 0 ] && [ -e "$TX/restored" ] && [ ! -e "$TX/handled" ]; then\n'
                     + "".join(f"  handler_{i}\n" for i in range(len(handlers)))
                     + '  [ "$failures" -eq 0 ] && : > "$TX/handled"\nfi\n')
    parts.append(GUARD_FOOTER)
    return "".join(parts)


def handlers_script(run_id: str, handlers: list[str]) -> str:
    """Run the handlers once after the changes applied (the controller's side; the guard runs
    them again after undos). Prints one OPSKIT-HANDLER line per handler."""
    return ("printf '\\n'\n" + _header(run_id) + "failures=0\n" + _handler_functions(handlers)
            + "".join(f"handler_{i}\n" for i in range(len(handlers))))


def parse_handlers(text: str) -> list[tuple[int, bool, str]]:
    """Pure: OPSKIT-HANDLER lines → [(handler index, ok, message)]."""
    out = []
    for line in text.split("\n"):
        parts = line.split(" ", 3)
        if line.startswith("OPSKIT-HANDLER ") and len(parts) >= 3 and parts[1].isdigit():
            out.append((int(parts[1]), parts[2] == "ok", parts[3] if len(parts) > 3 else ""))
    return out


# A cron daemon of any usual name: a crontab line without one never runs.
_CRON_DAEMON = "ps -e -o comm= 2>/dev/null | grep -Eqx '(cron|crond|cronie|busybox|anacron|fcron|dcron)'"


def arm_script(run_id: str, seconds: int) -> str:
    """(Re)set the deadline to `seconds` from now on the host's clock and schedule the guard
    so it survives the SSH session and the controller. Re-arming replaces the previous guard."""
    return "printf '\\n'\n" + _header(run_id) + _arm_body(run_id, seconds)


def _arm_body(run_id: str, seconds: int) -> str:
    run = token(run_id)
    return f"""
case $(state) in open|armed) ;; *) echo "OPSKIT-ARMED refused $(state)"; exit 3 ;; esac
# atomically: a guard reading a half-written deadline would take it as overdue
echo $(( $(date +%s) + {int(seconds)} )) > "$TX/deadline.tmp" && mv -f "$TX/deadline.tmp" "$TX/deadline"
set_state armed
# a guard of this transaction is already waiting (and a crontab line in place, if any): it
# reads the new deadline within a second and runs the guard file on disk when it wakes
if alive "$TX/guard.pid" && [ -s "$TX/mechanism" ]; then
  read -r mech < "$TX/mechanism"; echo "OPSKIT-ARMED $mech $(deadline)"; exit 0
fi
cp "$TX/guard.pid" "$TX/guard.pid.old" 2>/dev/null
mech=detached
# the crontab line goes in before the detached guard starts: a guard that fires at once
# (a short hold) must find it there to remove it
if command -v crontab >/dev/null 2>&1; then
  line='* * * * * sh "$HOME/.opskit/tx/{run}/guard.sh" cron >>"$HOME/.opskit/tx/{run}/guard.log" 2>&1 # opskit-guard {run}'
  if {{ crontab -l 2>/dev/null | grep -vF 'opskit-guard {run}'; echo "$line"; }} | crontab - 2>/dev/null; then
    if {_CRON_DAEMON}; then mech="detached+crontab"; else mech="detached+crontab-no-daemon"; fi
  fi
fi
echo "$mech" > "$TX/mechanism"
if command -v setsid >/dev/null 2>&1; then
  nohup setsid sh "$TX/guard.sh" wait >>"$TX/guard.log" 2>&1 </dev/null &
else
  nohup sh "$TX/guard.sh" wait >>"$TX/guard.log" 2>&1 </dev/null &
fi
# the new guard runs before the old one goes, so a cut connection never leaves none
[ -f "$TX/guard.pid.old" ] && {{ end_recorded "$TX/guard.pid.old"; rm -f "$TX/guard.pid.old"; }}
echo "OPSKIT-ARMED $mech $(deadline)"
"""


def heredoc(target: str, content: str, *, exact: bool, as_root: bool = False) -> str:
    """sh that writes `content` to target (a quoted sh word) from a here-document. With
    exact, the bytes are written as they are (head -c drops the newline a here-document
    must end with); otherwise a missing final newline is added. as_root writes through
    `as_root tee` (a folder only root may write to)."""
    data = content if content.endswith("\n") else content + "\n"
    while True:
        marker = "OPSKIT_EOF_" + secrets.token_hex(8)
        if marker not in data:
            break
    if exact and as_root:
        return f"head -c {len(content.encode())} <<'{marker}' | as_root tee {target} > /dev/null\n{data}{marker}\n"
    if exact:
        return f"head -c {len(content.encode())} > {target} <<'{marker}'\n{data}{marker}\n"
    return f"cat > {target} <<'{marker}'\n{data}{marker}\n"


def _heredoc_file(path_expr: str, content: str, mode: str) -> str:
    """sh that writes `content` to path_expr atomically (temp file + rename), verbatim."""
    temp = path_expr[:-1] + '.opskit-tmp"'   # path_expr is a double-quoted "$TX/name"
    return (heredoc(temp, content, exact=False).replace("\n", f" || fail {path_expr}\n", 1)
            + f"chmod {mode} {temp} && mv -f {temp} {path_expr} || fail {path_expr}\n")


def write_ahead_script(run_id: str, records_json: str, guard_text: str, *, require_armed: bool,
                       arm_seconds: int | None, restore: dict[str, str] | None = None) -> str:
    """One exec (script on stdin) that writes the undo records and the guard on the host and,
    for the first change, arms the guard; later changes first check the transaction is still
    armed (the guard may have ended it). Prints OPSKIT-WRITTEN, then arm_script's line.

    restore: re-create a transaction whose folder was removed on the host, from the
    controller's journal: {backup name under $TX/files: content}, state armed, overdue."""
    check = ('case $(state) in armed) ;; *) '
             'echo "OPSKIT-WRITE refused $(state)"; exit 3 ;; esac\n') if require_armed else ""
    rebuild = ""
    if restore is not None:
        rebuild = 'mkdir -p "$TX/files" || fail "$TX"\n'
        for name, content in sorted(restore.items()):
            rebuild += heredoc(f'"$TX/files/{token(name)}"', content, exact=True).replace("\n", ' || fail "$TX"\n', 1)
        rebuild += ('echo 0 > "$TX/deadline"; set_state armed\n'
                    'mkdir "$LOCK" 2>/dev/null && echo "$RUN" > "$LOCK/run"\n')
    return (
        "printf '\\n'\n" + _header(run_id)
        + 'fail() { rm -f "$TX/records.json.opskit-tmp" "$TX/guard.sh.opskit-tmp"; '
        'echo "OPSKIT-WRITE failed $1 (the disk may be full or over quota)"; exit 4; }\n'
        + '[ -d "$TX" ] || { ' + ('mkdir -p "$TX" || fail "$TX"; ' if restore is not None else
                                 'echo "OPSKIT-WRITE refused missing"; exit 3; ') + '}\n'
        + rebuild + check
        + _heredoc_file('"$TX/records.json"', records_json, "600")
        + _heredoc_file('"$TX/guard.sh"', guard_text, "700")
        + "echo OPSKIT-WRITTEN\n"
        + (_arm_body(run_id, arm_seconds) if arm_seconds is not None else "")
    )


def apply_script(run_id: str, index: int, body: str) -> str:
    """One exec that applies step `index` only while the transaction is armed and before its
    deadline, under the undo lock: an undo (the guard, `opskit rollback`) and an apply never
    interleave, and nothing lands after the transaction ended. `body` calls `applied MSG` or
    `apply_failed MSG` (or `apply_conflict MSG`: someone else changed the target since opskit
    read it). Prints OPSKIT-APPLY ok|failed|conflict|refused|busy ..."""
    n = int(index)
    return (
        "printf '\\n'\n" + _header(run_id)
        + 'applied() { printf "OPSKIT-APPLY ok %s\\n" "$(oneline "$*")"; exit 0; }\n'
        + 'apply_failed() { printf "OPSKIT-APPLY failed %s\\n" "$(oneline "$*")"; exit 5; }\n'
        + 'apply_conflict() { printf "OPSKIT-APPLY conflict %s\\n" "$(oneline "$*")"; exit 5; }\n'
        + '[ -d "$TX" ] || { echo "OPSKIT-APPLY refused missing"; exit 3; }\n'
        + 'wait_undo_lock 100 || { echo "OPSKIT-APPLY busy"; exit 75; }\n'
        + "trap 'release_undo_lock' EXIT\n"
        + 'st=$(state); [ "$st" = armed ] || { echo "OPSKIT-APPLY refused $st"; exit 3; }\n'
        + '[ "$(date +%s)" -lt "$(deadline)" ] || { echo "OPSKIT-APPLY refused overdue"; exit 3; }\n'
        + f'[ -e "$TX/undone.{n}" ] && {{ echo "OPSKIT-APPLY refused undone"; exit 3; }}\n'
        + body + "\n"
        + 'apply_failed "the apply printed no outcome"\n'
    )


def parse_apply(text: str) -> tuple[str, str]:
    """Pure: apply_script output → (verdict, message); verdict ok|failed|conflict|refused|busy|none."""
    for line in text.split("\n"):
        if line.startswith("OPSKIT-APPLY "):
            parts = line.split(" ", 2)
            return parts[1], parts[2] if len(parts) > 2 else ""
    return "none", ""


@dataclass(frozen=True)
class WriteAheadAnswer:
    written: bool
    refused_state: str | None = None   # the transaction was no longer armed (its state)
    failure: str = ""                  # why the records could not be written


def parse_write_ahead(text: str) -> WriteAheadAnswer:
    """Pure: write_ahead_script output → WriteAheadAnswer."""
    lines = text.split("\n")
    line = next((line for line in lines if line.startswith("OPSKIT-WRITE ")), "")
    if line.startswith("OPSKIT-WRITE refused"):
        return WriteAheadAnswer(False, line.split()[-1])
    return WriteAheadAnswer("OPSKIT-WRITTEN" in lines, None, line[len("OPSKIT-WRITE "):])


@dataclass(frozen=True)
class ArmAnswer:
    mechanism: str | None         # detached, detached+crontab...; None when refused
    host_deadline: int | None     # the host's epoch at which the guard undoes
    text: str                     # the answer line as printed (for errors)


def parse_armed(text: str) -> ArmAnswer:
    """Pure: arm_script output (also the tail of write_ahead_script's) → ArmAnswer."""
    words = next((line.split() for line in text.split("\n") if line.startswith("OPSKIT-ARMED ")), [])
    if len(words) < 3 or words[1] == "refused" or not words[2].isdigit():
        return ArmAnswer(None, None, " ".join(words))
    return ArmAnswer(words[1], int(words[2]), " ".join(words))


def release_script(run_id: str) -> str:
    """Give up a transaction that never changed anything: drop its folder and our lock."""
    run = token(run_id)
    # Only called right after our hello acquired the lock, so the lock is ours even when a
    # full disk left its files empty.
    return (f'TX="$HOME/.opskit/tx/{run}"; case $(cat "$TX/state" 2>/dev/null) in open|"") rm -rf "$TX" ;; esac; '
            f'case $(cat "$HOME/.opskit/lock/run" 2>/dev/null) in {run}|"") rm -rf "$HOME/.opskit/lock" ;; esac; true')


def run_guard(run_id: str, mode: str, wait: float = 60.0) -> str:
    """Run the guard in `mode`; while another undo of the same run is under way
    (the guard woke at the deadline just as we asked), wait for it, then report.
    A transaction whose folder is gone answers OPSKIT-STATE missing."""
    run = token(run_id)
    tx = f'"$HOME/.opskit/tx/{run}/guard.sh"'
    tries = max(1, int(wait / 0.2))
    return (f"printf '\\n'; [ -f {tx} ] || {{ echo 'OPSKIT-STATE missing'; exit 0; }}; "
            f"i=0; while :; do out=$(sh {tx} {token(mode)} 2>&1); rc=$?; "
            f"[ $rc -eq 75 ] && [ $i -lt {tries} ] || break; i=$((i + 1)); sleep 0.2; done; "
            "printf '%s\n' \"$out\"; exit $rc")


@dataclass
class UndoReport:
    """What one guard invocation said."""

    state: str | None = None
    steps: dict[int, tuple[str, str]] = field(default_factory=dict)   # step → (outcome, message)
    handlers: list[tuple[int, bool, str]] = field(default_factory=list)   # (handler, ok, message)

    @property
    def conflicts(self) -> list[str]:
        return [msg for outcome, msg in self.steps.values() if outcome == "conflict"]

    @property
    def failures(self) -> list[str]:
        return [msg for outcome, msg in self.steps.values() if outcome == "failed"]


def parse_output(text: str) -> UndoReport:
    """Pure: guard output → UndoReport. Unknown lines are ignored."""
    report = UndoReport()
    for line in text.split("\n"):   # only \n: str.splitlines() also breaks at \r, \v, U+2028...
        if line.startswith("OPSKIT-UNDO "):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1].isdigit():
                report.steps[int(parts[1])] = (parts[2], parts[3] if len(parts) > 3 else "")
        elif line.startswith("OPSKIT-STATE "):
            report.state = line.split(" ", 1)[1].strip()
    report.handlers = parse_handlers(text)
    return report


def hello_script(run_id: str | None, lock_seconds: int | None, read_only: bool = False, keep: int = 20) -> str:
    """First exec of every connection: home, host clock, finish overdue transactions (and
    retry failed undos), prune old finished transactions (keep the newest `keep`), and (for
    a run that changes things) take the host lock.

    Prints: OPSKIT-HOME <home> / OPSKIT-NOW <epoch> / OPSKIT-RECOVER <run> <guard line>... /
            OPSKIT-LOCK acquired|held <run> <state> <deadline>|error <why> / OPSKIT-ERROR <why>
    """
    lines = [
        "printf '\\n'",
        'umask 077; PATH="$PATH:/usr/sbin:/sbin"',
        'printf "OPSKIT-HOME %s\\n" "$HOME"',
        'now=$(date +%s); echo "OPSKIT-NOW $now"',
        # --check touches nothing, not even our own folder: it only reports overdue runs.
        ':' if read_only else
        '{ mkdir -p "$HOME/.opskit/tx" && chmod 700 "$HOME/.opskit" "$HOME/.opskit/tx" && [ -w "$HOME/.opskit/tx" ]; } '
        '|| echo "OPSKIT-ERROR cannot create or write $HOME/.opskit (permissions, quota, read-only home?)"',
        f'num() {{ case $1 in {NOT_EPOCH}) echo 0 ;; *) echo "$1" ;; esac; }}',
        # A guard killed by the host (shared hosts kill background jobs) leaves an armed,
        # overdue transaction, and a failed undo waits for a retry: finish them now.
        # (builtins only in the loop: a host with many transactions pays no fork per folder)
        'for d in "$HOME"/.opskit/tx/*/; do',
        '  [ -f "$d/guard.sh" ] || continue',
        '  r=${d%/}; r=${r##*/}; st=; read -r st 2>/dev/null < "$d/state"',
        '  case $st in open|kept|rolled_back|conflict|done) continue ;; esac',
        f'  dl=; read -r dl 2>/dev/null < "$d/deadline"; case $dl in {NOT_EPOCH}) dl=0 ;; esac',
        '  if [ "$st" = failed ] || [ "$now" -ge "$dl" ]; then',
        '    echo "OPSKIT-OVERDUE $r"' if read_only else
        '    sh "$d/guard.sh" due 2>&1 | sed "s/^/OPSKIT-RECOVER $r /"',
        '  fi',
        'done',
    ]
    if not read_only:
        # finished transactions pile up (backups of edited files among them): keep the newest
        lines += [
            'ls -1 "$HOME/.opskit/tx" 2>/dev/null | sort -r | { i=0; while IFS= read -r r; do',
            '  st=; read -r st 2>/dev/null < "$HOME/.opskit/tx/$r/state"',
            '  case $st in kept|rolled_back|done) ;; *) continue ;; esac',
            f'  i=$((i + 1)); [ "$i" -gt {int(keep)} ] && rm -rf "$HOME/.opskit/tx/$r"',
            'done; }',
        ]
    if read_only:
        # --check takes no lock, but says whether a real run would find one
        lines.append('[ -f "$HOME/.opskit/lock/run" ] && echo "OPSKIT-LOCKED $(cat "$HOME/.opskit/lock/run")"')
    if run_id:
        run = token(run_id)
        lines += [
            f'RUN={run}; LOCK="$HOME/.opskit/lock"',
            'take() { mkdir "$LOCK" 2>/dev/null || return 1; echo "$RUN" > "$LOCK/run"; '
            f'echo $((now + {int(lock_seconds or 3600)})) > "$LOCK/expires"; mkdir -p "$HOME/.opskit/tx/$RUN"; '
            'printf "open\\n" > "$HOME/.opskit/tx/$RUN/state"; echo "OPSKIT-LOCK acquired"; }',
            'if ! take; then',
            '  if [ ! -d "$LOCK" ]; then echo "OPSKIT-LOCK error cannot create $LOCK"; else',
            # a lock just taken may not have its run file yet: look again a moment later
            '  holder=$(cat "$LOCK/run" 2>/dev/null); [ -n "$holder" ] || { sleep 1; holder=$(cat "$LOCK/run" 2>/dev/null); }',
            '  hst=$(cat "$HOME/.opskit/tx/$holder/state" 2>/dev/null)',
            '  case $hst in open|armed|kept|rolled_back|conflict|failed|done) ;; *) '
            '[ -f "$HOME/.opskit/tx/$holder/guard.sh" ] && hst=armed || hst=missing ;; esac',
            '  exp=$(num "$(cat "$LOCK/expires" 2>/dev/null)"); hdl=$(num "$(cat "$HOME/.opskit/tx/$holder/deadline" 2>/dev/null)")',
            '  case $hst in',
            # A finished transaction, or a lock whose run never armed and whose lease ran out, is stale.
            # 'failed' is not stale: its guard stays scheduled to retry the undo.
            '    kept|rolled_back|conflict|done|missing) stale=1 ;;',
            '    open) [ "$now" -ge "$exp" ] && stale=1 || stale=0 ;;',
            '    *) stale=0 ;;',
            '  esac',
            '  if [ "$stale" = 1 ] && [ -n "$holder" ]; then rm -rf "$LOCK"; take || echo "OPSKIT-LOCK held $holder $hst $hdl"; ',
            # no run file yet: another hello may be between its mkdir and writing it;
            # only a lock left like that for over a minute is stale
            '  elif [ -z "$holder" ] && [ -n "$(find "$LOCK" -maxdepth 0 -mmin +1 2>/dev/null)" ]; then rm -rf "$LOCK"; take || echo "OPSKIT-LOCK held unknown missing 0"; ',
            '  else echo "OPSKIT-LOCK held ${holder:-unknown} $hst $hdl"; fi',
            '  fi',
            'fi',
        ]
    return "\n".join(lines) + "\n"


@dataclass
class Hello:
    home: str | None = None
    now: int | None = None
    lock: str | None = None                 # acquired | held | error | None (not asked)
    holder: str | None = None
    holder_state: str | None = None
    holder_deadline: int | None = None
    recovered: dict[str, list[str]] = field(default_factory=dict)   # run → guard lines
    overdue: list[str] = field(default_factory=list)                # runs a --check saw but left alone
    errors: list[str] = field(default_factory=list)                 # what the host could not do


def parse_hello(text: str) -> Hello:
    """Pure: hello_script output → Hello."""
    hello = Hello()
    for line in text.split("\n"):   # only \n: str.splitlines() also breaks at \r, \v, U+2028...
        if line.startswith("OPSKIT-HOME "):
            hello.home = line[len("OPSKIT-HOME "):]
        elif line.startswith("OPSKIT-NOW "):
            value = line.split()[1] if len(line.split()) > 1 else ""
            hello.now = int(value) if value.isdigit() else None
        elif line.startswith("OPSKIT-RECOVER "):
            parts = line.split(" ", 2)
            if len(parts) == 3:
                hello.recovered.setdefault(parts[1], []).append(parts[2])
        elif line.startswith("OPSKIT-LOCKED "):
            hello.holder = line.split(" ", 1)[1].strip() or None
        elif line.startswith("OPSKIT-OVERDUE "):
            hello.overdue.append(line.split()[1] if len(line.split()) > 1 else "?")
        elif line.startswith("OPSKIT-ERROR "):
            hello.errors.append(line[len("OPSKIT-ERROR "):])
        elif line.startswith("OPSKIT-LOCK "):
            parts = line.split()
            hello.lock = parts[1] if len(parts) > 1 else None
            if hello.lock == "error":
                hello.errors.append(line.split(" ", 2)[2] if len(parts) > 2 else "cannot take the host lock")
            if hello.lock == "held" and len(parts) >= 5:
                hello.holder, hello.holder_state = parts[2], parts[3]
                hello.holder_deadline = int(parts[4]) if parts[4].isdigit() else None
    return hello
