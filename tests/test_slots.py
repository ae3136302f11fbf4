"""Slots keep concurrent holders within the limit, across threads and processes, and a killed
holder frees its slot."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from assets_pkg.slots import slot

REPO = Path(__file__).resolve().parent.parent


def test_at_most_limit_holders_at_once(tmp_path):
    active, peak, lock = [0], [0], threading.Lock()

    def work():
        with slot(tmp_path, "gpu", limit=2):
            with lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            time.sleep(0.2)
            with lock:
                active[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(6)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 2
    assert time.perf_counter() - started >= 0.6  # 6 jobs of 0.2 s, 2 at a time


def test_a_killed_holder_releases_its_slot(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from assets_pkg.slots import slot\n"
         "with slot(Path(sys.argv[1]), 'gpu', 1):\n    print('holding', flush=True); time.sleep(60)", str(tmp_path)],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "holding"
    got = []
    waiter = threading.Thread(target=lambda: got.append(slot(tmp_path, "gpu", 1, timeout_s=30).__enter__()))
    waiter.start()
    time.sleep(0.3)
    assert not got, "the slot is taken while the holder lives"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    waiter.join(timeout=10)
    assert got == [0]
