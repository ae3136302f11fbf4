"""LanceDB vector index: sync with the embeddings table, build an IVF_PQ index when large, search.

One table per model key, so vectors of two models never mix. Below `ANN_MIN_ROWS` a flat (exact)
scan answers in about a millisecond and no index is built. Above it an IVF_PQ index over cosine
distance is built with partitions ~ sqrt(n) and searched with enough probes and a refine step
(exact re-ranking of the best candidates) to keep recall@10 at or above 0.95.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import lancedb
from lancedb.index import IvfPq
import numpy as np
import pyarrow as pa

from assets_pkg.delta_tables import exclusive, sql_in

ANN_MIN_ROWS = 10_000
KEEP_OLD_VERSIONS_FOR = timedelta(hours=1)  # readers mid-query keep their snapshot this long


@dataclass(frozen=True)
class AnnParams:
    num_partitions: int
    num_sub_vectors: int
    nprobes: int
    refine_factor: int


@dataclass
class IndexChanges:
    table_name: str
    added: int = 0
    removed: int = 0
    updated: int = 0
    total: int = 0
    ann: AnnParams | None = None
    ann_built: bool = False
    version: int | None = None

    @property
    def wrote(self) -> bool:
        return bool(self.added or self.removed or self.updated or self.ann_built)


@dataclass(frozen=True)
class Hit:
    image_id: str
    path: str
    paths: list[str]
    labels: list[str]
    score: float  # cosine similarity, 1 is identical


def table_name(model_key: str) -> str:
    """A valid, stable LanceDB table name for a model key (which may contain '/' and ':')."""
    slug = re.sub(r"[^a-z0-9]+", "-", model_key.lower()).strip("-")[:48]
    return f"images-{slug}-{hashlib.sha256(model_key.encode()).hexdigest()[:8]}"


def index_schema(dim: int) -> pa.Schema:
    return pa.schema([
        ("image_id", pa.string()),
        ("vector", pa.list_(pa.float32(), dim)),
        ("path", pa.string()),  # first current path, for display
        ("paths", pa.list_(pa.string())),
        ("labels", pa.list_(pa.string())),
    ])


def ann_params(num_rows: int, dim: int) -> AnnParams:
    """Index and search parameters for a table of `num_rows` vectors of `dim` dimensions.

    Measured with benchmarks/bench_index.py (clustered 512-d vectors, 2 CPU cores):
    - partitions ~ sqrt(n) balances the probe cost against partition size; Lance trains at most
      one partition per 256 rows, so never ask for more.
    - PQ codes of 16 dimensions (at least 32 codes, or dim/4 for small dims): 4-d codes built
      2.6x slower (225 s vs 86 s at 100k x 512) for < 0.01 more recall (0.973 vs 0.967 at 40
      probes, refine 20); coarse codes only pick candidates, exact re-ranking orders them.
    - nprobes ~ partitions / 16 (at least 20) and refine_factor 80 (re-rank the best 800 for
      top-10): with clustered data recall is bounded by the PQ codes, not the probes (200k: 18, 37
      and 74 probes all gave 0.940 at refine 30; refine 15 -> 0.906, 60 -> 0.958), and a refine
      step of a few hundred vectors costs a few milliseconds, so buy recall@10 >= 0.95 with refine.
    """
    partitions = max(1, min(int(math.sqrt(num_rows)), num_rows // 256))
    sub_vectors = max(1, max(dim // 16, min(dim // 4, 32)))
    while dim % sub_vectors:
        sub_vectors -= 1
    return AnnParams(num_partitions=partitions, num_sub_vectors=sub_vectors,
                     nprobes=min(partitions, max(20, partitions // 16)), refine_factor=80)


def connect(lance_dir: Path):
    lance_dir.mkdir(parents=True, exist_ok=True)
    return lancedb.connect(str(lance_dir))


def open_index(lance_dir: Path, model_key: str):
    """The model key's table, or None before its first sync."""
    return _open(connect(lance_dir), table_name(model_key))


def _open(db, name: str):
    try:
        return db.open_table(name)
    except ValueError:  # LanceDB's "table not found"
        return None


def sync_index(lance_dir: Path, model_key: str, vectors: pa.Table, metadata: pa.Table, dim: int,
               ann_min_rows: int = ANN_MIN_ROWS) -> IndexChanges:
    """Make the model key's table hold exactly the rows of `vectors` joined with mirror `metadata`.

    vectors: image_id, vector (list<float32>); metadata: image_id, paths, labels.
    """
    with exclusive(lance_dir / table_name(model_key)):
        return _sync_index(lance_dir, model_key, vectors, metadata, dim, ann_min_rows)


def _sync_index(lance_dir: Path, model_key: str, vectors: pa.Table, metadata: pa.Table, dim: int,
                ann_min_rows: int) -> IndexChanges:
    db = connect(lance_dir)
    name = table_name(model_key)
    changes = IndexChanges(table_name=name)
    want = _join(vectors, metadata, dim)
    want_meta = {r["image_id"]: (r["paths"], r["labels"]) for r in want.select(["image_id", "paths", "labels"]).to_pylist()}

    table = _open(db, name)
    if table is None:
        table = db.create_table(name, schema=index_schema(dim))
    have_meta = {r["image_id"]: (r["paths"], r["labels"])
                 for r in scan_index(table, ["image_id", "paths", "labels"]).to_pylist()}

    removed = set(have_meta) - set(want_meta)
    stale = {i for i in set(have_meta) & set(want_meta) if have_meta[i] != want_meta[i]}
    added = set(want_meta) - set(have_meta)
    if removed | stale:
        table.delete(sql_in("image_id", sorted(removed | stale)))
    if added | stale:
        changed = added | stale  # once, not per row: quadratic at a million rows
        mask = pa.array([i in changed for i in want["image_id"].to_pylist()])
        table.add(want.filter(mask))
    changes.added, changes.removed, changes.updated = len(added), len(removed), len(stale)
    changes.total = table.count_rows()

    if changes.total >= ann_min_rows:
        params = ann_params(changes.total, dim)
        if not has_vector_index(table):
            table.create_index("vector", replace=True, config=IvfPq(
                distance_type="cosine", num_partitions=params.num_partitions, num_sub_vectors=params.num_sub_vectors))
            changes.ann_built = True
        changes.ann = params
    if changes.wrote:
        # Compaction merges small fragments, folds new rows into the index, and drops old versions.
        table.optimize(cleanup_older_than=KEEP_OLD_VERSIONS_FOR)
    changes.version = table.version
    return changes


def has_vector_index(table) -> bool:
    # Once built, `optimize()` folds new rows into the existing partitions (no retraining).
    return any("vector" in index.columns for index in table.list_indices())


def search(table, query: np.ndarray, k: int = 3, where: str | None = None, exact: bool = False,
           params: AnnParams | None = None) -> list[Hit]:
    """Top-k by cosine; ANN with `ann_params` for the table size unless `params` (benchmarks) or `exact`."""
    builder = table.search(np.asarray(query, np.float32).reshape(-1)).distance_type("cosine").limit(k)
    if where:
        builder = builder.where(where, prefilter=True)
    if exact:
        builder = builder.bypass_vector_index()
    else:
        params = params or ann_params(table.count_rows(), len(query))
        builder = builder.nprobes(params.nprobes).refine_factor(params.refine_factor)
    rows = builder.select(["image_id", "path", "paths", "labels", "_distance"]).to_list()
    return [Hit(r["image_id"], r["path"], list(r["paths"]), list(r["labels"]), 1.0 - float(r["_distance"]))
            for r in rows]


def recall_at_k(table, queries: np.ndarray, k: int = 10) -> float:
    """Mean overlap of the ANN top-k with the exact top-k, over the given query vectors."""
    if table.count_rows() == 0 or len(queries) == 0:
        return 1.0
    overlaps = []
    for q in queries:
        exact = {h.image_id for h in search(table, q, k, exact=True)}
        approx = {h.image_id for h in search(table, q, k)}
        overlaps.append(len(exact & approx) / max(1, len(exact)))
    return float(np.mean(overlaps))


def catalog_labels(table) -> list[str]:
    """Every distinct label in the index, sorted: the subjects a proposer may choose from."""
    labels = scan_index(table, ["labels"]).column("labels").combine_chunks().flatten()
    return sorted(set(labels.to_pylist()))


def labels_filter(labels: list[str]) -> str | None:
    """A LanceDB `where` clause: rows carrying any of the labels."""
    if not labels:
        return None
    return " OR ".join(f"array_has(labels, '{label.replace(chr(39), chr(39) * 2)}')" for label in labels)


def scan_index(table, columns: list[str]) -> pa.Table:
    """Some columns of every row, without reading the vectors."""
    return table.search().select(columns).limit(None).to_arrow()


def _join(vectors: pa.Table, metadata: pa.Table, dim: int) -> pa.Table:
    meta = {r["image_id"]: r for r in metadata.select(["image_id", "paths", "labels"]).to_pylist()}
    ids = [i for i in vectors["image_id"].to_pylist() if i in meta]
    keep = pa.array([i in meta for i in vectors["image_id"].to_pylist()])
    vecs = vectors.filter(keep)["vector"].combine_chunks()
    flat = vecs.flatten() if len(vecs) else pa.array([], pa.float32())
    return pa.Table.from_arrays([
        pa.array(ids, pa.string()),
        pa.FixedSizeListArray.from_arrays(flat.cast(pa.float32()), dim),
        pa.array([meta[i]["paths"][0] if meta[i]["paths"] else "" for i in ids], pa.string()),
        pa.array([meta[i]["paths"] for i in ids], pa.list_(pa.string())),
        pa.array([meta[i]["labels"] for i in ids], pa.list_(pa.string())),
    ], schema=index_schema(dim))
