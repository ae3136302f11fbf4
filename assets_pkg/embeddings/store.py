"""The embeddings Delta table: (image_id, model_key) -> float32 unit vector.

Only images without a vector for the current model key are embedded; vectors of images that left
the mirror are deleted (for every model key). Vectors are committed in chunks so a long run keeps
its progress.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from assets_pkg.catalog.mirror import iter_image_bytes
from assets_pkg.delta_tables import append, exclusive, open_table, read_table, sql_in, sql_literal, with_commit_retry
from assets_pkg.embeddings.encode import ImageEncoder
from assets_pkg.layout import EMBEDDINGS_SCHEMA, MIRROR_SCHEMA

COMMIT_EVERY = 4096  # vectors per Delta commit


@dataclass
class EmbeddingChanges:
    embedded: int = 0
    removed: int = 0
    unchanged: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (image_id, reason), this run
    skipped: list[str] = field(default_factory=list)  # known-bad images still in the mirror
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0


def read_vectors(table: Path, model_key: str) -> pa.Table:
    return read_table(table, EMBEDDINGS_SCHEMA, ["image_id", "vector"], f"model_key = {sql_literal(model_key)}")


def sync_embeddings(table: Path, mirror_table: Path, encoder: ImageEncoder,
                    on_progress: Callable[[int, int, float], None] | None = None,
                    skip_ids: set[str] = frozenset()) -> EmbeddingChanges:
    """Make the table hold exactly one vector per mirror image for `encoder.model_key`.

    `skip_ids` are images already known to fail decoding (quarantined); they are not retried unless
    their bytes change (and so their id).
    """
    with exclusive(table):
        return _sync_embeddings(table, mirror_table, encoder, on_progress, skip_ids)


def _sync_embeddings(table: Path, mirror_table: Path, encoder: ImageEncoder,
                     on_progress: Callable[[int, int, float], None] | None, skip_ids: set[str]) -> EmbeddingChanges:
    mirror_ids = set(read_table(mirror_table, MIRROR_SCHEMA, ["image_id"])["image_id"].to_pylist())
    all_rows = read_table(table, EMBEDDINGS_SCHEMA, ["image_id", "model_key"])
    have_any = set(all_rows["image_id"].to_pylist())
    have = set(pc.filter(all_rows["image_id"], pc.equal(all_rows["model_key"], encoder.model_key)).to_pylist())

    changes = EmbeddingChanges()
    vanished = sorted(have_any - mirror_ids)
    if vanished:
        with_commit_retry(lambda: open_table(table).delete(sql_in("image_id", vanished)))
        changes.removed = int(pc.sum(pc.is_in(all_rows["image_id"], pa.array(vanished))).as_py())
    changes.skipped = sorted(mirror_ids & set(skip_ids))
    todo = sorted(mirror_ids - have - set(skip_ids))
    changes.unchanged = len(mirror_ids & have)
    if not todo:
        return changes

    started = time.perf_counter()
    pending: list[pa.Table] = []
    pending_rows = 0
    for batch in encoder.encode_images(iter_image_bytes(mirror_table, todo)):
        changes.failed.extend(batch.failed)
        if batch.image_ids:
            pending.append(_rows(batch.image_ids, encoder.model_key, batch.vectors))
            pending_rows += len(batch.image_ids)
            changes.embedded += len(batch.image_ids)
        if pending_rows >= COMMIT_EVERY:
            append(table, pa.concat_tables(pending))
            pending, pending_rows = [], 0
        if on_progress:
            on_progress(changes.embedded + len(changes.failed), len(todo), time.perf_counter() - started)
    if pending:
        append(table, pa.concat_tables(pending))
    changes.seconds = time.perf_counter() - started
    return changes


def _rows(image_ids: list[str], model_key: str, vectors: np.ndarray) -> pa.Table:
    flat = pa.array(vectors.astype(np.float32, copy=False).reshape(-1), pa.float32())
    offsets = pa.array(np.arange(0, (len(image_ids) + 1) * vectors.shape[1], vectors.shape[1], dtype=np.int32))
    now = datetime.now(timezone.utc)
    return pa.Table.from_arrays([
        pa.array(image_ids, pa.string()),
        pa.array([model_key] * len(image_ids), pa.string()),
        pa.ListArray.from_arrays(offsets, flat),
        pa.array([now] * len(image_ids), pa.timestamp("us", tz="UTC")),
    ], schema=EMBEDDINGS_SCHEMA)
