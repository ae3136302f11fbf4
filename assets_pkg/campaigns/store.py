"""Campaign tables and ad files.

- `campaign_candidates`: the current candidates of each segment (one row per segment, replaced).
- `campaigns`: one row per generation, appended.
- ad files live under `campaigns/<segment key>/`, named by the generation's cache key and written
  atomically (temp file + rename) so a reader never sees half an image.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
from deltalake import write_deltalake

from assets_pkg.atomic_files import write_atomically
from assets_pkg.delta_tables import append, open_table, read_table, sql_literal, with_commit_retry
from assets_pkg.layout import CAMPAIGNS_SCHEMA, CANDIDATES_SCHEMA
from assets_pkg.storage import Location, delta_options, uri


def replace_candidates(table: Location, row: dict) -> None:
    data = pa.Table.from_pylist([row], schema=CANDIDATES_SCHEMA)

    def write() -> None:
        if open_table(table) is None:
            write_deltalake(uri(table), data, mode="append", storage_options=delta_options(table))
        else:
            # "merge": a table written before a column was added (near_duplicates) gains it, its other rows null.
            write_deltalake(uri(table), data, mode="overwrite", schema_mode="merge", storage_options=delta_options(table),
                            predicate=f"segment_key = {sql_literal(row['segment_key'])}")

    with_commit_retry(write)


def read_candidates(table: Location, segment_key: str) -> dict:
    rows = read_table(table, CANDIDATES_SCHEMA, where=f"segment_key = {sql_literal(segment_key)}").to_pylist()
    if not rows:
        raise LookupError(f"no candidates for segment {segment_key!r}: materialize campaign_candidates first")
    return rows[0]


SUPERSEDED = "superseded"  # a campaigns row's status: an ad tried and not chosen (below the quality bar)


def append_campaign(table: Location, row: dict) -> None:
    # merge: tables written before a column was added (e.g. `quality`) take it on their next append
    append(table, pa.Table.from_pylist([row], schema=CAMPAIGNS_SCHEMA), schema_mode="merge")


def output_key(seed: bytes, brand: bytes, prompt: str, generator_id: str, parameters: dict) -> str:
    """Identity of a generation: same inputs, same key, same stored output."""
    digest = hashlib.sha256()
    for part in (hashlib.sha256(seed).digest(), hashlib.sha256(brand).digest(), prompt.encode(),
                 generator_id.encode(), json.dumps(parameters, sort_keys=True).encode()):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def ad_path(segment_dir: Path, key: str) -> Path:
    return segment_dir / f"ad-{key[:24]}.png"


def pending_path(ad: Path) -> Path:
    """Where the id of a paid, still-running prediction for this ad is kept until its file exists."""
    return ad.with_name(f".pending-{ad.stem}.json")


def write_pending(path: Path, prediction_id: str) -> None:
    write_atomically(path, json.dumps({"prediction_id": prediction_id}).encode())


def read_pending(path: Path) -> str | None:
    try:
        return json.loads(path.read_text())["prediction_id"]
    except (OSError, ValueError, KeyError):
        return None
