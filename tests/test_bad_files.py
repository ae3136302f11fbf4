"""Every kind of bad file from `bad_files.py` in one source folder, next to good photos, through the
real catalog graph: each is ingested right or quarantined with its reason, and the run goes on.

Writes a table kind -> expected -> observed to `bad_files_report.md` in the system temp folder.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow.compute as pc
from bad_files import KINDS, Expected, Kind, Observed
from conftest import REPO, write_photo

from assets_pkg.catalog import scan
from assets_pkg.catalog.mirror import read_image_bytes
from assets_pkg.catalog.probe import content_hash
from assets_pkg.catalog.scan import checked_stat, read_checked
from assets_pkg.delta_tables import read_table
from assets_pkg.index.lance_index import open_index
from assets_pkg.layout import EMBEDDINGS_SCHEMA, MANIFEST_SCHEMA, MIRROR_SCHEMA, QUARANTINE_SCHEMA
from assets_pkg.pictures import decode_upright_rgb
from orchestration.definitions import CATALOG_ASSETS

catalog_assets = importlib.import_module("assets_pkg.catalog.assets")  # the module, not the asset
REPORT = Path(tempfile.gettempdir()) / "bad_files_report.md"
NOBODY = 65534


# What the tables say ----------------------------------------------------------------------------

@dataclass
class Snapshot:
    quarantine: dict[tuple[str, str], dict]  # (stage, path) -> row
    mirror: dict[str, dict]                  # every path -> its image's metadata row
    manifest_paths: set[str]
    vectors: dict[str, np.ndarray]           # image_id -> vector, current model
    indexed: set[str]                        # image ids in the LanceDB table
    mirror_table: Path | None = None

    @classmethod
    def read(cls, layout, model_key: str) -> "Snapshot":
        quarantine = {(r["stage"], r["path"]): r
                      for r in read_table(layout.quarantine_table, QUARANTINE_SCHEMA).to_pylist()}
        metadata = [n for n in MIRROR_SCHEMA.names if n != "bytes"]
        mirror = {p: r for r in read_table(layout.mirror_table, MIRROR_SCHEMA, metadata).to_pylist() for p in r["paths"]}
        embeddings = read_table(layout.embeddings_table, EMBEDDINGS_SCHEMA)
        embeddings = embeddings.filter(pc.equal(embeddings["model_key"], model_key))
        vectors = dict(zip(embeddings["image_id"].to_pylist(), np.array(embeddings["vector"].to_pylist(), np.float32)))
        index = open_index(layout.lance_dir, model_key).search().select(["image_id"]).limit(None).to_arrow()
        return cls(quarantine, mirror, set(read_table(layout.manifest_table, MANIFEST_SCHEMA)["path"].to_pylist()),
                   vectors, set(index["image_id"].to_pylist()), layout.mirror_table)

    def vector_at(self, path: str) -> np.ndarray:
        return self.vectors[self.mirror[path]["image_id"]]


def observe(expected: Expected, snap: Snapshot, content_id: str | None) -> tuple[str, list[str]]:
    """What the tables show for one case after its first run, in words, and every way it differs
    from the expectation."""
    row = snap.mirror.get(expected.path)
    quarantined = snap.quarantine.get(("catalog", expected.path))
    later_stage = [r for (stage, _), r in snap.quarantine.items()
                   if stage != "catalog" and row and r["image_id"] == row["image_id"]]
    problems = []
    if quarantined:
        seen = f"quarantined: {quarantined['reason']}"
    elif row:
        seen = f"ingested {row['format']} {row['width']}x{row['height']}"
    else:
        seen = "in no table" + (" but the manifest (until the next scan)" if expected.path in snap.manifest_paths else "")

    if expected.outcome == "quarantined":
        if not quarantined:
            return seen, ["no catalog quarantine row"]
        if expected.reason not in quarantined["reason"]:
            problems.append(f"reason lacks {expected.reason!r}")
        if quarantined["attempts"] != 1 or quarantined["first_seen"] != quarantined["last_seen"]:
            problems.append(f"attempts {quarantined['attempts']}, first_seen != last_seen: not a first sighting")
        if quarantined["image_id"] != (content_id if expected.hashed else None):
            problems.append(f"image_id {quarantined['image_id']} != {content_id if expected.hashed else None}")
        if row:
            problems.append("also in the mirror")
    elif expected.outcome == "ingested":
        if quarantined or later_stage:
            return seen, [f"quarantined: {(quarantined or later_stage[0])['reason']}"]
        if not row:
            return seen, ["not in the mirror"]
        facts = (row["format"], (row["width"], row["height"]))
        if facts != (expected.format, expected.size):
            problems.append(f"mirror says {facts}, expected {(expected.format, expected.size)}")
        image_id = row["image_id"]
        if image_id not in snap.vectors:
            return seen, problems + ["no vector"]
        if image_id not in snap.indexed:
            problems.append("not in the index")
        seen += ", embedded, indexed"
        data = read_image_bytes(snap.mirror_table, [image_id])[image_id]
        seeing = Observed(row, decode_upright_rgb(data), snap.vectors[image_id], snap.vector_at)
        problems += [msg for check in expected.checks if (msg := check(seeing))]
        if expected.checks:
            seen += f", {len(expected.checks) - len(problems)}/{len(expected.checks)} checks pass"
    elif quarantined or row:
        problems.append("expected in no table")
    return seen, problems


def content_id_of(path: Path, expected: Expected) -> str | None:
    return content_hash(path.read_bytes()) if expected.outcome == "quarantined" and expected.hashed else None


def write_report(results: dict[str, tuple[Expected, str, list[str]]], unmade: list[str]) -> str:
    """A markdown table kind -> path -> expected -> observed, in corpus order, mismatches in bold."""
    lines = ["| kind | path | expected | observed |", "|---|---|---|---|"]
    for k in KINDS:
        if k.name in results:
            want, seen, problems = results[k.name]
            mismatch = f" **MISMATCH: {'; '.join(problems)}**" if problems else ""
            lines.append(f"| {k.name} | {want.path!r} | {want.describe()} | {seen}{mismatch} |")
    lines += [f"| {name} | | | skipped: cannot be made on this machine |" for name in unmade]
    text = "\n".join(lines) + "\n"
    REPORT.write_text(text, encoding="utf-8")
    print("\n" + text)
    return text


# The unreadable cases: a scan as an unprivileged user ---------------------------------------------

# Runs in a child: imports everything as the current user (the interpreter may live under /root,
# unreadable to nobody), drops to uid 65534, scans, and writes the quarantine rows as `nobody`.
UNPRIVILEGED_SCAN = r"""
import json, os, sys
from pathlib import Path
from PIL import Image
from assets_pkg.catalog.quarantine import replace_stage_quarantine
from assets_pkg.catalog.scan import scan_folder
Image.init()  # import every Pillow plugin before the drop
os.setgroups([]); os.setgid(NOBODY); os.setuid(NOBODY)
scan = scan_folder(Path(sys.argv[1]))
replace_stage_quarantine(Path(sys.argv[2]), "catalog", [(r.path, r.image_id, r.reason) for r in scan.rejected])
print(json.dumps({"uid": os.getuid(), "listed": scan.manifest["path"].to_pylist()}))
""".replace("NOBODY", str(NOBODY))


def judge_as_unprivileged_user(kinds: list[Kind]) -> dict[str, tuple[Expected, str, list[str]]]:
    """Root reads files whatever their mode bits, so as root the unreadable cases are scanned by a
    child process running as `nobody`, over a world-readable tree made here."""
    tree = Path(tempfile.mkdtemp(prefix="adrag-unprivileged-"))
    try:
        images, lake = tree / "images", tree / "lake"
        images.mkdir()
        lake.mkdir()
        for path, mode in ((tree, 0o755), (images, 0o755), (lake, 0o777)):
            path.chmod(mode)
        write_photo(images / "good.jpg", seed=5).chmod(0o644)
        expected = {k.name: k.write(images) for k in kinds}
        child = subprocess.run([sys.executable, "-c", UNPRIVILEGED_SCAN, str(images), str(lake / "quarantine")],
                               cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                               timeout=120)
        assert child.returncode == 0, child.stderr[-3000:]
        report = json.loads(child.stdout.strip().splitlines()[-1])
        assert report["uid"] == NOBODY and report["listed"] == ["good.jpg"], report
        quarantine = {(r["stage"], r["path"]): r for r in read_table(lake / "quarantine", QUARANTINE_SCHEMA).to_pylist()}
        snap = Snapshot(quarantine, {}, set(report["listed"]), {}, set())
        results = {}
        for name, want in expected.items():
            seen, problems = observe(want, snap, None)
            results[name] = (want, seen + f" (scan as uid {NOBODY})", problems)
        return results
    finally:
        shutil.rmtree(tree)


# The tests --------------------------------------------------------------------------------------

def materialize(resources, instance) -> dg.ExecuteInProcessResult:
    result = dg.materialize(CATALOG_ASSETS, resources=resources, instance=instance)
    assert result.success
    return result


def meta(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_every_bad_file_is_ingested_right_or_quarantined_and_the_run_goes_on(resources, instance, layout, monkeypatch):
    folder = layout.images_dir
    good = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert len(good) == 12
    as_root = os.geteuid() == 0
    in_folder = [k for k in KINDS if not (k.unprivileged and as_root)]
    expected = {k.name: want for k in in_folder if (want := k.write(folder)) is not None}
    unmade = [k.name for k in in_folder if k.name not in expected]
    if not as_root:  # permission bits work for us: the unreadable cases sit in the folder with the rest
        unmade += [k.name for k in in_folder if k.unprivileged and os.access(folder / expected[k.name].path, os.R_OK)]
        expected = {name: want for name, want in expected.items() if name not in unmade}
    content_ids = {name: content_id_of(folder / want.path, want) for name, want in expected.items()}
    vanishing = [expected[k.name].path for k in in_folder if k.vanishes]

    real_sync = catalog_assets.sync_mirror

    def sync_after_files_vanish(table, manifest, images_dir):
        # Runs between the manifest asset (which listed the files) and the mirror's reads.
        for rel in vanishing:
            (images_dir / rel).unlink()
        return real_sync(table, manifest, images_dir)

    monkeypatch.setattr(catalog_assets, "sync_mirror", sync_after_files_vanish)
    first = materialize(resources, instance)
    monkeypatch.undo()
    model_key = meta(first, "image_embeddings")["model_key"]
    snap = Snapshot.read(layout, model_key)

    results = {name: (want, *observe(want, snap, content_ids[name])) for name, want in expected.items()}
    if as_root:
        results.update(judge_as_unprivileged_user([k for k in KINDS if k.unprivileged]))
    write_report(results, unmade)
    assert len(results) >= 20
    assert {name: problems for name, (_, _, problems) in results.items() if problems} == {}

    # The run went on: every good photo is mirrored, embedded and indexed; the metadata counts agree.
    assert all(path in snap.mirror and snap.mirror[path]["image_id"] in snap.vectors for path in good)
    assert set(snap.vectors) == snap.indexed == {r["image_id"] for r in snap.mirror.values()}
    quarantined_here = [w for w in expected.values() if w.outcome == "quarantined"]
    assert meta(first, "image_manifest")["quarantined"] == len(quarantined_here)
    assert meta(first, "image_mirror")["changed_after_scan"] == len(vanishing)
    assert set(vanishing) <= snap.manifest_paths, "the scan listed them before they vanished"

    # Fix one quarantined file; the rest stay bad and are seen a second time.
    fixed = expected["truncated JPEG"].path
    write_photo(folder / fixed, seed=77)
    second = materialize(resources, instance)
    after = Snapshot.read(layout, model_key)
    seen, problems = observe(Expected(fixed, "ingested", format="JPEG", size=(96, 72)), after, None)
    assert problems == [], seen
    assert meta(second, "image_mirror")["added"] == 1
    for want in quarantined_here:
        if want.path == fixed:
            continue
        before, now = snap.quarantine[("catalog", want.path)], after.quarantine[("catalog", want.path)]
        assert now["attempts"] == before["attempts"] + 1, want.path
        assert now["first_seen"] == before["first_seen"] and now["last_seen"] > before["last_seen"], want.path
    assert ("catalog", fixed) not in after.quarantine
    assert not set(vanishing) & after.manifest_paths, "a vanished file leaves the manifest on the next scan"
    assert all(path in after.mirror for path in good)


def test_a_file_that_vanishes_between_listing_and_stat_is_not_listed(tmp_path, monkeypatch):
    write_photo(tmp_path / "kept.jpg", seed=1)
    listed = list(scan.iter_candidate_files(tmp_path))
    gone = tmp_path / "gone.jpg"  # listed by the walk, deleted before its stat
    monkeypatch.setattr(scan, "iter_candidate_files", lambda root, on_error=None: [gone, *listed])
    result = scan.scan_folder(tmp_path)
    assert result.manifest["path"].to_pylist() == ["kept.jpg"]
    assert result.rejected == []


def test_a_file_swapped_for_a_fifo_after_its_stat_is_not_read_and_does_not_block(tmp_path):
    path = write_photo(tmp_path / "swapped.jpg", seed=2)
    checked = checked_stat(os.path.realpath(tmp_path), path)
    path.unlink()
    os.mkfifo(path)  # opening this for reading without O_NONBLOCK would wait for a writer forever
    try:
        read_checked(path, checked)
    except FileNotFoundError as err:
        assert "replaced during scan" in str(err)
    else:
        raise AssertionError("a swapped file must read as vanished")


def test_every_quarantine_reason_is_one_line_naming_the_format_and_the_problem(tmp_path):
    """The scan's reasons for the corpus' files whose bytes it read say which format (the file's, from
    Pillow or its signature, or "unknown format") and what is wrong, on one line: "cannot decode JPEG:
    image file is truncated". (Reasons about the entry itself, a symlink or a FIFO, have no format.)"""
    root = tmp_path / "images"
    root.mkdir()
    for k in KINDS:
        if not k.unprivileged and not k.vanishes:
            k.write(root)
    rejected = scan.scan_folder(root).rejected
    formats = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "HEIC", "unknown format")
    read = [r for r in rejected if r.image_id is not None and not r.reason.startswith("empty file")]
    assert len(read) >= 12
    for r in rejected:
        assert r.reason == " ".join(r.reason.split()) and r.reason, r
    for r in read:
        assert any(f in r.reason for f in formats) and ": " in r.reason or "unsupported format" in r.reason, r
    reasons = {r.path: r.reason for r in rejected}
    assert reasons["truncated.jpg"] == "cannot decode JPEG: image file is truncated (48 bytes not processed)"
    assert reasons["huge-header.jpg"].startswith("JPEG with too many pixels (4,225,000,000 claimed, over 64,000,000)")
    assert reasons["page.png"] == ("not a recognised image file: unknown format, not one of GIF, JPEG, PNG, WEBP "
                                   "(the bytes start with '<!doctype ht')")
