"""The Delta mirror: one row per distinct image (content hash), its bytes and its metadata.

The sync is incremental and touches only what changed:
- new images are appended (one commit, bytes read from the source folder and re-hashed);
- vanished images are deleted by id;
- images whose paths or labels changed get a metadata-only merge on those ids.
The binary column carries no statistics (neither in Parquet nor in the Delta log): min/max over
image bytes is useless and large.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
from deltalake import ColumnProperties, WriterProperties, write_deltalake

from assets_pkg.catalog.probe import content_hash
from assets_pkg.catalog.scan import Unusable, checked_stat, read_checked
from assets_pkg.delta_tables import exclusive, open_table, read_table, sql_in, with_commit_retry

MIRROR_SCHEMA = pa.schema([
    ("image_id", pa.string()),
    ("bytes", pa.binary()),
    ("format", pa.string()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("size_bytes", pa.int64()),
    ("labels", pa.list_(pa.string())),
    ("paths", pa.list_(pa.string())),  # every current path with these bytes, sorted
    ("added_at", pa.timestamp("us", tz="UTC")),
])
METADATA_COLUMNS = [name for name in MIRROR_SCHEMA.names if name != "bytes"]

WRITER_PROPERTIES = WriterProperties(
    compression="ZSTD",
    column_properties={"bytes": ColumnProperties(statistics_enabled="NONE", dictionary_enabled=False)},
)
TABLE_CONFIGURATION = {"delta.dataSkippingStatsColumns": "image_id,format,width,height,size_bytes,added_at"}


@dataclass
class MirrorChanges:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)  # same bytes, new paths or labels
    unchanged: int = 0
    changed_on_disk: list[str] = field(default_factory=list)  # paths whose bytes changed since the scan
    bytes_added: int = 0

    @property
    def wrote(self) -> bool:
        return bool(self.added or self.removed or self.moved)


def desired_state(manifest: pa.Table) -> dict[str, dict]:
    """Group the manifest by content hash: one entry per distinct image."""
    images: dict[str, dict] = {}
    for row in manifest.to_pylist():
        entry = images.setdefault(row["image_id"], {
            "image_id": row["image_id"], "format": row["format"], "width": row["width"],
            "height": row["height"], "size_bytes": row["size_bytes"], "labels": set(), "paths": [],
        })
        entry["paths"].append(row["path"])
        entry["labels"].update(row["labels"] or [])
    for entry in images.values():
        entry["paths"].sort()
        entry["labels"] = sorted(entry["labels"])
    return images


def read_mirror_metadata(table: Path) -> pa.Table:
    return read_table(table, MIRROR_SCHEMA, METADATA_COLUMNS)


def sync_mirror(table: Path, manifest: pa.Table, images_dir: Path) -> MirrorChanges:
    with exclusive(table):
        return _sync_mirror(table, manifest, images_dir)


def _sync_mirror(table: Path, manifest: pa.Table, images_dir: Path) -> MirrorChanges:
    want = desired_state(manifest)
    have = {row["image_id"]: row for row in read_mirror_metadata(table).select(["image_id", "labels", "paths"]).to_pylist()}
    changes = MirrorChanges()
    changes.removed = sorted(set(have) - set(want))
    now = datetime.now(timezone.utc)

    new_rows = []
    for image_id in sorted(set(want) - set(have)):
        entry = want[image_id]
        data = _read_first_matching(images_dir, entry["paths"], image_id)
        if data is None:
            changes.changed_on_disk.extend(entry["paths"])
            continue
        new_rows.append({**entry, "bytes": data, "added_at": now})
        changes.added.append(image_id)
        changes.bytes_added += len(data)

    moved = [
        {"image_id": i, "paths": want[i]["paths"], "labels": want[i]["labels"]}
        for i in sorted(set(want) & set(have))
        if want[i]["paths"] != list(have[i]["paths"]) or want[i]["labels"] != list(have[i]["labels"])
    ]
    changes.moved = [m["image_id"] for m in moved]
    changes.unchanged = len(set(want) & set(have)) - len(moved)

    if new_rows:
        data = pa.Table.from_pylist(new_rows, schema=MIRROR_SCHEMA)
        with_commit_retry(lambda: write_deltalake(
            str(table), data, mode="append", writer_properties=WRITER_PROPERTIES,
            configuration=TABLE_CONFIGURATION))
    if changes.removed:
        with_commit_retry(lambda: open_table(table).delete(sql_in("image_id", changes.removed),
                                                             writer_properties=WRITER_PROPERTIES))
    if moved:
        source = pa.Table.from_pylist(moved, schema=pa.schema([MIRROR_SCHEMA.field(n) for n in ("image_id", "paths", "labels")]))
        with_commit_retry(lambda: (
            open_table(table)
            .merge(source, predicate="t.image_id = s.image_id", source_alias="s", target_alias="t",
                   writer_properties=WRITER_PROPERTIES)
            .when_matched_update({"paths": "s.paths", "labels": "s.labels"})
            .execute()))
    return changes


def _read_first_matching(images_dir: Path, paths: list[str], image_id: str) -> bytes | None:
    """The bytes of the first path that still hashes to `image_id` (files can change after the scan).

    Read with the scan's checks: a name swapped for a FIFO or a symlink out of the folder since
    the scan is skipped, never opened.
    """
    root_real = os.path.realpath(images_dir)
    for rel in paths:
        path = images_dir / rel
        try:
            data = read_checked(path, checked_stat(root_real, path))
        except (OSError, Unusable):
            continue
        if content_hash(data) == image_id:
            return data
    return None


def read_image_bytes(table: Path, image_ids: list[str]) -> dict[str, bytes]:
    """The bytes of a few images, by id."""
    if not image_ids:
        return {}
    rows = read_table(table, MIRROR_SCHEMA, ["image_id", "bytes"], sql_in("image_id", image_ids))
    return dict(zip(rows["image_id"].to_pylist(), rows["bytes"].to_pylist()))


def first_paths(table: Path, image_ids: list[str]) -> dict[str, str]:
    """A display path for each of a few images, by id."""
    if not image_ids:
        return {}
    rows = read_table(table, MIRROR_SCHEMA, ["image_id", "paths"], sql_in("image_id", image_ids))
    return {r["image_id"]: (r["paths"] or [r["image_id"]])[0] for r in rows.to_pylist()}
