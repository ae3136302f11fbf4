"""Counting semaphores across processes on one machine: at most `limit` holders of a named slot.

Used to keep the GPU step within its configured limit whatever runs it (`adrag` in-process runs,
Dagster's multiprocess executor, daemon-launched runs). A slot is an OS
file lock, so a process killed while holding one releases it: no slot leaks after a crash.
The asset's Dagster `pool="gpu"` says the same for deployments that configure pool limits.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

POLL_S = 0.05


@contextmanager
def slot(folder: Path, name: str, limit: int, timeout_s: float = 24 * 3600) -> Iterator[int]:
    """Hold one of `limit` slots called `name`; yields the slot number."""
    if limit < 1:
        raise ValueError(f"slot limit for {name!r} must be at least 1, got {limit}")
    folder.mkdir(parents=True, exist_ok=True)
    locks = [FileLock(str(folder / f"{name}-{i}.lock")) for i in range(limit)]
    deadline = time.monotonic() + timeout_s
    while True:
        for number, lock in enumerate(locks):
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue
            try:
                yield number
            finally:
                lock.release()
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout_s:.0f}s for one of {limit} {name!r} slots")
        time.sleep(POLL_S)
