"""The quarantine table: files (or images) a stage could not use, with the reason, kept until fixed.

Rows are keyed by (stage, path). Each stage replaces its own rows with the set it saw this run, so a
fixed or deleted file leaves the quarantine, and first-seen time and attempt count carry over.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pyarrow as pa
from deltalake import write_deltalake

from assets_pkg.delta_tables import exclusive, open_table, read_table, sql_literal, with_commit_retry
from assets_pkg.layout import QUARANTINE_SCHEMA
from assets_pkg.storage import Location, delta_options, uri


def replace_stage_quarantine(table: Location, stage: str, entries: list[tuple[str, str | None, str]]) -> int:
    """Make the quarantine rows of `stage` exactly `entries` [(path, image_id, reason)].

    Returns how many entries there are. Writes nothing when the stage had none and has none.
    """
    with exclusive(table):
        return _replace_stage_quarantine(table, stage, entries)


def _replace_stage_quarantine(table: Location, stage: str, entries: list[tuple[str, str | None, str]]) -> int:
    now = datetime.now(timezone.utc)
    previous = {
        row["path"]: row
        for row in read_table(table, QUARANTINE_SCHEMA).to_pylist()
        if row["stage"] == stage
    }
    if not entries and not previous:
        return 0
    rows = []
    for path, image_id, reason in entries:
        old = previous.get(path)
        rows.append({
            "stage": stage, "path": path, "image_id": image_id, "reason": " ".join(reason.split()),  # one line
            "first_seen": old["first_seen"] if old else now, "last_seen": now,
            "attempts": (old["attempts"] if old else 0) + 1,
        })
    data = pa.Table.from_pylist(rows, schema=QUARANTINE_SCHEMA)

    def write() -> None:
        existing = open_table(table)
        if not rows:
            existing.delete(f"stage = {sql_literal(stage)}")
        elif existing is None:
            write_deltalake(uri(table), data, mode="append", storage_options=delta_options(table))
        else:
            write_deltalake(uri(table), data, mode="overwrite", predicate=f"stage = {sql_literal(stage)}",
                            storage_options=delta_options(table))

    with_commit_retry(write)
    return len(rows)
