"""The embedding step in-process vs on Ray (a local Ray, CPU actors), on the same images.

    .venv/bin/python benchmarks/bench_ray.py [--images 2000] [--model ViT-B-32] [--batch-size 32] [--configs ...]

Makes N distinct photo-like 800x600 JPEGs (~120 KB; 64 different pictures, each file made distinct by a
JPEG comment, so decoding and encoding cost what a real photo costs), writes them to a folder and builds
the Delta mirror from it (setup, not timed). Then runs the embedding step's code (`sync_embeddings` with
the encoder `ClipModel.image_encoder()` returns, the asset's own path) into a fresh table per config:
  in-process           ADRAG_RAY_ADDRESS empty
  ray-1x2              ADRAG_RAY_ADDRESS=local, 1 actor with 2 CPUs (all of a 2-core machine)
  ray-1x1              1 actor with 1 CPU
  ray-2x1              2 actors with 1 CPU each
Each Ray config starts its own local Ray and shuts it down (what `local` does in a run). Prints, per config,
the step's wall time including the cluster start, the cluster start itself, the time excluding it, when
the first vectors came back (cluster + actor start + model load + first call), images/s with and without
the cluster start and after the first vectors (the pool at work), the CPU seconds of this process and
every process under it (Ray's included; a cost a busy neighbour inflates far less than wall time), and
the lowest cosine of an image's vector to the in-process one; then the ratios of the targets, measured in this run:
Ray with 1 actor at most 1.3x the in-process time, 2 actors at least 1.6x faster than 1.
Random weights: no download. Exits non-zero when a cosine is below 0.9999.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_embeddings import photo_jpegs  # noqa: E402

from assets_pkg.catalog.mirror import sync_mirror  # noqa: E402
from assets_pkg.catalog.scan import scan_folder  # noqa: E402
from assets_pkg.embeddings.model import RANDOM  # noqa: E402
from assets_pkg.embeddings.resources import ClipModel  # noqa: E402
from assets_pkg.embeddings.store import read_vectors, sync_embeddings  # noqa: E402

MIN_COSINE = 0.9999
CONFIGS = {  # name -> (ADRAG_RAY_ADDRESS, actors, CPUs per actor)
    "in-process": ("", 0, 1),
    "ray-1x2": ("local", 1, 2),
    "ray-1x1": ("local", 1, 1),
    "ray-2x1": ("local", 2, 1),
}


def distinct_jpegs(n: int, size=(800, 600), pictures: int = 64, seed: int = 0) -> list[bytes]:
    """n different JPEG files: `pictures` photo-like pictures (bench_embeddings'), each file tagged by a JPEG
    comment (COM segment)."""
    base = photo_jpegs(min(n, pictures), size=size, seed=seed, distinct=pictures)
    files = []
    for k in range(n):
        data, comment = base[k % len(base)], f"bench-ray {k}".encode()
        segment = b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment
        files.append(data[:2] + segment + data[2:])  # right after SOI
    return files


class TreeCpu:
    """CPU seconds (user + system) used by this process and every process under it (Ray's GCS, raylet and
    workers for a local Ray) while the block runs, from /proc sampled every `interval` s: a cost that a busy
    neighbour does not inflate the way it inflates wall time. A process's last up to `interval` s before it
    exits are missed."""

    def __init__(self, interval: float = 0.25):
        self.interval, self.root = interval, os.getpid()
        self.tick = os.sysconf("SC_CLK_TCK")
        self.last: dict[tuple[int, int], float] = {}
        self.stop = threading.Event()
        self.seconds = 0.0

    def _tree(self) -> dict[tuple[int, int], float]:
        stats = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                # after "pid (comm)": state ppid ... utime stime (fields 14, 15) ... starttime (22)
                stats[int(entry)] = (int(fields[1]), int(fields[19]), (int(fields[11]) + int(fields[12])) / self.tick)
        children: dict[int, list[int]] = {}
        for pid, (ppid, _, _) in stats.items():
            children.setdefault(ppid, []).append(pid)
        tree, todo = {}, [self.root]
        while todo:
            pid = todo.pop()
            if pid in stats:
                tree[(pid, stats[pid][1])] = stats[pid][2]
                todo.extend(children.get(pid, []))
        return tree

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            self.last.update(self._tree())

    def __enter__(self) -> TreeCpu:
        self.baseline = self._tree()
        self.last = dict(self.baseline)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self.last.update(self._tree())
        self.seconds = sum(v - self.baseline.get(k, 0.0) for k, v in self.last.items())


def run_config(name: str, model: str, batch_size: int, table: Path, mirror: Path) -> dict:
    address, actors, cpus = CONFIGS[name]
    clip = ClipModel(model_name=model, weights=RANDOM, device="cpu", batch_size=batch_size,
                     ray_address=address, ray_actors=actors, ray_cpus_per_actor=cpus)
    seen: list[tuple[int, float]] = []  # (images done, seconds into the encoding) per batch that came back
    with TreeCpu() as cpu:
        started = time.perf_counter()
        encoder = clip.image_encoder()
        changes = sync_embeddings(table, mirror, encoder, lambda done, _, seconds: seen.append((done, seconds)))
        total = time.perf_counter() - started
    (done_1, at_1), (done_n, at_n) = seen[0], seen[-1]
    timings = getattr(encoder, "timings", {})
    start = timings.get("connect_s", 0.0)
    if name == "in-process":
        encoder.close()
    return {"name": name, "device": encoder.device, "embedded": changes.embedded, "failed": len(changes.failed),
            "total": total, "start": start, "excl": total - start, "first": timings.get("first_batch_s"),
            "cpu": cpu.seconds, "steady": (done_n - done_1) / (at_n - at_1) if at_n > at_1 else float("nan"), "key": encoder.model_key}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder, removed after")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        work = args.workdir or Path(tmp)
        images, mirror = work / "images", work / "mirror"
        started = time.perf_counter()
        images.mkdir(parents=True, exist_ok=True)
        files = distinct_jpegs(args.images)
        for k, data in enumerate(files):
            (images / f"{k:05d}.jpg").write_bytes(data)
        sync_mirror(mirror, scan_folder(images).manifest, images)
        print(f"{args.model} (random weights) on CPU, {os.cpu_count()} cores, batch {args.batch_size}; "
              f"{len(files)} distinct JPEGs 800x600, mean {np.mean([len(b) for b in files]) / 1024:.0f} KB; "
              f"setup (images + mirror) {time.perf_counter() - started:.1f} s; load average {os.getloadavg()[0]:.1f}")

        results = {}
        for n, name in enumerate(args.configs):
            results[name] = run_config(name, args.model, args.batch_size, work / f"embeddings-{n}", mirror)
            results[name]["table"] = work / f"embeddings-{n}"
            r = results[name]
            print(f"  ran {name}: {r['total']:.1f} s ({r['device']}), load average {os.getloadavg()[0]:.1f}",
                  flush=True)

        reference = _vectors(results.get("in-process"))
        print(f"\n{'config':<11} {'device':<28} {'total s':>8} {'start s':>8} {'excl. s':>8} {'1st vec s':>9} "
              f"{'img/s':>7} {'img/s excl.':>11} {'after 1st':>9} {'CPU s':>7} {'min cosine':>10}")
        worst = 1.0
        for r in results.values():
            assert r["embedded"] == args.images and not r["failed"], r
            cosine = ""
            if reference is not None and r["name"] != "in-process":
                got = _vectors(r)
                value = min(float(got[i] @ reference[i]) for i in reference)
                worst, cosine = min(worst, value), f"{value:.6f}"
            first = f"{r['first']:.1f}" if r["first"] is not None else "-"
            print(f"{r['name']:<11} {r['device']:<28} {r['total']:8.1f} {r['start']:8.1f} {r['excl']:8.1f} {first:>9} "
                  f"{args.images / r['total']:7.1f} {args.images / r['excl']:11.1f} {r['steady']:9.1f} {r['cpu']:7.0f} {cosine:>10}")

        print()
        _ratio(results, "ray-1x2", "in-process", "Ray 1 actor (2 CPUs) / in-process time", 1.3, at_most=True)
        _ratio(results, "ray-1x1", "in-process", "Ray 1 actor (1 CPU) / in-process time", 1.3, at_most=True)
        _ratio(results, "ray-1x1", "ray-2x1", "2 actors speed-up over 1 actor (1 CPU each)", 1.6, at_most=False)
        _ratio(results, "ray-1x2", "ray-2x1", "2 actors (1 CPU each) speed-up over 1 actor (2 CPUs)", 1.6,
               at_most=False)
        if "in-process" in results:
            base = results["in-process"]["cpu"]
            print("CPU seconds / in-process CPU seconds (what a busy neighbour does not inflate): " + ", ".join(
                f"{r['name']} {r['cpu'] / base:.2f}x" for r in results.values() if r["name"] != "in-process"))
    if worst < MIN_COSINE:
        print(f"FAIL: a cosine is below {MIN_COSINE}")
        return 1
    return 0


def _vectors(result: dict | None) -> dict[str, np.ndarray] | None:
    if result is None:
        return None
    rows = read_vectors(result["table"], result["key"]).to_pydict()
    return {i: np.asarray(v, np.float32) for i, v in zip(rows["image_id"], rows["vector"])}


def _ratio(results: dict, a: str, b: str, what: str, target: float, at_most: bool) -> None:
    if a not in results or b not in results:
        return
    parts = []
    for label, key in (("including cluster start", "total"), ("excluding it", "excl")):
        value = results[a][key] / results[b][key]
        met = value <= target if at_most else value >= target
        parts.append(f"{value:.2f}x {label} ({'met' if met else 'NOT met'})")
    print(f"{what}: {'; '.join(parts)}   target {'<=' if at_most else '>='} {target}x")


if __name__ == "__main__":
    sys.exit(main())
