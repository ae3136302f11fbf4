"""LanceDB vector index: sync with the embeddings table, build an IVF_SQ index when large, search.

One table per model key, so vectors of two models never mix. Below `ANN_MIN_ROWS` a flat (exact)
scan answers in a few milliseconds and no index is built. Above it an IVF_SQ index over cosine
distance (k-means partitions, 8-bit scalar-quantised vectors) is trained with parameters for the
table's size, and a LabelList index on `labels` serves `where` filters. The parameters the index was
trained with are recorded in the vector column's field metadata (durable, versioned with the table);
the index is retrained when the table has since doubled or halved, so partitions trained for 10,000
rows do not serve a million, and when incremental updates have split it into too many segments.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path

import lancedb
from lancedb.index import IvfSq, LabelList
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from assets_pkg.delta_tables import exclusive, sql_in

ANN_MIN_ROWS = 10_000
RETRAIN_FACTOR = 2.0  # retrain once the table is this many times larger (or smaller) than at training
MAX_INDEX_SEGMENTS = 8  # retrain once this many syncs have each appended a delta to the vector index
ANN_RECORD_KEY = "adrag:ann_index"  # field metadata key on the vector column
KEEP_OLD_VERSIONS_FOR = timedelta(hours=1)  # readers mid-query keep their snapshot this long


@dataclass(frozen=True)
class AnnParams:
    """How the vector index is built and searched; `num_rows` is the table size it was chosen for."""

    index_type: str
    num_partitions: int
    nprobes: int
    refine_factor: int
    num_rows: int

    @property
    def partition_size(self) -> int:
        """Rows per partition that make Lance train `num_partitions` partitions over `num_rows`."""
        return max(1, self.num_rows // self.num_partitions)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> AnnParams | None:
        try:
            return cls(**json.loads(text))
        except (TypeError, ValueError):  # written by another version of this code: treat as unknown
            return None


@dataclass
class IndexChanges:
    table_name: str
    added: int = 0
    removed: int = 0
    updated: int = 0
    total: int = 0
    ann: AnnParams | None = None  # the parameters the current index was trained with
    ann_built: bool = False
    ann_dropped: bool = False  # shrank below the ANN threshold: back to flat search
    retrained_from: int | None = None  # rows the replaced index had been trained for
    version: int | None = None

    @property
    def wrote(self) -> bool:
        return bool(self.added or self.removed or self.updated or self.ann_built or self.ann_dropped)


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

    Measured on clustered 512-d vectors on 2 shared CPU cores (benchmarks/bench_index.py and its
    README; 200k rows unless said):
    - IVF_SQ: 8-bit codes rank candidates so well that re-ranking twice the requested rows gives
      recall@10 0.993 (0.975 under a label filter). IVF_PQ with 32 sub-vectors trained 4-6x longer
      (118 s against 20-30 s) and at the same probes needed refine 20 for 0.975 (0.961 filtered),
      p50 9 ms against 6.5. IVF_RQ (1-bit RaBitQ) trained as fast as SQ but lost filtered recall
      (0.939 at 20 probes with refine 10-40). IVF_HNSW_SQ trained in 178 s for no lower latency.
    - partitions ~ sqrt(n) balances ranking the centroids against scanning the probed partitions;
      Lance trains at most one partition per 256 rows, so never ask for more.
    - nprobes ~ 2 sqrt(partitions), at least 20: a query's neighbours spread over relatively fewer
      partitions as the table grows (200k: 42 of 447 give 0.993 / 0.975 filtered, 21 only 0.962 /
      0.933; 1M: 63 of 1,000 give 1.000 / 0.995), and at these sizes latency is mostly the fixed
      cost of a query, not the scan (1M: 31 -> 126 probes moved p50 from 6.9 to 9.2 ms).
    - refine_factor 2: re-ranking 20 exact vectors for the top-10 undoes the SQ rounding (1M:
      0.983 -> 1.000) for well under a millisecond.
    `dim` does not change the choice for SQ (one byte per dimension); it stays an argument so
    callers need not know that.
    """
    partitions = max(1, min(int(math.sqrt(num_rows)), num_rows // 256))
    nprobes = min(partitions, max(20, round(2 * math.sqrt(partitions))))
    return AnnParams(index_type="IVF_SQ", num_partitions=partitions, nprobes=nprobes, refine_factor=2,
                     num_rows=num_rows)


def needs_training(trained: AnnParams | None, num_rows: int, dim: int, index_segments: int = 1) -> bool:
    """Whether the vector index must be (re)trained for a table of `num_rows` rows.

    `optimize()` folds new rows into the existing partitions without moving the centroids, so an
    index trained at 10,000 rows would serve a million with 100 partitions of 10,000 rows each.
    Retrain when the table has grown or shrunk by `RETRAIN_FACTOR` since training; when the index
    has split into more than `MAX_INDEX_SEGMENTS` pieces (one per sync that added rows); when
    nothing says what the index was trained with (a crash between building and recording, or an
    index from an older version of this code); or when this code would now choose other parameters
    for the size it was trained at (a new index type or rule)."""
    if trained is None or trained != ann_params(trained.num_rows, dim) or index_segments > MAX_INDEX_SEGMENTS:
        return True
    return not trained.num_rows / RETRAIN_FACTOR < num_rows < trained.num_rows * RETRAIN_FACTOR


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
        mask = pa.array([i in changed for i in want["image_id"].to_pylist()], pa.bool_())
        table.add(want.filter(mask))
    changes.added, changes.removed, changes.updated = len(added), len(removed), len(stale)
    changes.total = table.count_rows()

    if changes.total >= ann_min_rows:
        trained = trained_params(table) if has_vector_index(table) else None
        if trained is None or needs_training(trained, changes.total, dim, vector_index_segments(table)):
            changes.retrained_from = trained.num_rows if trained else None
            trained = ann_params(changes.total, dim)
            # Sized by rows per partition, not `num_partitions`: with the latter, LanceDB 0.40's
            # optimize() below rebuilds the index as one partition (every query then scans all rows).
            table.create_index("vector", replace=True, config=IvfSq(
                distance_type="cosine", target_partition_size=trained.partition_size))
            # Recorded after the build: a crash in between leaves no (or an old) record, and the
            # next sync retrains rather than trusting parameters the index was not built with.
            table.update_field_metadata({"path": "vector", "metadata": {ANN_RECORD_KEY: trained.to_json()}})
            changes.ann_built = True
        if not any(index.columns == ["labels"] for index in table.list_indices()):
            # `where` on labels is a prefilter: without this index every query scans all labels
            # (p50 12 ms instead of 4 ms at 200k rows).
            table.create_index("labels", config=LabelList())
        changes.ann = trained
    elif has_vector_index(table):  # shrank below the threshold: flat search is exact and fast here
        for index in table.list_indices():
            table.drop_index(index.name)
        table.update_field_metadata({"path": "vector", "metadata": {ANN_RECORD_KEY: None}})
        changes.ann_dropped = True  # optimize() below removes the dropped index files
    if changes.wrote:
        # Compaction merges small fragments, folds new rows into the indices, and drops old versions.
        table.optimize(cleanup_older_than=KEEP_OLD_VERSIONS_FOR)
    changes.version = table.version
    return changes


def has_vector_index(table) -> bool:
    return any("vector" in index.columns for index in table.list_indices())


def vector_index_segments(table) -> int:
    """How many pieces the vector index is in: every optimize() after new rows adds one (a delta
    over the same centroids) and LanceDB 0.40 never merges them; each costs every query a pass."""
    name = next(index.name for index in table.list_indices() if "vector" in index.columns)
    return table.index_stats(name).num_indices or 1


def trained_params(table) -> AnnParams | None:
    """The parameters the table's vector index was trained with, from the vector field's metadata."""
    record = (table.schema.field("vector").metadata or {}).get(ANN_RECORD_KEY.encode())
    return AnnParams.from_json(record.decode()) if record else None


def search(table, query: np.ndarray, k: int = 3, where: str | None = None, exact: bool = False,
           params: AnnParams | None = None) -> list[Hit]:
    """Top-k by cosine; ANN with the parameters the index was trained with unless `params`
    (benchmarks) or `exact`. Flat tables ignore the ANN parameters."""
    builder = table.search(np.asarray(query, np.float32).reshape(-1)).distance_type("cosine").limit(k)
    if where:
        builder = builder.where(where, prefilter=True)
    if exact:
        builder = builder.bypass_vector_index()
    else:
        params = params or trained_params(table) or ann_params(table.count_rows(), len(query))
        builder = builder.nprobes(params.nprobes).refine_factor(params.refine_factor)
    rows = builder.select(["image_id", "path", "paths", "labels", "_distance"]).to_list()
    if where and not exact and len(rows) < k:
        # A rare label can leave fewer than k of its rows in the probed partitions. Letting Lance
        # widen the probes (`maximum_nprobes`) slowed every filtered query at 1M rows (p50 6.5 ->
        # 8.0 ms); instead the few rows that carry the label are scanned exactly (the LabelList
        # index finds them), only when it happens.
        return search(table, query, k, where, exact=True)
    return [Hit(r["image_id"], r["path"], list(r["paths"]), list(r["labels"]), 1.0 - float(r["_distance"]))
            for r in rows]


def exact_top_k(table, queries: np.ndarray, k: int = 10, label: str | None = None,
                batch_rows: int = 65_536) -> list[list[str]]:
    """The exact top-k image ids by cosine for each query (among rows carrying `label`, if given),
    computed with numpy over the table streamed in batches: at a million rows Lance's own flat
    search takes seconds per query, this takes seconds for fifty queries, in bounded memory."""
    queries = np.asarray(queries, np.float32).reshape(len(queries), -1)
    queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    best = np.empty((len(queries), 0), np.float32)
    best_ids = np.empty((len(queries), 0), object)
    scan = table.search()
    if label is not None:
        scan = scan.where(labels_filter([label]))
    for batch in scan.select(["image_id", "vector"]).limit(None).to_batches(batch_rows):
        if len(batch) == 0:
            continue
        vectors = batch.column("vector").flatten().to_numpy().reshape(len(batch), -1)
        scores = np.concatenate([best, (queries @ vectors.T) / np.linalg.norm(vectors, axis=1)], axis=1)
        ids = np.concatenate([best_ids, np.broadcast_to(
            np.asarray(batch.column("image_id").to_pylist(), object), (len(queries), len(batch)))], axis=1)
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k] if scores.shape[1] > k else \
            np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
        best, best_ids = np.take_along_axis(scores, top, 1), np.take_along_axis(ids, top, 1)
    order = np.argsort(-best, axis=1, kind="stable")
    return np.take_along_axis(best_ids, order, 1).tolist()


def recall_at_k(table, queries: np.ndarray, k: int = 10, label: str | None = None) -> float:
    """Mean overlap of the ANN top-k with the exact top-k over the given query vectors, optionally
    with both searches filtered to rows carrying `label`."""
    if table.count_rows() == 0 or len(queries) == 0:
        return 1.0
    where = labels_filter([label]) if label is not None else None
    overlaps = []
    for q, exact in zip(queries, exact_top_k(table, queries, k, label)):
        approx = {h.image_id for h in search(table, q, k, where=where)}
        overlaps.append(len(set(exact) & approx) / max(1, len(exact)))
    return float(np.mean(overlaps))


def catalog_labels(table) -> list[str]:
    """Every distinct label in the index, sorted: the subjects a proposer may choose from."""
    return sorted(catalog_label_counts(table))


def catalog_label_counts(table) -> dict[str, int]:
    """How many rows carry each label."""
    labels = scan_index(table, ["labels"]).column("labels").combine_chunks().flatten()
    counts = pc.value_counts(labels) if len(labels) else []
    return {c["values"].as_py(): c["counts"].as_py() for c in counts}


def labels_filter(labels: list[str]) -> str | None:
    """A LanceDB `where` clause: rows carrying any of the labels."""
    if not labels:
        return None
    # array_has_any is what the LabelList index answers (one bitmap lookup per label).
    quoted = ", ".join("'" + label.replace("'", "''") + "'" for label in labels)
    return f"array_has_any(labels, [{quoted}])"


def scan_index(table, columns: list[str]) -> pa.Table:
    """Some columns of every row, without reading the vectors."""
    return table.search().select(columns).limit(None).to_arrow()


def _join(vectors: pa.Table, metadata: pa.Table, dim: int) -> pa.Table:
    meta = {r["image_id"]: r for r in metadata.select(["image_id", "paths", "labels"]).to_pylist()}
    ids = [i for i in vectors["image_id"].to_pylist() if i in meta]
    keep = pa.array([i in meta for i in vectors["image_id"].to_pylist()], pa.bool_())
    vecs = vectors.filter(keep)["vector"].combine_chunks()
    flat = vecs.flatten() if len(vecs) else pa.array([], pa.float32())
    return pa.Table.from_arrays([
        pa.array(ids, pa.string()),
        pa.FixedSizeListArray.from_arrays(flat.cast(pa.float32()), dim),
        pa.array([meta[i]["paths"][0] if meta[i]["paths"] else "" for i in ids], pa.string()),
        pa.array([meta[i]["paths"] for i in ids], pa.list_(pa.string())),
        pa.array([meta[i]["labels"] for i in ids], pa.list_(pa.string())),
    ], schema=index_schema(dim))
