"""Scan the source folder into a manifest: one row per image file, bad files set aside with reasons.

A file whose (size, mtime) match the previous manifest is not read again, so a scan of an
unchanged folder costs one `stat` per file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from assets_pkg.catalog.probe import InvalidImage, content_hash, probe_image

SIDECAR_SUFFIX = ".labels"  # photo.jpg.labels: one label per line (or comma-separated)

MANIFEST_SCHEMA = pa.schema([
    ("path", pa.string()),            # relative to the source folder, POSIX separators
    ("image_id", pa.string()),        # sha256 of the bytes
    ("size_bytes", pa.int64()),
    ("mtime_ns", pa.int64()),
    ("format", pa.string()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("labels", pa.list_(pa.string())),
])


@dataclass(frozen=True)
class Rejected:
    path: str
    reason: str
    image_id: str | None = None


@dataclass
class ScanResult:
    manifest: pa.Table
    rejected: list[Rejected] = field(default_factory=list)
    probed: int = 0  # files actually read and decoded this scan
    reused: int = 0  # files whose previous row was still valid


def normalise_label(text: str) -> str:
    return " ".join(text.strip().lower().replace("_", " ").replace("-", " ").split())


def labels_for(root: Path, file: Path) -> list[str]:
    """Labels from a `<file>.labels` sidecar when there is one, else the sub-folder name."""
    sidecar = file.with_name(file.name + SIDECAR_SUFFIX)
    if sidecar.is_file():
        raw = sidecar.read_text(encoding="utf-8", errors="replace").replace(",", "\n").splitlines()
        return sorted({lbl for lbl in map(normalise_label, raw) if lbl})
    parent = file.parent.relative_to(root)
    return [normalise_label(parent.parts[-1])] if parent.parts else []


def iter_candidate_files(root: Path):
    """Every file under root except hidden files and label sidecars, in a stable order."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or name.endswith(SIDECAR_SUFFIX):
                continue
            yield Path(dirpath) / name


def scan_folder(root: Path, previous: pa.Table | None = None) -> ScanResult:
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist or is not a folder")
    known = {row["path"]: row for row in previous.to_pylist()} if previous is not None else {}
    rows: list[dict] = []
    result = ScanResult(manifest=MANIFEST_SCHEMA.empty_table())
    for file in iter_candidate_files(root):
        rel = file.relative_to(root).as_posix()
        try:
            stat = file.stat()
        except OSError as err:
            result.rejected.append(Rejected(rel, f"cannot stat: {err.strerror or err}"))
            continue
        labels = labels_for(root, file)
        old = known.get(rel)
        if old and old["size_bytes"] == stat.st_size and old["mtime_ns"] == stat.st_mtime_ns:
            rows.append({**old, "labels": labels})
            result.reused += 1
            continue
        try:
            data = file.read_bytes()
        except OSError as err:
            result.rejected.append(Rejected(rel, f"cannot read: {err.strerror or err}"))
            continue
        result.probed += 1
        try:
            facts = probe_image(data)
        except InvalidImage as err:
            result.rejected.append(Rejected(rel, str(err), content_hash(data) if data else None))
            continue
        rows.append({
            "path": rel, "image_id": facts.image_id, "size_bytes": facts.size_bytes,
            "mtime_ns": stat.st_mtime_ns, "format": facts.format, "width": facts.width,
            "height": facts.height, "labels": labels,
        })
    result.manifest = pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA)
    return result
