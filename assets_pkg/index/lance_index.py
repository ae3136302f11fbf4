"""LanceDB vector index: sync with the embeddings table, build an IVF_SQ index when large, search.

One table per model key, so vectors of two models never mix. Below `ANN_MIN_ROWS` a flat (exact)
scan answers in a few milliseconds and no index is built. Above it an IVF_SQ index over cosine
distance (k-means partitions, 8-bit scalar-quantised vectors) is trained with parameters for the
table's size, and a LabelList index on `labels` serves `where` filters. The parameters the index was
trained with are recorded in the vector column's field metadata (durable, versioned with the table);
the index is retrained when the table has since doubled or halved, so partitions trained for 10,000
rows do not serve a million, and when incremental updates have split it into too many segments.
After each training the partitions a query probes (and, if need be, how many candidates it
re-ranks exactly) are tuned on the table's own vectors.

Writes and scans go through LanceDB's sync API; queries through an `IndexReader`, which uses the
async API on a loop of its own (the sync query path costs ~1.5 ms more per query).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import math
import threading
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from pathlib import Path

import lancedb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from lancedb.index import IvfSq, LabelList

from assets_pkg.delta_tables import exclusive, sql_in
from assets_pkg.layout import slugify
from assets_pkg.storage import Location, check_leases, lance_options, uri

ANN_MIN_ROWS = 10_000
RETRAIN_FACTOR = 2.0  # retrain once the table is this many times larger (or smaller) than at training
MAX_INDEX_SEGMENTS = 8  # retrain once this many syncs have each appended a delta to the vector index
ANN_RECORD_KEY = "adrag:ann_index"  # field metadata key on the vector column
KEEP_OLD_VERSIONS_FOR = timedelta(hours=1)  # readers mid-query keep their snapshot this long
TUNED_RECALL = 0.99  # nprobes is the fewest probes reaching this recall@10, plain and filtered
NPROBES_STEPS = (8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
MAX_REFINE_FACTOR = 64
TUNING_QUERIES = 100
RESULT_COLUMNS = ["image_id", "path", "paths", "labels", "_distance"]


@dataclass(frozen=True)
class AnnParams:
    """How the vector index is built and searched; `num_rows` is the table size it was chosen for.
    `nprobes` and `refine_factor` are search settings tuned after each build (`tune_search`); the
    rest is trained in."""

    index_type: str
    num_partitions: int
    nprobes: int
    refine_factor: int
    num_rows: int

    @property
    def partition_size(self) -> int:
        """Rows per partition that make Lance train `num_partitions` partitions over `num_rows`."""
        return max(1, self.num_rows // self.num_partitions)

    def built_like(self, other: AnnParams) -> bool:
        """Whether an index built with `other` is the index these parameters would build."""
        return replace(self, nprobes=0, refine_factor=0) == replace(other, nprobes=0, refine_factor=0)

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
    # The image's stored (unit) vector, when the search was asked for it (`with_vectors`): what diversity
    # re-ranking compares candidates with, without encoding them again.
    vector: np.ndarray | None = field(default=None, compare=False, repr=False)


def table_name(model_key: str) -> str:
    """A valid, stable LanceDB table name for a model key (which may contain '/' and ':')."""
    return f"images-{slugify(model_key, 48)}-{hashlib.sha256(model_key.encode()).hexdigest()[:8]}"


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
    - nprobes here is only the starting point: after each build `tune_search` sets the fewest
      probes that reach TUNED_RECALL on the table's own vectors, because how many partitions hold a
      query's neighbours depends on how the data clusters (synthetic clustered data, refine 2:
      tuning to 0.99 picked 64 of 447 partitions at 200k rows but 24 of 1,000 at 1M), and each
      probe costs a query time (1M: 24 -> 63 probes, p50 ~4 -> ~5.5 ms).
      The default, 2 sqrt(partitions) and at least 20, is what serves an index without a tuning
      record.
    - refine_factor 2: re-ranking 20 exact vectors for the top-10 undoes the SQ rounding (1M:
      0.983 -> 1.000) for well under a millisecond. Tuning raises it only for vectors the 8-bit
      codes cannot order, such as the near-duplicates of a random-weight model (cosine 0.99998
      between any two: 0.65 recall at refine 2, 0.96 at 8).
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
    index from an older version of this code); or when this code would now build another index for
    the size it was trained at (a new index type or rule). Tuned search settings are no reason."""
    if (trained is None or not trained.built_like(ann_params(trained.num_rows, dim))
            or index_segments > MAX_INDEX_SEGMENTS):
        return True
    return not trained.num_rows / RETRAIN_FACTOR < num_rows < trained.num_rows * RETRAIN_FACTOR


def connect(lance_dir: Location):
    """The LanceDB database at `lance_dir`: a local folder, or an s3:// prefix (assets_pkg/storage.py)."""
    lance_dir.mkdir(parents=True, exist_ok=True)
    return lancedb.connect(uri(lance_dir), storage_options=lance_options(lance_dir))


def open_index(lance_dir: Location, model_key: str):
    """The model key's table, or None before its first sync."""
    return _open(connect(lance_dir), table_name(model_key))


def _open(db, name: str):
    try:
        return db.open_table(name)
    except ValueError:  # LanceDB's "table not found"
        return None


def sync_index(lance_dir: Location, model_key: str, vectors: pa.Table, metadata: pa.Table, dim: int,
               ann_min_rows: int = ANN_MIN_ROWS) -> IndexChanges:
    """Make the model key's table hold exactly the rows of `vectors` joined with mirror `metadata`.

    vectors: image_id, vector (list<float32>); metadata: image_id, paths, labels.
    """
    with exclusive(lance_dir / table_name(model_key)):
        return _sync_index(lance_dir, model_key, vectors, metadata, dim, ann_min_rows)


def _sync_index(lance_dir: Location, model_key: str, vectors: pa.Table, metadata: pa.Table, dim: int,
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
        check_leases()  # on object storage: stop here if another run took this index's lease
        table.delete(sql_in("image_id", sorted(removed | stale)))
    if added | stale:
        check_leases()
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
            # The old record goes first: should the run die before the new one is written below,
            # the next sync finds none and retrains, rather than trusting the old index's settings.
            table.update_field_metadata({"path": "vector", "metadata": {ANN_RECORD_KEY: None}})
            # Sized by rows per partition, not `num_partitions`: with the latter, LanceDB 0.40's
            # optimize() below rebuilds the index as one partition (every query then scans all rows).
            table.create_index("vector", replace=True, config=IvfSq(
                distance_type="cosine", target_partition_size=trained.partition_size))
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
    if changes.ann_built:  # tuned on the index as queries will see it, after optimize()
        changes.ann = tune_search(table, changes.ann, lance_dir)
        # Recorded last, once the index is built, compacted and tuned.
        table.update_field_metadata({"path": "vector", "metadata": {ANN_RECORD_KEY: changes.ann.to_json()}})
    changes.version = table.version
    return changes


def has_vector_index(table) -> bool:
    return any("vector" in index.columns for index in table.list_indices())


def vector_index_segments(table) -> int:
    """How many pieces the vector index is in: every optimize() after new rows adds one (a delta
    over the same centroids), which LanceDB 0.40 rarely folds together; each costs every query a pass."""
    name = next(index.name for index in table.list_indices() if "vector" in index.columns)
    return table.index_stats(name).num_indices or 1


def trained_params(table) -> AnnParams | None:
    """The parameters the table's vector index was trained with, from the vector field's metadata."""
    record = (table.schema.field("vector").metadata or {}).get(ANN_RECORD_KEY.encode())
    return AnnParams.from_json(record.decode()) if record else None


class IndexReader:
    """Queries on one model key's index table as it was when opened (a snapshot: a sync that
    lands meanwhile is not seen). Safe to share between threads.

    `table` is the sync LanceDB table at that version, for scans; queries go through the async
    API on a loop thread shared by all readers: at a million rows a query takes ~4 ms there and
    ~5.6 ms through the sync API, whose own round trips (schema lookups, thread hops) add ~1.5 ms."""

    def __init__(self, table, params: AnnParams | None = None, lance_dir: Location | None = None):
        self.table = table
        self.params = None  # flat search
        if has_vector_index(table):  # an index without a record is searched with the default settings
            self.params = params or trained_params(table) or ann_params(table.count_rows(), _dim(table))
        self._table = _run(_open_async(table, table.version, lance_dir))

    def prewarm(self) -> None:
        """Load the vector index into memory now rather than partition by partition on first use
        (at a million rows a query that reads its probed partitions from disk takes ~9.5 ms, not ~4)."""
        for index in self.table.list_indices():
            _run(self._table.prewarm_index(index.name))

    def search(self, query: np.ndarray, k: int = 3, where: str | None = None, exact: bool = False,
               nprobes: int | None = None, refine_factor: int | None = None, with_vectors: bool = False) -> list[Hit]:
        """Top-k by cosine; ANN with the recorded settings (unless overridden) unless `exact`.
        Flat tables ignore the ANN settings. `with_vectors`: each hit carries its stored vector (the
        table's float32 vector, not the index's quantised code)."""
        query = np.asarray(query, np.float32).reshape(-1)
        table = _run(self._query(query, k, where, exact, nprobes, refine_factor, with_vectors))
        if where and not exact and table.num_rows < k and self.params is not None:
            # A rare label can leave fewer than k of its rows in the probed partitions. Letting Lance
            # widen the probes (`maximum_nprobes`) slowed every filtered query at 1M rows (p50 6.5 ->
            # 8.0 ms); instead the few rows that carry the label are scanned exactly (the LabelList
            # index finds them), only when it happens.
            return self.search(query, k, where, exact=True, with_vectors=with_vectors)
        vectors = [None] * table.num_rows
        if with_vectors and table.num_rows:
            vectors = list(table.column("vector").combine_chunks().flatten().to_numpy()
                           .reshape(table.num_rows, -1))
        return [Hit(r["image_id"], r["path"], list(r["paths"]), list(r["labels"]), 1.0 - float(r["_distance"]), v)
                for r, v in zip(table.select(RESULT_COLUMNS).to_pylist(), vectors)]

    async def _query(self, query, k, where, exact, nprobes, refine_factor, with_vectors=False):
        builder = self._table.vector_search(query).column("vector").distance_type("cosine").limit(k)
        if where:
            builder = builder.where(where)  # a prefilter: the top-k among the rows that match
        if exact:
            builder = builder.bypass_vector_index()
        elif self.params is not None:
            builder = builder.nprobes(nprobes or self.params.nprobes)
            builder = builder.refine_factor(refine_factor or self.params.refine_factor)
        return await builder.select([*RESULT_COLUMNS, "vector"] if with_vectors else RESULT_COLUMNS).to_arrow()


def open_reader(lance_dir: Location, model_key: str) -> IndexReader | None:
    """A reader on the model key's table as it is now, or None before its first sync."""
    table = open_index(lance_dir, model_key)
    return None if table is None else IndexReader(table, lance_dir=lance_dir)


def _dim(table) -> int:
    return table.schema.field("vector").type.list_size


async def _open_async(table, version: int, lance_dir: Location | None = None):
    """`table` at `version` through the async API; `lance_dir` (needed on object storage, for its
    connection) defaults to the local folder the table is in."""
    home = lance_dir if lance_dir is not None else Path(table.uri).parent
    db = await lancedb.connect_async(uri(home), storage_options=lance_options(home))
    opened = await db.open_table(table.name)
    await opened.checkout(version)
    return opened


@functools.cache
def _loop() -> asyncio.AbstractEventLoop:
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="lance-queries", daemon=True).start()
    return loop


def _run(coroutine):
    """Run a coroutine on the readers' loop thread from any thread, and wait for its result."""
    return asyncio.run_coroutine_threadsafe(coroutine, _loop()).result()


def tune_search(table, params: AnnParams, lance_dir: Location | None = None) -> AnnParams:
    """`params` with the fewest probes (of NPROBES_STEPS, else all partitions) at which recall@10
    reaches TUNED_RECALL, plain and filtered on the commonest label, for TUNING_QUERIES of the
    table's own vectors. The margin over the recall check's 0.95 (measured there on another
    sample) covers what a sample of 100 cannot see and that a stored vector finds itself: at 1M
    rows a 0.98 target picked 16 probes, which gave held-out queries 0.966 filtered recall.

    Should even every partition miss the target, the codes rank these vectors too coarsely: the
    refine factor doubles while that helps (exact ties cap recall by ids below 1 whatever the
    factor, so it stops when a doubling gains under half a point) or reaches the target."""
    reader = IndexReader(table, params, lance_dir)
    reader.prewarm()
    queries = sample_vectors(reader.table, TUNING_QUERIES, seed=1)
    label = commonest_label(reader.table)
    truths = {None: exact_top_k(reader.table, queries, 10)}
    if label is not None:
        truths[label] = exact_top_k(reader.table, queries, 10, label)

    def worst_recall(nprobes: int, refine_factor: int) -> float:
        return min(recall_against(reader, queries, truth, name, nprobes, refine_factor) for name, truth in truths.items())

    steps = [n for n in NPROBES_STEPS if n < params.num_partitions] + [params.num_partitions]
    for nprobes in steps:
        if (recall := worst_recall(nprobes, params.refine_factor)) >= TUNED_RECALL:
            return replace(params, nprobes=nprobes)
    refine = params.refine_factor
    while refine < MAX_REFINE_FACTOR:
        better = worst_recall(params.num_partitions, refine * 2)
        if better < recall + 0.005:
            break
        recall, refine = better, refine * 2
        if recall >= TUNED_RECALL:
            break
    return replace(params, nprobes=params.num_partitions, refine_factor=refine)


def sample_vectors(table, n: int, seed: int) -> np.ndarray:
    """`n` stored vectors picked at random (reproducibly): queries shaped like the real ones."""
    rows = table.count_rows()
    offsets = np.random.default_rng(seed).choice(rows, size=min(n, rows), replace=False)
    picked = table.take_offsets(sorted(int(o) for o in offsets)).select(["vector"]).to_arrow()
    return picked["vector"].combine_chunks().flatten().to_numpy().reshape(len(picked), -1)


def commonest_label(table) -> str | None:
    counts = catalog_label_counts(table)
    return max(counts, key=lambda name: (counts[name], name)) if counts else None


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


def recall_at_k(reader: IndexReader, queries: np.ndarray, k: int = 10, label: str | None = None) -> float:
    """Mean overlap of the ANN top-k with the exact top-k over the given query vectors, optionally
    with both searches filtered to rows carrying `label`."""
    if reader.table.count_rows() == 0 or len(queries) == 0:
        return 1.0
    return recall_against(reader, queries, exact_top_k(reader.table, queries, k, label), label)


def recall_against(reader: IndexReader, queries: np.ndarray, truth: list[list[str]], label: str | None = None,
                   nprobes: int | None = None, refine_factor: int | None = None) -> float:
    """Mean overlap of the ANN top-k with the given exact top-k lists (k = their length)."""
    where = labels_filter([label]) if label is not None else None
    overlaps = []
    for query, exact in zip(queries, truth):
        approx = {h.image_id for h in reader.search(query, len(exact) or 1, where=where, nprobes=nprobes,
                                                    refine_factor=refine_factor)}
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
