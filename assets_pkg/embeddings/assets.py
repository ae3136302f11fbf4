"""Embeddings asset: CLIP vectors for every mirror image under the current model key."""

import dagster as dg

from assets_pkg.catalog.assets import image_mirror, table_metadata
from assets_pkg.catalog.mirror import first_paths
from assets_pkg.catalog.quarantine import replace_stage_quarantine
from assets_pkg.delta_tables import read_table, row_count, table_version
from assets_pkg.embeddings.resources import ClipModel
from assets_pkg.embeddings.store import sync_embeddings
from assets_pkg.layout import EMBEDDINGS_SCHEMA, QUARANTINE_SCHEMA
from assets_pkg.resources import DataStore, MlflowTracking
from assets_pkg.slots import slot
from assets_pkg.storage import uri
from assets_pkg.tracking import RunRecord

STAGE = "embeddings"


@dg.asset(
    group_name="embeddings",
    deps=[image_mirror],
    kinds={"deltalake", "pytorch"},
    pool="gpu",
    description="float32 L2-normalised open_clip vectors keyed by (image_id, model_key); only images without a "
                "vector for the current model are embedded, vectors of vanished images are deleted.",
)
def image_embeddings(context: dg.AssetExecutionContext, data_store: DataStore, clip: ClipModel,
                     mlflow_tracking: MlflowTracking) -> dg.MaterializeResult:
    layout = data_store.layout
    encoder = clip.image_encoder()  # in this process, or a Ray actor pool (ADRAG_RAY_ADDRESS)
    known_bad = {r["image_id"]: r for r in read_table(layout.quarantine_table, QUARANTINE_SCHEMA, where=f"stage = '{STAGE}'").to_pylist()}
    last_log = [0.0]

    def progress(done: int, total: int, seconds: float) -> None:
        if seconds - last_log[0] >= 10 or done == total:
            last_log[0] = seconds
            context.log.info(f"embedded {done}/{total} images, {done / max(seconds, 1e-9):.1f} img/s")

    with slot(layout.slots_dir, "gpu", clip.max_concurrent):
        changes = sync_embeddings(layout.embeddings_table, layout.mirror_table, encoder, progress, set(known_bad))
    paths = first_paths(layout.mirror_table, [image_id for image_id, _ in changes.failed])
    failed = [(known_bad[i]["path"], i, known_bad[i]["reason"]) for i in changes.skipped] + \
             [(paths.get(image_id, image_id), image_id, reason) for image_id, reason in changes.failed]
    replace_stage_quarantine(layout.quarantine_table, STAGE, failed)
    for path, _, reason in failed:
        context.log.warning(f"quarantined {path!r}: {reason}")

    run_id = None
    # A run that changed nothing logs no MLflow run: an empty run per nightly refresh would bury the
    # real ones, and importing MLflow in a fresh run process costs seconds for nothing.
    if changes.embedded or changes.removed or changes.failed:
        run_id = mlflow_tracking.store(layout).log(RunRecord(
            experiment="image-embeddings", run_name=f"embed-{changes.embedded}",
            experiment_description="One run per image_embeddings materialization that changed something: the "
                                   "model key, images embedded, removed and failed, throughput.",
            params={"model_key": encoder.model_key, "device": encoder.device, "batch_size": encoder.batch_size},
            metrics={"embedded": changes.embedded, "removed": changes.removed, "unchanged": changes.unchanged,
                     "failed": len(changes.failed), "seconds": round(changes.seconds, 3),
                     "images_per_s": round(changes.rate, 1)},
            tags={"stage": STAGE, **mlflow_tracking.dagster_run_tags(context.run.run_id)},
        ))
    return dg.MaterializeResult(metadata={
        "model_key": encoder.model_key,
        "dim": encoder.dim,
        "device": encoder.device,
        "embedded": changes.embedded,
        "removed": changes.removed,
        "unchanged": changes.unchanged,
        "quarantined": len(failed),
        "images_per_s": round(changes.rate, 1),
        "table_version": table_version(layout.embeddings_table),
        "mlflow_run_id": run_id,
        # every model's vectors: the table keeps other model keys' rows until they are dropped
        **table_metadata(uri(layout.embeddings_table), EMBEDDINGS_SCHEMA, row_count(layout.embeddings_table),
                         "image_embeddings"),
        **({"ray_cluster": encoder.cluster_address} if clip.on_ray else {}),
    })
