"""Whole-file writes that a reader never sees half done: a temp file in the same folder, then a rename.

The temp file sits beside its target because `os.replace` is only atomic within one file system.
It is fsynced before the rename, so a machine that loses power keeps the old file or the new one,
never an empty one under the final name.

Its name carries the writer's pid (`.tmp-<pid>-<random><suffix>`): a writer killed between the
write and the rename leaves it behind, and a later run can tell such an orphan (its pid no longer
runs) from a file another live process is still writing, and delete only the orphan. The leading
dot keeps it out of folder scans that skip hidden files.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

TEMP_PREFIX = ".tmp-"


def write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TEMP_PREFIX}{os.getpid()}-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_orphan_temp_files(folder: Path) -> list[Path]:
    """Delete temp files left by writers that were killed mid-write (their pid no longer runs)."""
    removed = []
    for tmp in folder.glob(f"{TEMP_PREFIX}*") if folder.is_dir() else []:
        pid = tmp.name[len(TEMP_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _running(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    return True
