"""The Delta mirror: one row per distinct image (content hash), its metadata and its bytes.

Layout: two Delta tables, so that the bytes written by a sync track the bytes of the images that
changed.
- `image_mirror` (the path the data layout names): the metadata (`MIRROR_SCHEMA`), one row per
  image in the folder now. It is small (45 bytes a row compressed at 10,000 images, against 10 KB
  or more of image) and is replaced whole, in one commit, whenever anything changed:
  adds, deletes and path/label changes land together or not at all, and a rename writes only it.
- `image_mirror_bytes` beside it: the bytes, keyed by content hash, append-only, partitioned by
  `batch` (one batch per append commit of at most `BYTES_PER_COMMIT`, rows sorted by id in small
  row groups so a read of a few ids skips the rest).
Why: delta-rs deletes and merges are copy-on-write. With bytes and paths in one table, deleting 1%
of the images or renaming one rewrote whole Parquet files bytes and all, far more than the bytes
that changed. Deletion vectors would avoid that, but delta-rs 1.6 only reads them (writing is
delta-io/delta-rs#4079 and #4512, open).

What readers see: the metadata table is the mirror. Bytes are read only through
`read_image_bytes` / `iter_image_bytes`, which return images that are in the metadata table, so
a deleted image is gone from the mirror (and so from the embeddings and the index, which follow
the mirror's ids) in the same sync that sees it gone from the folder.

When a deleted image's bytes are physically gone: its row in the bytes table is "dead" from that
sync on. A sync drops the dead rows of a batch once they hold at least half of the batch's bytes:
a batch with no live row is dropped by a log-only commit that writes nothing, otherwise only that
batch's files are rewritten, and the live bytes rewritten are at most the dead bytes dropped. So
over any history the compaction writes at most one byte per byte deleted (amortised; one sync can
pay for earlier deletes), and the dead bytes are bounded by the live ones. The files a commit drops
stay on disk, as Delta keeps them for time travel, until a vacuum. `purge_deleted_bytes` drops every
dead row now and vacuums both tables, for when a deleted image must be off the disk at once.

Crash safety: bytes are committed before the metadata. A sync killed between the two leaves rows
no metadata points at; the next sync finds them by id and reuses them (no second copy, no read
of the file). The same reuse makes an image that comes back after a delete cost no bytes.

A mirror written by the earlier one-table layout (bytes in `image_mirror`) is converted by the next
sync: its bytes are appended to the bytes table, then the metadata replaces the table.
The binary column carries no statistics (neither in Parquet nor in the Delta log): min/max over
image bytes is useless and large.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa
from deltalake import ColumnProperties, WriterProperties, write_deltalake

from assets_pkg.catalog.object_source import read_first_matching
from assets_pkg.catalog.probe import content_hash
from assets_pkg.catalog.scan import Unusable, checked_stat, read_checked
from assets_pkg.delta_tables import exclusive, open_table, read_table, scan, sql_in, with_commit_retry
from assets_pkg.layout import MIRROR_BYTES_SCHEMA, MIRROR_SCHEMA, mirror_bytes_table
from assets_pkg.storage import Location, ObjectLocation, delta_options, uri

# What a mirror of the earlier one-table layout held besides the metadata (read once, to convert it).
_ONE_TABLE_BYTES = pa.schema([("image_id", pa.string()), ("bytes", pa.binary())])

BYTES_PER_COMMIT = 64 * 2**20  # a batch: bounds a sync's memory and what one compaction rewrites
ROWS_PER_ROW_GROUP = 128       # ~2.5 MB of 20 KB photos: a read of a few ids skips most of a batch
COMPACT_DEAD_SHARE = 0.5       # drop a batch's dead rows once they hold this share of its bytes
FEW_IDS = 512                  # up to this many ids, reads filter by id in SQL (row-group pruning)

WRITER_PROPERTIES = WriterProperties(  # the bytes table
    compression="ZSTD",
    max_row_group_size=ROWS_PER_ROW_GROUP,
    column_properties={"bytes": ColumnProperties(statistics_enabled="NONE", dictionary_enabled=False)},
)
METADATA_WRITER_PROPERTIES = WriterProperties(compression="ZSTD")
METADATA_CONFIGURATION = {"delta.dataSkippingStatsColumns": "image_id,format,width,height,size_bytes,added_at"}
BYTES_CONFIGURATION = {"delta.dataSkippingStatsColumns": "image_id,size_bytes"}


@dataclass
class MirrorChanges:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)  # same bytes, new paths or labels
    unchanged: int = 0
    changed_on_disk: list[str] = field(default_factory=list)  # paths whose bytes changed since the scan
    bytes_added: int = 0       # image bytes appended to the bytes table (a re-added image costs none)
    bytes_dropped: int = 0     # dead image bytes dropped from the bytes table by this sync's compaction
    bytes_rewritten: int = 0   # live image bytes that compaction copied into new files
    dead_bytes: int = 0        # image bytes of deleted images still in the bytes table after this sync

    @property
    def wrote(self) -> bool:
        return bool(self.added or self.removed or self.moved or self.bytes_dropped)


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


def read_mirror_metadata(table: Location) -> pa.Table:
    return read_table(table, MIRROR_SCHEMA)


def sync_mirror(table: Location, manifest: pa.Table, images_dir: Location) -> MirrorChanges:
    with exclusive(table):
        _convert_one_table_layout(table)
        return _sync_mirror(table, manifest, images_dir)


def _sync_mirror(table: Location, manifest: pa.Table, images_dir: Location) -> MirrorChanges:
    want = desired_table(manifest)
    have = read_mirror_metadata(table)
    stored = _stored(mirror_bytes_table(table))
    changes = MirrorChanges()
    want_ids, have_ids = want["image_id"].to_pylist(), have["image_id"].to_pylist()
    have_row = {image_id: n for n, image_id in enumerate(have_ids)}
    changes.removed = sorted(set(have_ids) - set(want_ids))

    entering = [i for i in want_ids if i not in have_row]
    if entering:
        paths_of = dict(zip(want_ids, want["paths"].to_pylist()))
        to_read = [i for i in entering if i not in stored]
        fetched = _read_from_folder(images_dir, paths_of, to_read, changes)
        changes.bytes_added = _append_bytes(mirror_bytes_table(table), fetched, stored)
        changes.added = [i for i in entering if i in stored]  # stored now: appended, or already there

    # Column-wise, not row dicts: at 10,000+ images the per-row objects were most of a quiet sync's time.
    want_paths, want_labels = want["paths"].to_pylist(), want["labels"].to_pylist()
    have_paths, have_labels = have["paths"].to_pylist(), have["labels"].to_pylist()
    common = [(n, have_row[i]) for n, i in enumerate(want_ids) if i in have_row]
    changes.moved = sorted(want_ids[n] for n, h in common
                           if want_paths[n] != have_paths[h] or want_labels[n] != have_labels[h])
    changes.unchanged = len(common) - len(changes.moved)
    if changes.added or changes.removed or changes.moved:
        _replace_metadata(table, _next_metadata(want, have, have_row, set(changes.added)))

    live = {want_ids[n] for n, _ in common} | set(changes.added)
    _compact(mirror_bytes_table(table), stored, live, changes)
    return changes


def desired_table(manifest: pa.Table) -> pa.Table:
    """`desired_state` as a table sorted by image_id (MIRROR_SCHEMA without added_at)."""
    ordered = manifest.sort_by([("image_id", "ascending"), ("path", "ascending")])
    ids, paths, labels = (ordered[c].to_pylist() for c in ("image_id", "path", "labels"))
    firsts, grouped_paths, grouped_labels = [], [], []
    for n, image_id in enumerate(ids):
        if n and ids[n - 1] == image_id:  # another path of the same bytes
            grouped_paths[-1].append(paths[n])
            grouped_labels[-1] = sorted(set(grouped_labels[-1]) | set(labels[n] or []))
        else:
            firsts.append(n)
            grouped_paths.append([paths[n]])
            grouped_labels.append(sorted(set(labels[n] or [])))
    facts = ordered.take(pa.array(firsts, pa.int64()))
    return pa.table({
        **{c: facts[c] for c in ("image_id", "format", "width", "height", "size_bytes")},
        "labels": pa.array(grouped_labels, pa.list_(pa.string())),
        "paths": pa.array(grouped_paths, pa.list_(pa.string())),
    })


def _next_metadata(want: pa.Table, have: pa.Table, have_row: dict[str, int], added: set[str]) -> pa.Table:
    """The metadata table after this sync: every wanted image already in the mirror or added now,
    keeping each one's first `added_at`."""
    keep, added_at = [], []
    have_added_at = have["added_at"].to_pylist()
    now = datetime.now(timezone.utc)
    for n, image_id in enumerate(want["image_id"].to_pylist()):
        if image_id in have_row:
            keep.append(n)
            added_at.append(have_added_at[have_row[image_id]])
        elif image_id in added:
            keep.append(n)
            added_at.append(now)
    rows = want.take(pa.array(keep, pa.int64()))
    columns = {c: rows[c] for c in MIRROR_SCHEMA.names if c != "added_at"}
    columns["added_at"] = pa.array(added_at, MIRROR_SCHEMA.field("added_at").type)
    return pa.table(columns).select(MIRROR_SCHEMA.names).cast(MIRROR_SCHEMA)


def _read_from_folder(images_dir: Location, paths_of: dict[str, list[str]], image_ids: list[str],
                      changes: MirrorChanges) -> Iterator[tuple[str, bytes]]:
    """(image_id, bytes) of the images to store, read lazily (from a bucket prefix, read ahead on
    threads); images whose files changed since the scan are noted in `changes.changed_on_disk` instead."""
    if isinstance(images_dir, ObjectLocation):
        found = read_first_matching(images_dir, ((i, paths_of[i]) for i in image_ids))
    else:
        found = ((i, _read_first_matching(images_dir, paths_of[i], i)) for i in image_ids)
    for image_id, data in found:
        if data is None:
            changes.changed_on_disk.extend(paths_of[image_id])
        else:
            yield image_id, data


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


# The bytes table ---------------------------------------------------------------------------------

def _stored(bytes_table: Location) -> dict[str, tuple[int, int]]:
    """image_id -> (batch, size) of every row in the bytes table, live or dead (no bytes are read)."""
    rows = read_table(bytes_table, MIRROR_BYTES_SCHEMA, ["image_id", "batch", "size_bytes"])
    return {i: (b, s) for i, b, s in zip(rows["image_id"].to_pylist(), rows["batch"].to_pylist(),
                                         rows["size_bytes"].to_pylist())}


def _append_bytes(bytes_table: Location, images: Iterable[tuple[str, bytes]], stored: dict[str, tuple[int, int]]) -> int:
    """Append the images not stored yet, one commit (and batch) per `BYTES_PER_COMMIT`; records
    them in `stored` and returns the bytes appended."""
    batch = max((b for b, _ in stored.values()), default=-1) + 1
    pending: list[tuple[str, bytes]] = []
    pending_bytes = appended = 0

    def commit() -> None:
        nonlocal batch, pending, pending_bytes
        pending.sort()  # sorted ids give each row group a narrow id range for pruning
        data = pa.Table.from_arrays([
            pa.array([i for i, _ in pending], pa.string()), pa.array([batch] * len(pending), pa.int64()),
            pa.array([len(d) for _, d in pending], pa.int64()), pa.array([d for _, d in pending], pa.binary()),
        ], schema=MIRROR_BYTES_SCHEMA)
        with_commit_retry(lambda: write_deltalake(
            uri(bytes_table), data, mode="append", partition_by=["batch"], writer_properties=WRITER_PROPERTIES,
            configuration=BYTES_CONFIGURATION, storage_options=delta_options(bytes_table)))
        stored.update({i: (batch, len(d)) for i, d in pending})
        batch, pending, pending_bytes = batch + 1, [], 0

    pending_ids: set[str] = set()
    for image_id, data in images:
        if image_id in stored or image_id in pending_ids:
            continue
        pending_ids.add(image_id)
        pending.append((image_id, data))
        pending_bytes += len(data)
        appended += len(data)
        if pending_bytes >= BYTES_PER_COMMIT:
            commit()
    if pending:
        commit()
    return appended


def _compact(bytes_table: Location, stored: dict[str, tuple[int, int]], live: set[str], changes: MirrorChanges,
             dead_share: float = COMPACT_DEAD_SHARE) -> None:
    """Drop the dead rows of every batch whose dead bytes reach `dead_share` of its bytes, in one commit."""
    live_bytes: dict[int, int] = {}
    dead: dict[int, list[str]] = {}
    dead_bytes: dict[int, int] = {}
    for image_id, (batch, size) in stored.items():
        if image_id in live:
            live_bytes[batch] = live_bytes.get(batch, 0) + size
        else:
            dead.setdefault(batch, []).append(image_id)
            dead_bytes[batch] = dead_bytes.get(batch, 0) + size
    due = sorted(b for b in dead if dead_bytes[b] >= dead_share * (dead_bytes[b] + live_bytes.get(b, 0)))
    changes.dead_bytes = sum(dead_bytes[b] for b in dead if b not in due)
    if not due:
        return
    # A batch with no live row goes by its partition value alone: delta-rs then removes its files
    # from the log without reading or writing them.
    predicate = " OR ".join(f"batch = {b}" if b not in live_bytes
                            else f"(batch = {b} AND {sql_in('image_id', dead[b])})" for b in due)
    with_commit_retry(lambda: open_table(bytes_table).delete(predicate, writer_properties=WRITER_PROPERTIES))
    changes.bytes_dropped = sum(dead_bytes[b] for b in due)
    changes.bytes_rewritten = sum(live_bytes.get(b, 0) for b in due)
    for b in due:
        for image_id in dead[b]:
            del stored[image_id]


def _replace_metadata(table: Location, metadata: pa.Table) -> None:
    with_commit_retry(lambda: write_deltalake(
        uri(table), metadata, mode="overwrite", schema_mode="overwrite", writer_properties=METADATA_WRITER_PROPERTIES,
        configuration=METADATA_CONFIGURATION, storage_options=delta_options(table)))


def _convert_one_table_layout(table: Location) -> None:
    """Move the bytes out of a mirror written by the one-table layout (a no-op otherwise).

    Bytes first, metadata second: killed in between, the next sync finds the bytes stored and only
    replaces the table.
    """
    old = open_table(table)
    if old is None or "bytes" not in {f.name for f in old.schema().fields}:
        return
    stored = _stored(mirror_bytes_table(table))

    def old_rows() -> Iterator[tuple[str, bytes]]:
        for batch in scan(table, _ONE_TABLE_BYTES, ["image_id", "bytes"]):
            yield from zip(batch.column("image_id").to_pylist(), batch.column("bytes").to_pylist())

    _append_bytes(mirror_bytes_table(table), old_rows(), stored)
    _replace_metadata(table, read_mirror_metadata(table))


# Reads -------------------------------------------------------------------------------------------

def iter_image_bytes(table: Location, image_ids: Iterable[str]) -> Iterator[tuple[str, bytes]]:
    """Stream (image_id, bytes) of the given images that are in the mirror, each once, in no order.

    Only the batches (partitions) holding them are read; with few ids the id filter goes to the
    query too, so Parquet row groups outside their ids are skipped.
    """
    wanted = set(image_ids)
    if not wanted:
        return
    live = set(_column(table, MIRROR_SCHEMA, "image_id", wanted))
    if not live:
        return
    rows = read_table(mirror_bytes_table(table), MIRROR_BYTES_SCHEMA, ["image_id", "batch"], _ids_filter(live))
    batches = sorted({b for i, b in zip(rows["image_id"].to_pylist(), rows["batch"].to_pylist()) if i in live})
    if not batches:
        return
    where = f"batch IN ({','.join(map(str, batches))})"
    if len(live) <= FEW_IDS:
        where += f" AND {sql_in('image_id', sorted(live))}"
    seen: set[str] = set()
    for batch in scan(mirror_bytes_table(table), MIRROR_BYTES_SCHEMA, ["image_id", "bytes"], where):
        ids = batch.column("image_id").to_pylist()
        for n, image_id in enumerate(ids):
            if image_id in live and image_id not in seen:
                seen.add(image_id)
                yield image_id, batch.column("bytes")[n].as_py()


def read_image_bytes(table: Location, image_ids: list[str]) -> dict[str, bytes]:
    """The bytes of a few images, by id (images not in the mirror are left out)."""
    return dict(iter_image_bytes(table, image_ids))


def first_paths(table: Location, image_ids: list[str]) -> dict[str, str]:
    """A display path for each of a few images, by id."""
    if not image_ids:
        return {}
    rows = read_table(table, MIRROR_SCHEMA, ["image_id", "paths"], sql_in("image_id", image_ids))
    return {r["image_id"]: (r["paths"] or [r["image_id"]])[0] for r in rows.to_pylist()}


def purge_deleted_bytes(table: Location) -> int:
    """Drop every deleted image's bytes now and vacuum both tables: afterwards no file of the mirror
    holds them (for an erasure request). Returns the bytes dropped.

    Why it is not run by every sync: the vacuum removes the files older versions read, so time
    travel to before this call and readers still on an old snapshot lose them.
    """
    with exclusive(table):
        bytes_table = mirror_bytes_table(table)
        stored = _stored(bytes_table)
        changes = MirrorChanges()
        live = set(_column(table, MIRROR_SCHEMA, "image_id"))
        _compact(bytes_table, stored, live, changes, dead_share=0.0)
        for path in (table, bytes_table):
            if (dt := open_table(path)) is not None:
                dt.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
        return changes.bytes_dropped


def _ids_filter(ids: set[str]) -> str | None:
    """A SQL filter on image_id for a few ids; None (read the column whole) for many: a filter of
    100,000 literals costs more to plan than reading one string column."""
    return sql_in("image_id", sorted(ids)) if len(ids) <= FEW_IDS else None


def _column(table: Location, schema: pa.Schema, name: str, among: set[str] | None = None) -> list[str]:
    values = read_table(table, schema, [name], _ids_filter(among) if among is not None else None)[name].to_pylist()
    return values if among is None else [v for v in values if v in among]
