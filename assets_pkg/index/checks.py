"""Asset checks on the index, run with every catalog materialization: it agrees with the tables, finds
what exact search finds, and its text queries find what the folder labels say (the quality gate).

`index_ready_for_campaigns` is also the blocking check before generation: `generate_campaigns`
selects it, so it runs first in every campaign run and its failure skips the campaign steps.
"""

import dagster as dg

from assets_pkg.checks import check_result
from assets_pkg.embeddings.resources import ClipModel
from assets_pkg.index.assets import image_index
from assets_pkg.index.consistency import MIN_RECALL_AT_10, index_recall, tables_agree
from assets_pkg.index.lance_index import open_reader
from assets_pkg.index.quality import MAX_P_VALUE, RetrievalQuality, judge, passing_verdict, probe_labels
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
        # The number goes in anyway, so the check's plot has a point for every run, flat or not.
        return dg.AssetCheckResult(passed=True, description="flat (exact) search: recall 1.0 by construction",
                                   metadata={"recall_at_10": 1.0, "search": "flat"})
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


@dg.asset_check(asset=image_index,
                description="Retrieval quality gate: for every folder label, the query 'a photo of a <label>' is "
                            "searched in the index with the configured model; an image is relevant when it carries "
                            "the label. Reports mean precision@3 and recall@10 with their chance levels (random "
                            "ranking) and per-label figures. Warns when retrieval is no better than chance: mean "
                            "precision@3 not above chance, or reached by random rankings with probability "
                            f"{MAX_P_VALUE:g} or more (as with random weights). Passes, saying it cannot judge, with "
                            "fewer than 2 labels or too few images for even perfect retrieval to beat that bar.")
def index_retrieval_beats_chance(data_store: DataStore, clip: ClipModel) -> dg.AssetCheckResult:
    encoder = clip.encoder()
    reader = open_reader(data_store.layout.lance_dir, encoder.model_key)
    if reader is None:
        return dg.AssetCheckResult(passed=True, description=f"cannot judge: there is no index for {encoder.model_key}")
    quality = probe_labels(reader, encoder.encode_texts)
    report = judge(quality, encoder.model_key)
    return check_result(report, description=report.describe(when_ok=passing_verdict(quality)),
                        per_label=per_label_table(quality))


def per_label_table(quality: RetrievalQuality) -> dg.TableMetadataValue:
    return dg.MetadataValue.table(
        records=[dg.TableRecord({"label": p.label, "images": p.images, "precision_at_3": round(p.precision_at_3, 4),
                                 "recall_at_10": round(p.recall_at_10, 4),
                                 "chance_precision_at_3": round(p.chance_precision_at_3, 4)})
                 for p in quality.probes],
        schema=dg.TableSchema(columns=[
            dg.TableColumn("label", "string"), dg.TableColumn("images", "int"),
            dg.TableColumn("precision_at_3", "float"), dg.TableColumn("recall_at_10", "float"),
            dg.TableColumn("chance_precision_at_3", "float")]))
