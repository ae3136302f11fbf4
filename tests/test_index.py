"""LanceDB index: exact sync with the embeddings, IVF_PQ recall against exact search, label filters."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from assets_pkg.index.lance_index import ann_params, catalog_labels, labels_filter, open_index, recall_at_k, search, sync_index

DIM = 64


def clustered_vectors(n: int, clusters: int = 40, seed: int = 0) -> np.ndarray:
    """Unit vectors around a few fixed centres, like real embeddings (not uniform noise).

    The centres are the same for every seed, so another seed draws held-out points (queries) from
    the same distribution as the indexed ones."""
    centres = np.random.default_rng(12345).normal(size=(clusters, DIM))
    rng = np.random.default_rng(seed)
    vectors = centres[rng.integers(0, clusters, n)] + 0.35 * rng.normal(size=(n, DIM))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def tables(vectors: np.ndarray, labels_for=lambda i: ["dog" if i % 2 else "cat"]):
    ids = [f"{i:064x}" for i in range(len(vectors))]
    emb = pa.table({"image_id": ids, "vector": pa.array(list(vectors), pa.list_(pa.float32()))})
    meta = pa.table({"image_id": ids,
                     "paths": pa.array([[f"img/{i}.jpg"] for i in range(len(ids))], pa.list_(pa.string())),
                     "labels": pa.array([labels_for(i) for i in range(len(ids))], pa.list_(pa.string()))})
    return emb, meta


def test_sync_adds_deletes_and_updates_paths(tmp_path):
    vectors = clustered_vectors(50)
    emb, meta = tables(vectors)
    first = sync_index(tmp_path, "m/k", emb, meta, DIM)
    assert (first.added, first.removed, first.total, first.ann) == (50, 0, 50, None)

    keep = pa.array([i >= 5 for i in range(50)])
    renamed = meta.filter(keep).set_column(1, "paths", pa.array(
        [["renamed.jpg"] if i == 7 else [f"img/{i}.jpg"] for i in range(5, 50)], pa.list_(pa.string())))
    second = sync_index(tmp_path, "m/k", emb.filter(keep), renamed, DIM)
    assert (second.added, second.removed, second.updated, second.total) == (0, 5, 1, 45)

    table = open_index(tmp_path, "m/k")
    hits = search(table, vectors[7], k=1)
    assert hits[0].image_id == f"{7:064x}" and hits[0].path == "renamed.jpg"
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    gone = {h.image_id for h in search(table, vectors[0], k=45)}
    assert not gone & {f"{i:064x}" for i in range(5)}, "a deleted image can never be retrieved"

    third = sync_index(tmp_path, "m/k", emb.filter(keep), renamed, DIM)
    assert not third.wrote and third.version == second.version


def test_model_keys_get_separate_tables(tmp_path):
    emb, meta = tables(clustered_vectors(10))
    sync_index(tmp_path, "model-a", emb, meta, DIM)
    sync_index(tmp_path, "model-b", emb.slice(0, 3), meta, DIM)
    assert open_index(tmp_path, "model-a").count_rows() == 10
    assert open_index(tmp_path, "model-b").count_rows() == 3


def test_ivf_pq_recall_at_10_with_and_without_label_filter(tmp_path):
    vectors = clustered_vectors(6000, seed=1)
    emb, meta = tables(vectors)
    changes = sync_index(tmp_path, "m", emb, meta, DIM, ann_min_rows=2000)
    assert changes.ann_built and changes.ann == ann_params(6000, DIM)
    table = open_index(tmp_path, "m")
    assert any("vector" in index.columns for index in table.list_indices())
    queries = clustered_vectors(40, seed=2)
    assert recall_at_k(table, queries, k=10) >= 0.95, recall_at_k(table, queries, k=10)

    where = labels_filter(["dog"])
    overlaps = []
    for q in queries[:20]:
        exact = {h.image_id for h in search(table, q, 10, where=where, exact=True)}
        approx = search(table, q, 10, where=where)
        assert all(h.labels == ["dog"] for h in approx)
        overlaps.append(len(exact & {h.image_id for h in approx}) / 10)
    assert np.mean(overlaps) >= 0.95

    # Small changes do not retrain the index; the table stays in sync.
    again = sync_index(tmp_path, "m", emb.slice(0, 5990), meta, DIM, ann_min_rows=2000)
    assert again.removed == 10 and not again.ann_built


def test_catalog_labels_and_filter_quoting(tmp_path):
    emb, meta = tables(clustered_vectors(6), labels_for=lambda i: ["dog", "o'brien"] if i == 0 else ["cat"])
    sync_index(tmp_path, "m", emb, meta, DIM)
    table = open_index(tmp_path, "m")
    assert catalog_labels(table) == ["cat", "dog", "o'brien"]
    hits = search(table, clustered_vectors(1)[0], k=5, where=labels_filter(["o'brien"]))
    assert [h.image_id for h in hits] == [f"{0:064x}"]


def test_vector_soundness_report_names_nan_non_unit_and_mixed_dimensions(tmp_path):
    from datetime import datetime, timezone

    from deltalake import write_deltalake

    from assets_pkg.embeddings.store import EMBEDDINGS_SCHEMA
    from assets_pkg.index.consistency import vectors_are_sound

    now = datetime.now(timezone.utc)
    good = clustered_vectors(2)
    rows = [("a", "m", list(good[0])), ("b", "m", list(good[1])), ("c", "m", [float("nan")] * DIM),
            ("d", "m", [0.5] * DIM), ("e", "m", [1.0, 0.0]), ("f", "other", [0.0, 1.0])]
    write_deltalake(str(tmp_path / "e"), pa.Table.from_pylist(
        [{"image_id": i, "model_key": k, "vector": v, "embedded_at": now} for i, k, v in rows], schema=EMBEDDINGS_SCHEMA))
    report = vectors_are_sound(tmp_path / "e")
    assert not report.ok
    text = "; ".join(report.problems)
    assert "1 vectors contain NaN" in text and "1 vectors are not unit-norm" in text
    assert "model key m has vectors of several dimensions: [2, 64]" in text
    assert "other" not in text


def test_ann_params_grow_with_the_table_and_fit_the_dimension():
    sizes = [10_000, 100_000, 1_000_000, 10_000_000]
    for dim in (64, 512, 768):
        params = [ann_params(n, dim) for n in sizes]
        for p, n in zip(params, sizes):
            assert dim % p.num_sub_vectors == 0
            assert 1 <= p.nprobes <= p.num_partitions <= n // 256
            assert p.refine_factor >= 1
        assert [p.num_partitions for p in params] == sorted(p.num_partitions for p in params)
        assert params[0].num_partitions < params[-1].num_partitions
        assert [p.nprobes for p in params] == sorted(p.nprobes for p in params)
    assert ann_params(1_000_000, 512).num_sub_vectors >= 32


def test_ann_recall_is_measured_for_ivf_pq_and_none_for_flat(tmp_path):
    from datetime import datetime, timezone

    from deltalake import write_deltalake

    from assets_pkg.embeddings.store import EMBEDDINGS_SCHEMA
    from assets_pkg.index.consistency import MIN_RECALL_AT_10, ann_recall

    vectors = clustered_vectors(6000, seed=3)
    emb, meta = tables(vectors)
    now = datetime.now(timezone.utc)
    write_deltalake(str(tmp_path / "e"), pa.Table.from_pylist(
        [{"image_id": i, "model_key": "m", "vector": list(v), "embedded_at": now}
         for i, v in zip(emb["image_id"].to_pylist(), vectors)], schema=EMBEDDINGS_SCHEMA))
    sync_index(tmp_path / "lance", "m", emb.slice(0, 100), meta, DIM)
    assert ann_recall(tmp_path / "lance", tmp_path / "e", "m") is None  # flat search: exact
    sync_index(tmp_path / "lance", "m", emb, meta, DIM, ann_min_rows=2000)
    recall = ann_recall(tmp_path / "lance", tmp_path / "e", "m")
    assert recall is not None and MIN_RECALL_AT_10 <= recall <= 1.0
