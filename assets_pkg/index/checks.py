"""Asset checks run with every catalog materialization: the tables agree and the vectors are sound."""

import dagster as dg

from assets_pkg.embeddings.assets import image_embeddings
from assets_pkg.embeddings.resources import ClipModel
from assets_pkg.index.assets import image_index
from assets_pkg.index.consistency import MIN_RECALL_AT_10, Report, ann_recall, tables_agree, vectors_are_sound
from assets_pkg.resources import DataStore


@dg.asset_check(asset=image_index, blocking=True,
                description="Mirror, embeddings (current model) and index hold the same image ids and paths.")
def index_matches_mirror_and_embeddings(data_store: DataStore, clip: ClipModel) -> dg.AssetCheckResult:
    layout = data_store.layout
    return _result(tables_agree(layout.mirror_table, layout.embeddings_table, layout.lance_dir,
                                clip.encoder().model_key))


@dg.asset_check(asset=image_embeddings, blocking=True,
                description="Every vector is finite and unit-norm; one dimension per model key.")
def vectors_are_finite_unit_norm(data_store: DataStore) -> dg.AssetCheckResult:
    return _result(vectors_are_sound(data_store.layout.embeddings_table))


@dg.asset_check(asset=image_index,
                description=f"The ANN index finds at least {MIN_RECALL_AT_10:.0%} of the exact top-10 on sample "
                            "queries (flat search below the ANN threshold is exact).")
def index_recall_at_10(data_store: DataStore, clip: ClipModel) -> dg.AssetCheckResult:
    layout = data_store.layout
    recall = ann_recall(layout.lance_dir, layout.embeddings_table, clip.encoder().model_key)
    if recall is None:
        return dg.AssetCheckResult(passed=True, description="flat (exact) search: recall 1.0 by construction",
                                   metadata={"search": "flat"})
    return dg.AssetCheckResult(
        passed=recall >= MIN_RECALL_AT_10, severity=dg.AssetCheckSeverity.WARN,
        description=f"recall@10 {recall:.3f} against exact search (target {MIN_RECALL_AT_10})",
        metadata={"search": "IVF_PQ", "recall_at_10": round(recall, 4)})


def _result(report: Report) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=report.ok,
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(report.problems) or "consistent",
        metadata={name: count for name, count in report.counts.items()},
    )
