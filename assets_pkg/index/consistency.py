"""Invariants between the mirror, the embeddings and the index, checked after every catalog run.

- the mirror, the current model's embeddings and the index hold the same image ids (and the index
  the mirror's current paths), so no vanished image can be retrieved and none is missing;
- the ANN index finds what exact search finds (recall@10 on sampled stored vectors).
(Vectors themselves, finite, unit-norm and of one dimension, are checked once, on the embeddings.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from assets_pkg.consistency import Report
from assets_pkg.delta_tables import read_table, sql_literal
from assets_pkg.index.lance_index import (
    AnnParams,
    commonest_label,
    open_index,
    open_reader,
    recall_at_k,
    sample_vectors,
    scan_index,
)
from assets_pkg.layout import EMBEDDINGS_SCHEMA, MIRROR_SCHEMA

RECALL_SAMPLE = 50
MIN_RECALL_AT_10 = 0.95



def tables_agree(mirror_table: Path, embeddings_table: Path, lance_dir: Path, model_key: str) -> Report:
    report = Report()
    mirror = {r["image_id"]: list(r["paths"]) for r in
              read_table(mirror_table, MIRROR_SCHEMA, ["image_id", "paths"]).to_pylist()}
    embedded = read_table(embeddings_table, EMBEDDINGS_SCHEMA, ["image_id"],
                          f"model_key = {sql_literal(model_key)}")["image_id"].to_pylist()
    table = open_index(lance_dir, model_key)
    indexed = {} if table is None else {r["image_id"]: list(r["paths"]) for r in
                                        scan_index(table, ["image_id", "paths"]).to_pylist()}
    report.facts = {"mirror": len(mirror), "embeddings": len(embedded), "index": len(indexed)}
    if len(embedded) != len(set(embedded)):
        report.problems.append(f"{len(embedded) - len(set(embedded))} duplicate vectors for {model_key}")
    _compare(report, "embeddings", set(embedded), set(mirror))
    _compare(report, "index", set(indexed), set(mirror))
    stale = [i for i in set(indexed) & set(mirror) if indexed[i] != mirror[i]]
    if stale:
        report.problems.append(f"index has stale paths for {len(stale)} images, e.g. {indexed[stale[0]]} "
                               f"instead of {mirror[stale[0]]}")
    return report


@dataclass(frozen=True)
class IndexRecall:
    """recall@k of the ANN index against exact search, plain and filtered on the commonest label."""

    recall: float
    filtered_recall: float | None  # None when no row carries a label
    filter_label: str | None
    queries: int
    params: AnnParams | None  # what the index was trained with (None: an index without a record)


def index_recall(lance_dir: Path, model_key: str, sample: int = RECALL_SAMPLE, k: int = 10) -> IndexRecall | None:
    """Measure the index as it is now, with stored vectors sampled from the index table as queries;
    None when the table is searched flat (exact by construction). The exact top-k comes from a
    numpy scan of the same table, so a million rows cost seconds, not Lance's seconds per query."""
    reader = open_reader(lance_dir, model_key)
    if reader is None or reader.params is None:
        return None
    reader.prewarm()  # a hundred queries: load the index once rather than partition by partition
    queries = sample_vectors(reader.table, sample, seed=0)  # not the sample nprobes was tuned on (seed 1)
    label = commonest_label(reader.table)
    return IndexRecall(
        recall=recall_at_k(reader, queries, k),
        filtered_recall=recall_at_k(reader, queries, k, label=label) if label is not None else None,
        filter_label=label, queries=len(queries), params=reader.params)


def ann_recall(lance_dir: Path, embeddings_table: Path, model_key: str, sample: int = RECALL_SAMPLE,
               k: int = 10) -> float | None:
    """The plain recall@k of `index_recall`, for callers that need only that figure. The queries
    are sampled from the index itself, which `tables_agree` holds equal to `embeddings_table`."""
    measured = index_recall(lance_dir, model_key, sample, k)
    return None if measured is None else measured.recall


def _compare(report: Report, name: str, have: set[str], want: set[str]) -> None:
    if missing := want - have:
        report.problems.append(f"{name} lacks {len(missing)} mirror images, e.g. {sorted(missing)[0][:12]}")
    if extra := have - want:
        report.problems.append(f"{name} holds {len(extra)} images that left the mirror, e.g. {sorted(extra)[0][:12]}")
