"""Asset checks on the index, run with every catalog materialization: it agrees with the tables and finds
what exact search finds.

`index_ready_for_campaigns` is also the blocking check before generation: `generate_campaigns`
selects it, so it runs first in every campaign run and its failure skips the campaign steps.
"""

import dagster as dg

from assets_pkg.checks import check_result
from assets_pkg.embeddings.resources import ClipModel
from assets_pkg.index.assets import image_index
from assets_pkg.index.consistency import MIN_RECALL_AT_10, index_recall, tables_agree
from assets_pkg.index.readiness import index_readiness, readiness_message
from assets_pkg.resources import DataStore


@dg.asset_check(asset=image_index, blocking=True,
                description="Mirror, embeddings (current model) and index hold the same image ids and paths.")
def index_matches_mirror_and_embeddings(data_store: DataStore, clip: ClipModel) -> dg.AssetCheckResult:
    layout = data_store.layout
    return check_result(tables_agree(layout.mirror_table, layout.embeddings_table, layout.lance_dir,
                                clip.encoder().model_key))


@dg.asset_check(asset=image_index, blocking=True,
                description="Before generation: the index of the configured model key exists, is not empty, and is "
                            "not older than the embeddings. When it fails, campaign steps do not run; the "
                            "description says what to do.")
def index_ready_for_campaigns(context: dg.AssetCheckExecutionContext, data_store: DataStore,
                              clip: ClipModel) -> dg.AssetCheckResult:
    layout = data_store.layout
    encoder = clip.encoder()
    readiness = index_readiness(layout.lance_dir, layout.embeddings_table, layout.mirror_table,
                                encoder.model_key, encoder.dim)
    message = readiness_message(encoder.model_key, readiness)
    if not readiness.ok:
        context.log.error(message)
    return check_result(readiness, description=message)



@dg.asset_check(asset=image_index,
                description=f"The ANN index finds at least {MIN_RECALL_AT_10:.0%} of the exact top-10 on sample "
                            "queries, plain and filtered on the commonest label (flat search below the ANN "
                            "threshold is exact). Runs after every materialization, so after every (re)training.")
def index_recall_at_10(data_store: DataStore, clip: ClipModel) -> dg.AssetCheckResult:
    layout = data_store.layout
    measured = index_recall(layout.lance_dir, clip.encoder().model_key)
    if measured is None:
        return dg.AssetCheckResult(passed=True, description="flat (exact) search: recall 1.0 by construction",
                                   metadata={"search": "flat"})
    filtered = measured.filtered_recall
    passed = measured.recall >= MIN_RECALL_AT_10 and (filtered is None or filtered >= MIN_RECALL_AT_10)
    metadata = {"recall_at_10": round(measured.recall, 4), "queries": measured.queries}
    description = f"recall@10 {measured.recall:.3f}"
    if filtered is not None:
        metadata.update(filtered_recall_at_10=round(filtered, 4), filter_label=measured.filter_label)
        description += f", {filtered:.3f} filtered on label {measured.filter_label!r}"
    if measured.params is not None:
        metadata.update(search=measured.params.index_type, trained_rows=measured.params.num_rows,
                        num_partitions=measured.params.num_partitions, nprobes=measured.params.nprobes,
                        refine_factor=measured.params.refine_factor)
    return dg.AssetCheckResult(
        passed=passed, severity=dg.AssetCheckSeverity.WARN,
        description=f"{description} against exact search (target {MIN_RECALL_AT_10})", metadata=metadata)
