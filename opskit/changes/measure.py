"""measure_probe: the temporary PHP file `check-timeouts --measure` requests, as a change with undo.

    - change: measure_probe
      with: {root: "{{ steps.fpm.php_timeouts.docroot }}", url: "{{ host.wordpress.url }}", max: "{{ run.measure_max }}"}

It is write_file's change (journaled before it lands, written 0644 through a 0600 temp file,
undone by the guard — also when the controller dies — only while the file still has the
bytes opskit wrote) with a name no one can guess: opskit-measure-<32 hex digits>.php in the
site's document root. The script refuses to run once it is older than its lifetime (twice
the measurement's longest request, plus 15 minutes), so even a probe someone kept with
`opskit confirm` stops answering. See opskit/checks/measure.py for what is measured.
"""

from __future__ import annotations

import posixpath
import secrets
import stat as stat_module
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, field_validator

from opskit.changes.files import WriteFile, sha256
from opskit.duration import parse_duration
from opskit.steps import Context, Plan, register

PREFIX = "opskit-measure-"
LONGEST = 3600

PROBE_PHP = r"""<?php
// opskit check-timeouts --measure (run @RUN@): a temporary probe. opskit's undo removes it at
// the end of the run, and it answers nothing once it is older than @LIFETIME@ seconds.
// mode=wall sleeps, mode=cpu spins; each stops by itself after max seconds (at most @MAX@),
// and prints nothing before: a layer that ends it meanwhile decides what the client gets.
if (time() - filemtime(__FILE__) > @LIFETIME@) { http_response_code(410); exit; }
$mode = isset($_GET['mode']) && $_GET['mode'] === 'cpu' ? 'cpu' : 'wall';
$max = isset($_GET['max']) ? min((float) $_GET['max'], @MAX@) : @MAX@;
$start = microtime(true);
if ($mode === 'cpu') {
    $n = 0;
    while (microtime(true) - $start < $max) {
        for ($i = 0; $i < 200000; $i++) { $n++; }
    }
} else {
    while (($left = $max - (microtime(true) - $start)) > 0) {
        usleep((int) (min($left, 0.25) * 1000000));
    }
}
header('Content-Type: text/plain');
header('Cache-Control: no-store');
printf("OPSKIT-MEASURE survived mode=%s seconds=%.3f\n", $mode, microtime(true) - $start);
"""


class MeasureProbeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    root: str | None           # the site's document root (None: unknown, the step is blocked)
    url: str | None = None     # the site's public URL: its path is where the root is served
    max: float = 120           # the longest a measuring request may last (seconds or a duration)

    @field_validator("max", mode="before")
    @classmethod
    def _duration(cls, value):
        if isinstance(value, str):
            return parse_duration(value, maximum=LONGEST)
        return value


def probe_php(run_id: str, max_seconds: float) -> str:
    lifetime = int(2 * max_seconds + 900)
    return (PROBE_PHP.replace("@RUN@", run_id).replace("@LIFETIME@", str(lifetime))
            .replace("@MAX@", f"{float(max_seconds):g}"))


@register
class MeasureProbe(WriteFile):
    """Upload the measurement's PHP probe under a random name into the docroot; undo removes it."""

    name = "measure_probe"
    Params = MeasureProbeParams

    def plan(self, params: MeasureProbeParams, ctx: Context) -> Plan:
        # nothing to upload into: a no-op whose reason the measurement reports (the static findings stand)
        nothing = {"url_path": None, "name": None}
        if not 1 <= params.max <= LONGEST:
            return Plan("upload the measurement probe", blocked=f"--measure-max must be 1s to {LONGEST}s")
        if not ctx.host.origin:
            return Plan("upload the measurement probe", record=nothing,
                        noop="no origin in the inventory: the probe is requested straight from the origin")
        if not params.root:
            return Plan("upload the measurement probe", record=nothing,
                        noop="the site's document root is unknown (set wordpress.root in the inventory)")
        root = ctx.path(params.root)
        attrs = ctx.session.stat(root)
        if attrs is None or not stat_module.S_ISDIR(attrs.st_mode or 0):
            return Plan(f"upload the measurement probe into {root}", record=nothing,
                        noop=f"{root} is not a folder on the host")
        name = f"{PREFIX}{secrets.token_hex(16)}.php"
        path = posixpath.join(root, name)
        content = probe_php(ctx.run_id, params.max)
        prefix = urlsplit(params.url).path.rstrip("/") if params.url else ""
        record = {"path": path, "existed": False, "orig_sha256": None, "orig_mode": None, "orig_owner": None,
                  "new_sha256": sha256(content.encode()), "mode": 0o644, "content": content,
                  "name": name, "url_path": f"{prefix}/{name}", "max": params.max}
        return Plan(f"create {path} (the measurement probe, removed at the end of the run)", record=record,
                    diff=f"+ {path} ({len(content)} bytes of PHP: sleeps or spins until something ends it, "
                         f"at most {params.max:g}s)\n")
