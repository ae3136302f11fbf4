"""Incremental cost of the catalog graph: a full run, a run with nothing changed, a run with 1% changed.

    .venv/bin/python benchmarks/bench_incremental.py [--images 10000] [--changed 0.01] [--keep]
                                                     [--local-s3 | --lake-uri s3://bucket/prefix]

Builds a catalog of small real images (320x240 JPEGs ~20 KB, one in ten a smaller PNG ~10 KB; 19 KB
mean; fixed seed; four label folders) in a temporary data dir and runs the project's `refresh_catalog` job (manifest ->
mirror -> embeddings -> index, with its asset checks) through the real Dagster machinery, with the
resources `orchestration.definitions` builds from the environment (tiny random-weight CLIP on CPU).
Three runs, measured in the same process:
  (0) full: the empty lake takes the whole folder (the baseline);
  (a) nothing changed;
  (b) `--changed` of the images changed: a third added, a third modified in place, a third deleted.
For each run it prints every step's own time (STEP_START -> STEP_SUCCESS in the run's event log),
rows decoded (probed by the scan) and embedded, which tables got a new version, and the bytes
written to the mirror: the sizes of the files added by the mirror tables' new commits, read from
their Delta logs, against the bytes of the changed images. Targets (PASS/FAIL):
  (a) no decoding, no embedding, no table version, every catalog asset <= 2 s of its own work;
  (b) the catalog assets' summed own time <= 5% of the full run's, and mirror bytes written
      <= 2x the changed images' bytes (added + modified files' new bytes + deleted files' bytes).
Exits 1 when a target is missed.

With `--local-s3` (a moto S3 server this script starts on loopback, tests/s3_server.py) or `--lake-uri`
(any S3-compatible store, reached through the standard AWS variables), the three runs are made a
second time, in the same process, on a copy of the same folder with the same changes, with the lake
(every Delta table) on object storage; the images and the index stay local. It then prints each
S3 run's times as a ratio to the local-disk run's, and checks the same targets on them.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CATALOG_ASSETS = ("image_manifest", "image_mirror", "image_embeddings", "image_index")
LABELS = ("dog", "cat", "parrot", "fox")
MAX_UNCHANGED_STEP_S = 2.0
MAX_CHANGED_TIME_RATIO = 0.05
MAX_WRITTEN_PER_CHANGED_BYTE = 2.0
RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


class PhotoMaker:
    """Photo-like images (smooth gradients plus sensor-like noise), distinct per seed.

    Why precomputed backgrounds: computing the gradients per image made 10,000 files take a minute;
    the per-image noise alone keeps every file's bytes (and so its content hash) distinct.
    """

    def __init__(self, width: int = 320, height: int = 240, backgrounds: int = 32):
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        rng = np.random.default_rng(0)
        self.backgrounds = []
        for k in range(backgrounds):
            base = rng.uniform(40, 215, 3)
            self.backgrounds.append(np.stack(
                [base[c] + 60 * np.sin(xx / (9 + 3 * c + k % 7)) + 50 * np.cos(yy / (7 + 2 * c + k % 5))
                 for c in range(3)], -1).astype(np.int16))

    def make(self, seed: int, fmt: str) -> bytes:
        rng = np.random.default_rng(seed)
        background = self.backgrounds[seed % len(self.backgrounds)]
        if fmt == "PNG":  # lossless: a smaller picture keeps the file near the JPEGs' size
            background = background[::3, ::3]
        crop = background[: background.shape[0] - seed % 24, : background.shape[1] - seed % 32]
        pixels = np.clip(crop + rng.integers(-14, 15, crop.shape, dtype=np.int16), 0, 255).astype(np.uint8)
        out = io.BytesIO()
        Image.fromarray(pixels, "RGB").save(out, format=fmt, **({"quality": 88} if fmt == "JPEG" else {}))
        return out.getvalue()

    def write(self, path: Path, seed: int) -> int:
        data = self.make(seed, "PNG" if path.suffix == ".png" else "JPEG")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return len(data)


def image_path(images: Path, n: int) -> Path:
    return images / LABELS[n % len(LABELS)] / f"photo-{n:06d}{'.png' if n % 10 == 9 else '.jpg'}"


class LocalLake:
    """The Delta commit files of the lake's tables, on local disk."""

    def __init__(self, lake: Path):
        self.lake = lake

    def commits(self) -> dict[str, list[int]]:
        """table name -> its committed versions, from the commit files."""
        return {log.parent.name: sorted(int(f.stem) for f in log.glob("*.json"))
                for log in sorted(self.lake.glob("*/_delta_log"))}

    def commit_text(self, table: str, version: int) -> str:
        return (self.lake / table / "_delta_log" / f"{version:020d}.json").read_text()


class ObjectLake(LocalLake):
    """The same, for a lake on object storage (listed and read with boto3)."""

    def __init__(self, location):
        self.location, self.client = location, location.connection.client()
        self.prefix = f"{location.key}/" if location.key else ""

    def commits(self) -> dict[str, list[int]]:
        found: dict[str, list[int]] = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.location.bucket,
                                                                          Prefix=self.prefix):
            for obj in page.get("Contents", ()):
                parts = obj["Key"][len(self.prefix):].split("/")
                if len(parts) == 3 and parts[1] == "_delta_log" and parts[2].endswith(".json") \
                        and parts[2][:-5].isdigit():
                    found.setdefault(parts[0], []).append(int(parts[2][:-5]))
        return {name: sorted(versions) for name, versions in sorted(found.items())}

    def commit_text(self, table: str, version: int) -> str:
        key = f"{self.prefix}{table}/_delta_log/{version:020d}.json"
        return self.client.get_object(Bucket=self.location.bucket, Key=key)["Body"].read().decode()


def delta_versions(lake: LocalLake) -> dict[str, int]:
    """Latest committed version of every Delta table under the lake (from the commit files)."""
    return {name: max(versions) for name, versions in lake.commits().items() if versions}


def bytes_added(lake: LocalLake, table: str, after_version: int) -> tuple[int, int]:
    """(files, bytes) added by the commits after `after_version`, summed from their Delta log entries."""
    files = total = 0
    for version in lake.commits().get(table, []):
        if version <= after_version:
            continue
        for line in lake.commit_text(table, version).splitlines():
            action = json.loads(line)
            if "add" in action:
                files += 1
                total += int(action["add"]["size"])
    return files, total


def step_seconds(instance, run_id: str) -> dict[str, float]:
    """Each step's own time: from its STEP_START to its STEP_SUCCESS (or failure) event."""
    import dagster as dg

    started, seconds = {}, {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or not event.step_key:
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            started[event.step_key] = entry.timestamp
        elif event.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
            seconds[event.step_key] = entry.timestamp - started[event.step_key]
    return seconds


def materialization_metadata(result) -> dict[str, dict]:
    return {e.asset_key.to_user_string(): {k: v.value for k, v in e.materialization.metadata.items()}
            for e in result.get_asset_materialization_events()}


def catalog_run(job, instance, lake: LocalLake, name: str) -> dict:
    # Every run starts on a heap like a fresh run process's: without this, the objects an earlier
    # run left (the full run's especially) make Python's full garbage collections land inside the
    # next run's steps, adding up to a second to whichever step allocates at that moment.
    gc.collect()
    gc.freeze()
    before = delta_versions(lake)
    started = time.perf_counter()
    result = job.execute_in_process(run_config=RUN_CONFIG, instance=instance, raise_on_error=False)
    wall = time.perf_counter() - started
    gc.unfreeze()  # frozen objects are never freed; native ones complain at exit when left so
    if not result.success:
        raise SystemExit(f"run {name!r} failed: {[e.message for e in result.all_events if e.is_failure]}")
    # Blocking consistency checks (ERROR) say whether the incremental run left the tables right; a
    # failed WARN check (the index's recall) is reported but is no part of these targets.
    failed_checks = [(e.severity.value, e.check_name, e.description)
                     for e in result.get_asset_check_evaluations() if not e.passed]
    after = delta_versions(lake)
    mirror = {}
    for table_name in after:
        if table_name.startswith("image_mirror"):  # the mirror's tables, whatever its layout
            mirror[table_name] = bytes_added(lake, table_name, before.get(table_name, -1))
    steps = step_seconds(instance, result.run_id)
    return {
        "name": name, "wall": wall, "steps": steps, "meta": materialization_metadata(result),
        "new_versions": {t: (before.get(t), v) for t, v in after.items() if before.get(t) != v},
        "mirror_written": mirror, "failed_checks": failed_checks,
        "assets_s": sum(steps.get(a, 0.0) for a in CATALOG_ASSETS),
        "checks_s": sum(s for k, s in steps.items() if k not in CATALOG_ASSETS),
    }


def report(run: dict, full: dict | None) -> None:
    meta = run["meta"]
    print(f"\n== {run['name']}")
    for step, seconds in sorted(run["steps"].items(), key=lambda kv: (kv[0] not in CATALOG_ASSETS, kv[0])):
        print(f"   {step:58s} {seconds:8.2f} s")
    ratio = f"  ({run['assets_s'] / full['assets_s']:.1%} of the full run)" if full else ""
    print(f"   catalog assets, summed own time {run['assets_s']:8.2f} s{ratio}")
    wall_ratio = f"  ({run['wall'] / full['wall']:.1%} of the full run)" if full else ""
    print(f"   asset checks {run['checks_s']:.2f} s; whole job wall clock {run['wall']:.2f} s{wall_ratio}")
    manifest, mirror = meta.get("image_manifest", {}), meta.get("image_mirror", {})
    embeddings, index = meta.get("image_embeddings", {}), meta.get("image_index", {})
    print(f"   decoded: {manifest.get('probed')} probed by the scan, {embeddings.get('embedded')} embedded; "
          f"mirror +{mirror.get('added')} -{mirror.get('removed')} ~{mirror.get('paths_updated')} paths; "
          f"index +{index.get('added')} -{index.get('removed')} rows {index.get('rows')}")
    versions = ", ".join(f"{t} {a}->{b}" for t, (a, b) in sorted(run["new_versions"].items())) or "none"
    print(f"   new Delta versions: {versions}; index lance_version {index.get('lance_version')}")
    for table, (files, written) in sorted(run["mirror_written"].items()):
        print(f"   mirror table {table}: {files} files added, {written:,} bytes")
    for severity, check_name, description in run["failed_checks"]:
        print(f"   check {check_name} failed ({severity}): {description}")


def change_folder(images: Path, maker: PhotoMaker, existing: list[int], fraction: float,
                  next_seed: int) -> dict[str, int]:
    """Add, modify in place and delete a third of `fraction` of the images each; their bytes."""
    rng = random.Random(1)
    per_kind = max(1, round(len(existing) * fraction / 3))
    victims = rng.sample(existing, 2 * per_kind)
    changed = {"added": 0, "modified": 0, "deleted": 0, "images": 3 * per_kind}
    for k in range(per_kind):
        changed["added"] += maker.write(image_path(images, next_seed + k), next_seed + k)
    for n in victims[:per_kind]:
        # A new seed makes new bytes; the mtime moves, so the scan reads the file again.
        changed["modified"] += maker.write(image_path(images, n), next_seed + per_kind + n)
    for n in victims[per_kind:]:
        path = image_path(images, n)
        changed["deleted"] += path.stat().st_size
        path.unlink()
    return changed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--changed", type=float, default=0.01, help="fraction of images changed in run (b)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dir")
    remote = parser.add_mutually_exclusive_group()
    remote.add_argument("--local-s3", action="store_true",
                        help="also run with the lake on a moto S3 server started on loopback (tests/s3_server.py)")
    remote.add_argument("--lake-uri", default="", help="also run with the lake at this s3:// URI "
                        "(endpoint and credentials from the standard AWS variables)")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="adrag-incremental-"))
    data_dir, home = root / "data", root / "dagster_home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    os.environ.update({"ADRAG_DATA_DIR": str(data_dir), "DAGSTER_HOME": str(home), "ADRAG_DEVICE": "cpu",
                       "ADRAG_CLIP_MODEL": "adrag-tiny-clip", "ADRAG_CLIP_WEIGHTS": "random",
                       "ADRAG_IMAGES_DIR": str(data_dir / "images"), "ADRAG_LAKE_URI": str(data_dir / "lake"),
                       "MLFLOW_TRACKING_URI": ""})
    server = None
    lake_uri = args.lake_uri
    if args.local_s3:
        sys.path.insert(0, str(REPO / "tests"))
        from s3_server import S3Server

        server = S3Server()
        server.create_bucket("adrag-bench")
        os.environ.update(server.environment())
        lake_uri = "s3://adrag-bench/lake"
    import dagster as dg

    from orchestration.definitions import defs

    images = data_dir / "images"
    maker = PhotoMaker()
    started = time.perf_counter()
    total = sum(maker.write(image_path(images, n), n) for n in range(args.images))
    print(f"{args.images:,} images, {total / args.images / 1024:.1f} KB mean, {total / 2**20:.0f} MiB, "
          f"made in {time.perf_counter() - started:.0f} s under {root}; tiny random-weight CLIP on CPU, "
          f"{os.cpu_count()} cores")
    profiles = [("local disk", data_dir, str(data_dir / "lake"))]
    if lake_uri:  # the same folder, before any change, for the same three runs with the lake on S3
        shutil.copytree(images, root / "data-s3" / "images")
        profiles.append((f"lake on S3 ({'local moto server' if server else lake_uri})", root / "data-s3", lake_uri))

    job = defs.resolve_job_def("refresh_catalog")
    measured = []
    try:
        with dg.DagsterInstance.get() as instance:
            for label, profile_dir, lake in profiles:
                print(f"\n######## {label}: lake {lake}")
                # Read through dg.EnvVar when each run starts: these switch the resources between profiles.
                os.environ.update({"ADRAG_DATA_DIR": str(profile_dir), "ADRAG_IMAGES_DIR": str(profile_dir / "images"),
                                   "ADRAG_LAKE_URI": lake})
                reader = LocalLake(Path(lake)) if not lake.startswith("s3://") else ObjectLake(_object_location(lake))
                full = catalog_run(job, instance, reader, "(0) full run: empty lake")
                report(full, None)
                unchanged = catalog_run(job, instance, reader, "(a) nothing changed")
                report(unchanged, full)
                changed = change_folder(profile_dir / "images", maker, list(range(args.images)), args.changed,
                                        args.images)
                changed_bytes = changed["added"] + changed["modified"] + changed["deleted"]
                some = catalog_run(job, instance, reader,
                                   f"(b) {changed['images']} images changed ({args.changed:.0%}): "
                                   f"{changed['images'] // 3} added, modified, deleted each")
                report(some, full)
                measured.append((label, full, unchanged, some, changed, changed_bytes))
    finally:
        if server is not None:
            server.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    results = [verdict(*runs) for runs in measured]
    if len(measured) == 2:
        compare(measured[0], measured[1])
    return max(results)


def _object_location(lake_uri: str):
    from assets_pkg.storage import ObjectLocation, S3Connection

    names = ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
             "AWS_ALLOW_HTTP")
    return ObjectLocation(lake_uri, S3Connection.from_settings(*(os.environ.get(n, "") for n in names)))


def compare(local: tuple, remote: tuple) -> None:
    """Each S3 run's times as a ratio to the same run on local disk."""
    print(f"\n== {remote[0]} / local disk, same images, same changes, same process")
    # (0) is shown for completeness: the first profile's full run also pays the process's warm-up
    # (imports, the model's first load, MLflow's schema), so its ratio understates S3's cost.
    for n, name in ((1, "(0) full"), (2, "(a) nothing changed"), (3, "(b) changed")):
        ours, theirs = remote[n], local[n]
        steps = ", ".join(f"{a} {ours['steps'][a]:.2f}/{theirs['steps'][a]:.2f} s" for a in CATALOG_ASSETS)
        print(f"   {name:22s} catalog assets {ours['assets_s']:7.2f} s vs {theirs['assets_s']:7.2f} s = "
              f"{ours['assets_s'] / theirs['assets_s']:.2f}x; job wall clock {ours['wall']:7.2f} s vs "
              f"{theirs['wall']:7.2f} s = {ours['wall'] / theirs['wall']:.2f}x")
        print(f"   {'':22s} per asset (S3/local): {steps}")


def verdict(label: str, full: dict, unchanged: dict, some: dict, changed: dict, changed_bytes: int) -> int:
    print(f"\n== targets, {label}")
    results = []

    def check(ok: bool, text: str) -> None:
        results.append(ok)
        print(f"   {'PASS' if ok else 'FAIL'}  {text}")

    meta = unchanged["meta"]
    decoded = (meta["image_manifest"]["probed"], meta["image_embeddings"]["embedded"])
    check(decoded == (0, 0), f"(a) nothing decoded or embedded: probed {decoded[0]}, embedded {decoded[1]}")
    lance = (full["meta"]["image_index"]["lance_version"], meta["image_index"]["lance_version"])
    check(not unchanged["new_versions"] and lance[0] == lance[1],
          f"(a) no table written: new Delta versions {unchanged['new_versions'] or 'none'}, "
          f"index lance_version {lance[0]} -> {lance[1]}")
    slowest = max(CATALOG_ASSETS, key=lambda a: unchanged["steps"][a])
    check(unchanged["steps"][slowest] <= MAX_UNCHANGED_STEP_S,
          f"(a) every catalog asset <= {MAX_UNCHANGED_STEP_S:.0f} s of its own work: slowest {slowest} "
          f"{unchanged['steps'][slowest]:.2f} s")
    ratio = some["assets_s"] / full["assets_s"]
    check(ratio <= MAX_CHANGED_TIME_RATIO,
          f"(b) catalog graph {some['assets_s']:.2f} s = {ratio:.1%} of the full run's {full['assets_s']:.2f} s "
          f"(target <= {MAX_CHANGED_TIME_RATIO:.0%}; wall clock incl. checks and run start "
          f"{some['wall'] / full['wall']:.1%})")
    written = sum(b for _, b in some["mirror_written"].values())
    new_bytes = changed["added"] + changed["modified"]
    check(written <= MAX_WRITTEN_PER_CHANGED_BYTE * changed_bytes,
          f"(b) mirror bytes written {written:,} = {written / changed_bytes:.2f}x the changed images' "
          f"{changed_bytes:,} bytes (added {changed['added']:,} + modified {changed['modified']:,} + deleted "
          f"{changed['deleted']:,}; target <= {MAX_WRITTEN_PER_CHANGED_BYTE:.0f}x); "
          f"{written / new_bytes:.2f}x the new images' bytes alone")
    errors = [c for run in (full, unchanged, some) for c in run["failed_checks"] if c[0] == "ERROR"]
    warnings = sorted({c[1] for run in (full, unchanged, some) for c in run["failed_checks"] if c[0] != "ERROR"})
    note = f"; WARN checks failed, not a target here: {', '.join(warnings)}" if warnings else ""
    check(not errors, "consistency checks (ERROR severity: mirror = manifest, embeddings = mirror, index = "
                      f"embeddings) passed in every run{note}")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
