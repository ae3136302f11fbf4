"""Campaign tables and ad files.

- `campaign_candidates`: the current candidates of each segment (one row per segment, replaced).
- `campaigns`: one row per generation, appended.
- ad files live under `campaigns/<segment key>/`, named by the generation's cache key and written
  atomically (temp file + rename) so a reader never sees half an image.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import pyarrow as pa
from deltalake import write_deltalake

from assets_pkg.delta_tables import append, open_table, read_table, sql_literal, with_commit_retry

CANDIDATE_STRUCT = pa.struct([
    ("rank", pa.int32()), ("image_id", pa.string()), ("path", pa.string()), ("score", pa.float64()),
])
CANDIDATES_SCHEMA = pa.schema([
    ("segment_key", pa.string()),
    ("segment_name", pa.string()),
    ("description", pa.string()),
    ("subject", pa.string()),
    ("subject_method", pa.string()),
    ("query", pa.string()),
    ("model_key", pa.string()),
    ("candidates", pa.list_(CANDIDATE_STRUCT)),
    ("contact_sheet", pa.string()),
    ("created_at", pa.timestamp("us", tz="UTC")),
])
CAMPAIGNS_SCHEMA = pa.schema([
    ("segment_key", pa.string()),
    ("segment_name", pa.string()),
    ("description", pa.string()),
    ("subject", pa.string()),
    ("seed_index", pa.int32()),
    ("seed_image_id", pa.string()),
    ("seed_path", pa.string()),
    ("prompt", pa.string()),
    ("generator_id", pa.string()),
    ("parameters", pa.string()),  # JSON
    ("output_key", pa.string()),
    ("status", pa.string()),  # "succeeded" or "failed"
    ("error", pa.string()),  # why it failed; null on success
    ("output_path", pa.string()),
    ("reused", pa.bool_()),  # true when the output existed and nothing was paid
    ("latency_s", pa.float64()),
    ("cost_usd", pa.float64()),
    ("mlflow_run_id", pa.string()),
    ("created_at", pa.timestamp("us", tz="UTC")),
])


def replace_candidates(table: Path, row: dict) -> None:
    data = pa.Table.from_pylist([row], schema=CANDIDATES_SCHEMA)

    def write() -> None:
        if open_table(table) is None:
            write_deltalake(str(table), data, mode="append")
        else:
            write_deltalake(str(table), data, mode="overwrite", predicate=f"segment_key = {sql_literal(row['segment_key'])}")

    with_commit_retry(write)


def read_candidates(table: Path, segment_key: str) -> dict:
    rows = read_table(table, CANDIDATES_SCHEMA, where=f"segment_key = {sql_literal(segment_key)}").to_pylist()
    if not rows:
        raise LookupError(f"no candidates for segment {segment_key!r}: materialize campaign_candidates first")
    return rows[0]


def append_campaign(table: Path, row: dict) -> None:
    append(table, pa.Table.from_pylist([row], schema=CAMPAIGNS_SCHEMA))


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


TEMP_PREFIX = ".tmp-"


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


def write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # The writer's pid in the name lets a later run tell an orphan (writer gone) from a live write.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TEMP_PREFIX}{os.getpid()}-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_orphan_temp_files(folder: Path) -> list[Path]:
    """Delete temp files left by writers that were killed mid-write (their pid no longer runs)."""
    removed = []
    for tmp in folder.glob(f"{TEMP_PREFIX}*") if folder.is_dir() else []:
        pid = tmp.name[len(TEMP_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _running(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
