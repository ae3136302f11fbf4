"""Vector index benchmark: build time, top-10 latency and recall@10 against exact search.

Loads synthetic clustered unit vectors through `sync_index` (what the `image_index` asset does:
build, optimize, tune nprobes), then times `IndexReader.search` (what retrieval calls: parameters
read from the index's record) on the prewarmed index with and without a label filter, measures
recall@10 of the same searches against exact top-10s computed with numpy over the whole table,
and times LanceDB's own exact search and the same ANN query through LanceDB's sync API, all in one
run. It also times a query on a 100-row flat table (the fixed per-query cost no index can remove)
and the first queries of a reader that was not prewarmed.

Query forms (`assets_pkg/index/queries.py`), on the same prewarmed index: each query vector is built
by `build_query` from parts already encoded (held-out vectors stand for a text, an image and a
negative text: the model's encoding is not timed), then searched for its top 10. Each form's p50 is
compared with plain text search's (target <= 1.5x) and its recall@10 measured against the exact
top-10 of the same fused vector (target >= 0.95). The forms are timed in interleaved rounds, so a
busy neighbour slows them all alike. Also timed: the campaigns' retrieval (top 20 with their vectors,
then three by MMR with near-duplicates dropped) against a plain top-3.

    .venv/bin/python benchmarks/bench_index.py [--rows N] [--dim D] [--queries Q] [--sweep] [--forms-only]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assets_pkg.index.diversity import Diversity, pick_diverse  # noqa: E402
from assets_pkg.index.lance_index import (  # noqa: E402
    RESULT_COLUMNS,
    exact_top_k,
    labels_filter,
    open_index,
    open_reader,
    sync_index,
    trained_params,
    vector_index_segments,
)
from assets_pkg.index.queries import Query, QueryImage, build_query  # noqa: E402

LABELS = ["dog", "cat", "product", "outdoor", "people"]
CHUNK = 50_000


class ClusteredEmbeddings:
    """Unit vectors like real image embeddings: a few thousand centres grouped under broader topics,
    cluster sizes that vary, per-cluster spread, and noise whose variance decays over directions
    (embeddings have a low effective dimension, not isotropic noise). Fixed seed; queries come from
    the same distribution with another seed."""

    def __init__(self, dim: int, centres: int = 2000, topics: int = 64, seed: int = 7):
        rng = np.random.default_rng(seed)
        topic = rng.normal(size=(topics, dim))
        topic /= np.linalg.norm(topic, axis=1, keepdims=True)
        c = topic[rng.integers(0, topics, centres)] + rng.normal(size=(centres, dim)) / np.sqrt(dim)
        self.centres = c / np.linalg.norm(c, axis=1, keepdims=True)
        self.weights = rng.pareto(1.5, centres) + 1  # some clusters are much larger than others
        self.weights /= self.weights.sum()
        self.spread = rng.uniform(0.7, 1.3, centres)  # per-cluster tightness
        self.basis, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
        scale = np.arange(1, dim + 1) ** -0.6  # decaying spectrum
        self.scale = scale * 0.9 / np.linalg.norm(scale)  # noise norm ~0.9: cos to centre ~0.75
        self.dim = dim

    def draw(self, n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        which = rng.choice(len(self.centres), n, p=self.weights)
        noise = (rng.normal(size=(n, self.dim)) * self.scale) @ self.basis.T
        v = self.centres[which] + noise * self.spread[which, None]
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def embeddings_tables(gen: ClusteredEmbeddings, rows: int) -> tuple[pa.Table, pa.Table]:
    """The embeddings and mirror-metadata tables `sync_index` takes, generated in chunks."""
    chunks = []
    for start in range(0, rows, CHUNK):
        n = min(CHUNK, rows - start)
        flat = pa.array(gen.draw(n, seed=1000 + start // CHUNK).reshape(-1))
        chunks.append(pa.FixedSizeListArray.from_arrays(flat, gen.dim))
    ids = pa.array([f"{i:064x}" for i in range(rows)])
    vectors = pa.table({"image_id": ids, "vector": pa.chunked_array(chunks)})
    metadata = pa.table({
        "image_id": ids,
        "paths": pa.array([[f"img/{i}.jpg"] for i in range(rows)], pa.list_(pa.string())),
        "labels": pa.array([[LABELS[i % len(LABELS)]] for i in range(rows)], pa.list_(pa.string())),
    })
    return vectors, metadata


def timed_search(reader, queries, nprobes=None, where=None, exact=False):
    """(result id lists, per-query latencies in ms)."""
    ids, ms = [], []
    for q in queries:
        t = time.perf_counter()
        hits = reader.search(q, 10, where=where, exact=exact, nprobes=nprobes)
        ms.append((time.perf_counter() - t) * 1000)
        ids.append([h.image_id for h in hits])
    return ids, np.array(ms)


def timed_sync_api(table, queries, params, where=None):
    """The same ANN query through LanceDB's sync API (`table.search`), what `search` used to be."""
    ids, ms = [], []
    for q in queries:
        t = time.perf_counter()
        builder = table.search(q).distance_type("cosine").limit(10).nprobes(params.nprobes)
        if where:
            builder = builder.where(where, prefilter=True)
        rows = builder.refine_factor(params.refine_factor).select(RESULT_COLUMNS).to_list()
        ms.append((time.perf_counter() - t) * 1000)
        ids.append([r["image_id"] for r in rows])
    return ids, np.array(ms)


def recall(approx: list[list[str]], exact: list[list[str]]) -> float:
    return float(np.mean([len(set(a) & set(e)) / max(1, len(e)) for a, e in zip(approx, exact)]))


def ranked_partitions(table, dim: int) -> int:
    """Centroids a query ranks (the index's partitions over all its segments), from the query plan:
    LanceDB reports no partition count, and this is how a collapsed index shows."""
    plan = table.search(np.ones(dim, np.float32)).distance_type("cosine").limit(1).nprobes(1).analyze_plan()
    value, unit = re.search(r"partitions_ranked=([\d.]+)( K)?", plan).groups()
    return round(float(value) * (1000 if unit else 1))


def query_floor_ms(tmp: Path, dim: int, queries: np.ndarray) -> np.ndarray:
    """Latencies of `search` on a 100-row table (flat, no index): Python, the async runtime and
    Lance's plan, with almost no data to read."""
    gen = ClusteredEmbeddings(dim, centres=20, topics=4)
    vectors, metadata = embeddings_tables(gen, 100)
    sync_index(tmp, "floor", vectors, metadata, dim)
    reader = open_reader(tmp, "floor")
    timed_search(reader, queries[:20])
    return timed_search(reader, queries)[1]


class EncodedParts:
    """Stands in for the model: every text and image of the queries already encoded, so what is timed
    is the query arithmetic and the search."""

    def __init__(self):
        self.vectors: dict[str | bytes, np.ndarray] = {}

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        return np.stack([self.vectors[t] for t in texts])

    def encode_images(self, items):
        for image_id, data in items:
            yield SimpleNamespace(image_ids=[image_id], vectors=self.vectors[data][None], failed=[])


def query_forms(gen: ClusteredEmbeddings, n: int, label: str) -> tuple[EncodedParts, dict[str, list[Query]]]:
    """`n` queries of each form; texts, images and negatives are held-out draws (other seeds than the
    table's), each query its own."""
    parts = EncodedParts()
    for name, seed in (("t", 1), ("n", 3)):
        parts.vectors.update({f"{name}{j}": v for j, v in enumerate(gen.draw(n, seed=seed))})
    parts.vectors.update({f"i{j}".encode(): v for j, v in enumerate(gen.draw(n, seed=2))})

    def image(j):
        return QueryImage(f"i{j}".encode(), f"i{j}")

    forms = {
        "text (plain)": lambda j: Query(f"t{j}"),
        "image": lambda j: Query(image=image(j)),
        "text + image 0.5": lambda j: Query(f"t{j}", image(j)),
        "text - negative 0.5": lambda j: Query(f"t{j}", negatives=(f"n{j}",)),
        "text, label filter": lambda j: Query(f"t{j}", labels=(label,)),
        "text+image-neg, label": lambda j: Query(f"t{j}", image(j), negatives=(f"n{j}",), labels=(label,)),
    }
    return parts, {name: [make(j) for j in range(n)] for name, make in forms.items()}


def time_forms(reader, table, gen: ClusteredEmbeddings, n: int, n_recall: int, label: str, rounds: int = 5) -> list:
    """(form, p50 ms, p99 ms, ratio to plain p50, recall@10 against exact search of the same vector)."""
    parts, forms = query_forms(gen, n, label)
    built = {name: [build_query(q, parts) for q in queries] for name, queries in forms.items()}
    ms: dict[str, list[float]] = {name: [] for name in forms}

    def one(name: str, j: int) -> list[str]:
        t = time.perf_counter()
        vector = build_query(forms[name][j], parts)
        hits = reader.search(vector.vector, 10, where=vector.where)
        ms[name].append((time.perf_counter() - t) * 1000)
        return [h.image_id for h in hits]

    for j in range(min(20, n)):  # warm-up
        one("text (plain)", j)
    ms["text (plain)"].clear()
    names = list(forms)
    for r in range(rounds):  # interleaved: each round times a slice of every form, in a rotated order
        for name in names[r % len(names):] + names[:r % len(names)]:
            for j in range(r, n, rounds):
                one(name, j)
    results = []
    plain = np.median(ms["text (plain)"])
    for name in names:
        check = built[name][:n_recall]
        where_label = label if check[0].where else None
        truth = exact_top_k(table, np.stack([b.vector for b in check]), 10, label=where_label)
        got = [[h.image_id for h in reader.search(b.vector, 10, where=b.where)] for b in check]
        results.append((name, np.median(ms[name]), np.percentile(ms[name], 99), np.median(ms[name]) / plain,
                        recall(got, truth)))
    return results


def time_campaign_retrieval(reader, queries: np.ndarray, rounds: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Latencies (ms) of a plain top-3 and of the campaigns' retrieval: top 20 with vectors, then 3 by MMR."""
    plain, diverse = [], []
    diversity = Diversity()
    for r in range(rounds):
        for j in range(r, len(queries), rounds):
            t = time.perf_counter()
            reader.search(queries[j], 3)
            plain.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            pick_diverse(reader.search(queries[j], diversity.pool, with_vectors=True), 3, diversity)
            diverse.append((time.perf_counter() - t) * 1000)
    return np.array(plain), np.array(diverse)


def print_forms(forms: list, campaign: tuple[np.ndarray, np.ndarray]) -> bool:
    print(f"\n{'query form (top 10)':24} {'p50 ms':>8} {'p99 ms':>8} {'x plain':>8} {'recall@10':>10}  target")
    ok = True
    for name, p50, p99, ratio, rec in forms:
        passed = ratio <= 1.5 and rec >= 0.95
        ok &= passed
        print(f"{name:24} {p50:8.2f} {p99:8.2f} {ratio:7.2f}x {rec:10.3f}  {'PASS' if passed else 'FAIL'} "
              "(<= 1.5x, >= 0.95)")
    plain, diverse = campaign
    print(f"campaign retrieval: plain top-3 p50 {np.median(plain):.2f} ms (p99 {np.percentile(plain, 99):.2f}); "
          f"top-20 with vectors + MMR p50 {np.median(diverse):.2f} ms (p99 {np.percentile(diverse, 99):.2f}), "
          f"{np.median(diverse) / np.median(plain):.2f}x")
    return ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=300, help="queries timed per configuration")
    ap.add_argument("--recall-queries", type=int, default=100, help="queries checked against exact top-10s")
    ap.add_argument("--exact-queries", type=int, default=20, help="queries timed with LanceDB's exact search")
    ap.add_argument("--sweep", action="store_true", help="also try half and twice the tuned nprobes")
    ap.add_argument("--forms-only", action="store_true",
                    help="after the build, time only the query forms and the campaigns' retrieval")
    args = ap.parse_args()

    gen = ClusteredEmbeddings(args.dim)
    t = time.perf_counter()
    vectors, metadata = embeddings_tables(gen, args.rows)
    queries = gen.draw(max(args.queries, args.recall_queries), seed=1)  # held out: never indexed
    print(f"generated {args.rows:,} x {args.dim} clustered vectors in {time.perf_counter() - t:.1f}s", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        lance_dir = Path(tmp)
        # Same path as the asset: first sync writes rows (threshold not reached), second crosses it.
        t = time.perf_counter()
        sync_index(lance_dir, "bench", vectors, metadata, args.dim, ann_min_rows=args.rows + 1)
        write_s = time.perf_counter() - t
        t = time.perf_counter()
        changes = sync_index(lance_dir, "bench", vectors, metadata, args.dim, ann_min_rows=min(args.rows, 10_000))
        build_s = time.perf_counter() - t
        del vectors, metadata
        assert changes.ann_built
        params = changes.ann
        table = open_index(lance_dir, "bench")
        assert trained_params(table) == params
        partitions = ranked_partitions(table, args.dim)
        print(f"table write {write_s:.1f}s, {params.index_type} build + optimize + tune {build_s:.1f}s; {params}; "
              f"query plan ranks {partitions} partitions in {vector_index_segments(table)} segment(s)", flush=True)

        label = "dog"
        if args.forms_only:
            reader = open_reader(lance_dir, "bench")
            reader.prewarm()
            forms = time_forms(reader, table, gen, args.queries, args.recall_queries, label)
            campaign = time_campaign_retrieval(reader, queries[:args.queries])
            print(f"\n{args.rows:,} x {args.dim}, {params.index_type}, partitions={params.num_partitions}, "
                  f"nprobes/refine {params.nprobes}/{params.refine_factor}; {args.queries} timed queries per form")
            sys.exit(0 if print_forms(forms, campaign) else 1)
        where = labels_filter([label])
        check = queries[:args.recall_queries]
        t = time.perf_counter()
        truth = exact_top_k(table, check, 10)
        truth_f = exact_top_k(table, check, 10, label=label)
        truth_s = time.perf_counter() - t

        # A reader's first queries load the index partitions they probe from disk.
        _, cold_ms = timed_search(open_reader(lance_dir, "bench"), queries[:20])
        reader = open_reader(lance_dir, "bench")
        t = time.perf_counter()
        reader.prewarm()
        prewarm_s = time.perf_counter() - t
        _, exact_ms = timed_search(reader, queries[:args.exact_queries], exact=True)
        _, exact_f_ms = timed_search(reader, queries[:args.exact_queries], where=where, exact=True)
        floor_ms = query_floor_ms(lance_dir / "floor", args.dim, queries[:args.queries])

        configs = [None]  # None: what retrieval does, the parameters recorded with the index
        if args.sweep:
            configs += [max(1, params.nprobes // 2), min(params.num_partitions, params.nprobes * 2)]
        rows = [("exact (LanceDB flat)", "-", exact_ms, 1.0, exact_f_ms, 1.0),
                ("100-row flat table", "-", floor_ms, float("nan"), np.array([np.nan]), float("nan")),
                ("cold reader, first 20", f"{params.nprobes}/{params.refine_factor}", cold_ms, float("nan"),
                 np.array([np.nan]), float("nan"))]
        timed_sync_api(table, queries[:20], params)  # warm up LanceDB's sync connection's own cache
        _, ms = timed_sync_api(table, queries[:args.queries], params)
        got, _ = timed_sync_api(table, check, params)
        got_f, ms_f = timed_sync_api(table, check, params, where=where)
        rows.append(("LanceDB sync API", f"{params.nprobes}/{params.refine_factor}", ms, recall(got, truth), ms_f,
                     recall(got_f, truth_f)))
        for nprobes in configs:
            timed_search(reader, queries[:20], nprobes)
            _, ms = timed_search(reader, queries[:args.queries], nprobes)
            got, _ = timed_search(reader, check, nprobes)
            got_f, ms_f = timed_search(reader, check, nprobes, where=where)
            rows.append(("recorded params" if nprobes is None else "sweep",
                         f"{nprobes or params.nprobes}/{params.refine_factor}", ms,
                         recall(got, truth), ms_f, recall(got_f, truth_f)))
        forms = time_forms(reader, table, gen, args.queries, args.recall_queries, label)
        campaign = time_campaign_retrieval(reader, queries[:args.queries])

    base = np.median(exact_ms)
    print(f"\n{args.rows:,} x {args.dim}, {params.index_type}, partitions={params.num_partitions}; "
          f"{args.queries} timed queries ({args.exact_queries} for exact search), recall over {len(check)} "
          f"against numpy exact top-10 ({truth_s:.1f}s); filter: {where}")
    print(f"{'search':22} {'nprobes/refine':>14} {'p50 ms':>8} {'p99 ms':>8} {'speedup':>8} {'recall@10':>10} "
          f"{'filt p50':>9} {'filt p99':>9} {'filt rec':>9}")
    for name, pr, ms, rec, ms_f, rec_f in rows:
        p50 = np.median(ms)
        print(f"{name:22} {pr:>14} {p50:8.2f} {np.percentile(ms, 99):8.2f} {base / p50:7.1f}x {rec:10.3f} "
              f"{np.median(ms_f):9.2f} {np.percentile(ms_f, 99):9.2f} {rec_f:9.3f}")
    forms_ok = print_forms(forms, campaign)
    print(f"\nbuild: table write {write_s:.1f}s, index build + optimize + tune {build_s:.1f}s; "
          f"prewarm {prewarm_s:.2f}s")
    sys.exit(0 if forms_ok else 1)


if __name__ == "__main__":
    main()
