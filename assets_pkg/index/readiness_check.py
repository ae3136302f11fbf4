"""The blocking check before generation: the index is non-empty, the configured model's, and current.

`orchestration.jobs.generate_campaigns` selects it, so it runs first in every campaign run and its
failure skips the campaign steps; it also runs after every catalog refresh.
"""

import dagster as dg

from assets_pkg.embeddings.resources import ClipModel
from assets_pkg.index.assets import image_index
from assets_pkg.index.readiness import index_readiness
from assets_pkg.resources import DataStore


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
    if not readiness.ready:
        context.log.error(readiness.message())
    return dg.AssetCheckResult(
        passed=readiness.ready,
        severity=dg.AssetCheckSeverity.ERROR,
        description=readiness.message(),
        metadata={"model_key": encoder.model_key, **readiness.facts},
    )
