"""Jobs: refresh the catalog (manifest -> index), and generate campaigns over segment partitions."""

import dagster as dg

CATALOG_GROUPS = ("catalog", "embeddings", "index")

refresh_catalog = dg.define_asset_job(
    name="refresh_catalog",
    selection=dg.AssetSelection.groups(*CATALOG_GROUPS),
    description="Scan the image folder and bring the mirror, embeddings and index up to date (incremental).",
)

generate_campaigns = dg.define_asset_job(
    name="generate_campaigns",
    selection=dg.AssetSelection.groups("campaigns"),
    description="Candidates and ad for segment partitions; launch a backfill to run a list of segments.",
)
