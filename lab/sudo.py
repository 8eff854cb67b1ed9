"""Grant a lab user password-less sudo for one test, the way an admin does on a VPS
(/etc/sudoers.d/NAME, checked with visudo), and take it back afterwards.

    with sudo_for("opskit-t2"):
        ...   # the user's `sudo -n` works
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from pathlib import Path


@contextlib.contextmanager
def sudo_for(user: str):
    if not shutil.which("sudo"):
        raise RuntimeError("sudo is not installed: apt-get install sudo (see .ci/run)")
    drop_in = Path("/etc/sudoers.d") / f"opskit-lab-{user}"
    drop_in.write_text(f"{user} ALL=(root) NOPASSWD: ALL\n")
    drop_in.chmod(0o440)
    try:
        subprocess.run(["visudo", "-cf", str(drop_in)], check=True, capture_output=True)
        yield drop_in
    finally:
        drop_in.unlink(missing_ok=True)
