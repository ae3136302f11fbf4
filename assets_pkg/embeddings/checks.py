"""Asset checks on the embeddings: one sound vector of the model's dimension per mirror image."""

import dagster as dg

from assets_pkg.catalog.resources import QuarantineLimit
from assets_pkg.checks import check_result
from assets_pkg.embeddings.assets import image_embeddings
from assets_pkg.embeddings.consistency import embeddings_match_mirror, embeddings_quarantine_rate
from assets_pkg.embeddings.resources import ClipModel
from assets_pkg.resources import DataStore


@dg.asset_check(asset=image_embeddings, blocking=True,
                description="For the configured model key: one finite, unit-norm vector of the model's dimension "
                            "per mirror image (quarantined images aside), none for images that left the mirror.")
def embeddings_match_mirror_and_model(data_store: DataStore, clip: ClipModel) -> dg.AssetCheckResult:
    layout = data_store.layout
    encoder = clip.encoder()
    return check_result(embeddings_match_mirror(layout.embeddings_table, layout.mirror_table,
                                                 layout.quarantine_table, encoder.model_key, encoder.dim),
                         model_key=encoder.model_key)


@dg.asset_check(asset=image_embeddings,
                description="The share of mirror images the embedding stage could not decode is at most "
                            "ADRAG_MAX_QUARANTINE_RATE (a warning).")
def embeddings_quarantine_rate_within_limit(data_store: DataStore,
                                            quarantine_limit: QuarantineLimit) -> dg.AssetCheckResult:
    layout = data_store.layout
    return check_result(embeddings_quarantine_rate(layout.mirror_table, layout.quarantine_table,
                                                    quarantine_limit.rate))
