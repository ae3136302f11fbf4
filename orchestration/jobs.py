"""Jobs: refresh the catalog (manifest -> index), and generate campaigns over segment partitions."""

import dagster as dg

from assets_pkg.campaigns.partitions import segment_partitions

CATALOG_GROUPS = ("catalog", "embeddings", "index")

refresh_catalog = dg.define_asset_job(
    name="refresh_catalog",
    selection=dg.AssetSelection.groups(*CATALOG_GROUPS),
    description="Scan the image folder and bring the mirror, embeddings and index up to date (incremental).",
)

generate_campaigns = dg.define_asset_job(
    name="generate_campaigns",
    selection=dg.AssetSelection.groups("campaigns"),
    partitions_def=segment_partitions,
    description="Candidates and ad for segment partitions; launch a backfill to run a list of segments.",
)
