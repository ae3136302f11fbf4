"""Run a server command as a child and stop everything it started when we are stopped.

`dagster dev` started in place of `adrag ui` (exec) ignored a SIGTERM sent to it alone: its webserver,
daemon and code server stayed up holding the port and the instance. So `adrag ui` runs it in a
process group of its own and, on SIGINT or SIGTERM, signals that whole group: SIGTERM, then SIGKILL
to whatever is left after a grace period.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

GRACE_S = 8.0


def run_supervised(command: Sequence[str], env: Mapping[str, str], cwd: Path, grace_s: float = GRACE_S) -> int:
    """Run `command` until it exits (its exit status) or we get SIGINT/SIGTERM (then 0 once its group is gone)."""
    stopping: list[int] = []

    def stop(signum, _frame) -> None:
        stopping.append(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    child = subprocess.Popen(list(command), env=dict(env), cwd=cwd, start_new_session=True)
    try:
        while child.poll() is None and not stopping:
            time.sleep(0.2)
        return 0 if stopping else child.returncode
    finally:
        stop_group(child, grace_s)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stop_group(child: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM to the child's process group, SIGKILL to what is left after `grace_s` (the group outlives
    its leader when the leader exits first and leaves a daemon behind)."""
    if not _signal_group(child.pid, signal.SIGTERM):
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        child.poll()  # reap the leader
        if not _group_alive(child.pid):
            return
        time.sleep(0.2)
    _signal_group(child.pid, signal.SIGKILL)
    child.wait()


def _group_alive(pgid: int) -> bool:
    """Whether a process of the group still runs. Zombies do not count: members that outlived the leader
    are reparented to pid 1, which in a container may never reap them, and signal 0 still reaches a zombie."""
    proc = Path("/proc")
    if not proc.is_dir():
        return _signal_group(pgid, 0)
    for stat in proc.glob("[0-9]*/stat"):
        try:
            # "pid (comm) state ppid pgrp ...": comm may hold spaces, so split after its ")".
            state, _ppid, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue
        if int(pgrp) == pgid and state != "Z":
            return True
    return False


def _signal_group(pgid: int, sig: int) -> bool:
    """Send `sig` to the group; False when no process of it is left (signal 0 just asks)."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:  # only zombies left, on some systems
        return False
