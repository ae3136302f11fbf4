"""Is the index fit to retrieve from? Asked before any campaign generation.

The index is ready when the configured model's table exists, holds vectors of that model's
dimension, is not empty, and is not older than the embeddings: it holds exactly the images that
have a vector under the model key and no image that left the mirror. Every problem says what to do.
"""

from __future__ import annotations

from datetime import timezone
from pathlib import Path

import pyarrow.compute as pc

from assets_pkg.consistency import Report
from assets_pkg.delta_tables import read_table
from assets_pkg.index.lance_index import open_index, scan_index, table_name
from assets_pkg.layout import EMBEDDINGS_SCHEMA, MIRROR_SCHEMA

REFRESH = "run the refresh_catalog job (`adrag run`, or Materialize in the Dagster UI)"


class IndexNotReady(RuntimeError):
    """Generation must not start: the message lists what is wrong and what to do."""



def readiness_message(model_key: str, readiness: Report) -> str:
    if readiness.ok:
        return f"the index for {model_key} is ready"
    return f"the index for {model_key} is not ready for generation: " + readiness.describe()


def index_readiness(lance_dir: Path, embeddings_table: Path, mirror_table: Path, model_key: str,
                    dim: int) -> Report:
    """Everything that would make retrieval for `model_key` wrong or empty (nothing is written)."""
    readiness = Report(facts={"model_key": model_key})
    facts = readiness.facts
    table = open_index(lance_dir, model_key) if lance_dir.is_dir() else None
    embeddings = read_table(embeddings_table, EMBEDDINGS_SCHEMA, ["image_id", "model_key", "embedded_at"])
    current = embeddings.filter(pc.equal(embeddings["model_key"], model_key))
    facts.update(table=table_name(model_key), embedded=current.num_rows)
    if table is None:
        others = _other_indexed_keys(lance_dir, embeddings, model_key)
        switched = (f" The index has tables for other models ({', '.join(others)}) that campaigns do not use "
                    f"while {model_key} is configured; they stay as they are." if others else "")
        readiness.problems.append(f"there is no index for model {model_key}: {REFRESH} to embed the catalog "
                                  f"with this model and build its index first.{switched}")
        return readiness

    rows = table.count_rows()
    index_dim = table.schema.field("vector").type.list_size
    updated_at = table.list_versions()[-1]["timestamp"].astimezone(timezone.utc)  # Lance gives local time
    facts.update(rows=rows, dim=index_dim, lance_version=table.version, index_updated_at=updated_at.isoformat())
    if index_dim != dim:
        readiness.problems.append(f"the index holds {index_dim}-dimensional vectors but {model_key} makes {dim}: "
                                  f"drop the LanceDB table {table_name(model_key)} under {lance_dir} and {REFRESH}")
        return readiness
    if rows == 0:
        readiness.problems.append(f"the index for {model_key} is empty: put photos in the image folder and "
                                  f"{REFRESH}")
        return readiness

    indexed = set(scan_index(table, ["image_id"])["image_id"].to_pylist())
    embedded = set(current["image_id"].to_pylist())
    mirror = set(read_table(mirror_table, MIRROR_SCHEMA, ["image_id"])["image_id"].to_pylist())
    newest = pc.max(current["embedded_at"]).as_py() if current.num_rows else None
    not_indexed, not_embedded, vanished = embedded - indexed, indexed - embedded, indexed - mirror
    facts.update(not_indexed=len(not_indexed), not_embedded=len(not_embedded), left_mirror=len(vanished))
    if newest is not None:
        facts["embeddings_updated_at"] = newest.isoformat()
    if (newest is not None and newest > updated_at) or not_indexed or not_embedded:
        age = (f" (index written {updated_at:%Y-%m-%d %H:%M:%S} UTC, newest vector {newest:%Y-%m-%d %H:%M:%S} UTC)"
               if newest is not None and newest > updated_at else "")
        readiness.problems.append(
            f"the index is older than the embeddings{age}: {len(not_indexed)} embedded images are not in it and "
            f"{len(not_embedded)} in it have no vector any more; {REFRESH} to bring the index up to date")
    if vanished:
        readiness.problems.append(f"the index holds {len(vanished)} images that are no longer in the catalog "
                                  f"(deleted or changed files): {REFRESH}")
    return readiness


def require_ready(lance_dir: Path, embeddings_table: Path, mirror_table: Path, model_key: str, dim: int) -> Report:
    """`index_readiness`, raising `IndexNotReady` with every problem and what to do when not ready."""
    readiness = index_readiness(lance_dir, embeddings_table, mirror_table, model_key, dim)
    if not readiness.ok:
        raise IndexNotReady(readiness_message(model_key, readiness))
    return readiness


def _other_indexed_keys(lance_dir: Path, embeddings, model_key: str) -> list[str]:
    """Model keys (known from the embeddings table) that have an index table."""
    if not lance_dir.is_dir():
        return []
    keys = set(embeddings["model_key"].to_pylist()) - {model_key}
    return sorted(k for k in keys if open_index(lance_dir, k) is not None)
