"""The Dagster code location: all assets, resources, jobs, the nightly schedule and the segments sensor."""

import dagster as dg

from assets_pkg.campaigns.assets import campaign_ad, campaign_candidates
from assets_pkg.catalog.assets import image_manifest, image_mirror
from assets_pkg.embeddings.assets import image_embeddings
from assets_pkg.index.assets import image_index
from assets_pkg.index.checks import (index_matches_mirror_and_embeddings, index_recall_at_10,
                                     vectors_are_finite_unit_norm)
from orchestration.jobs import generate_campaigns, refresh_catalog
from orchestration.resources import build_resources
from orchestration.schedules import nightly_refresh_catalog
from orchestration.sensors import segments_sensor

CATALOG_ASSETS = [image_manifest, image_mirror, image_embeddings, image_index]
CAMPAIGN_ASSETS = [campaign_candidates, campaign_ad]
CATALOG_CHECKS = [index_matches_mirror_and_embeddings, index_recall_at_10, vectors_are_finite_unit_norm]

defs = dg.Definitions(
    assets=[*CATALOG_ASSETS, *CAMPAIGN_ASSETS],
    asset_checks=CATALOG_CHECKS,
    resources=build_resources(),
    jobs=[refresh_catalog, generate_campaigns],
    schedules=[nightly_refresh_catalog],
    sensors=[segments_sensor],
)
