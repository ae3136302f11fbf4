"""Jobs: refresh the catalog (manifest -> index), and generate campaigns over segment partitions."""

import dagster as dg

from assets_pkg.index.checks import index_ready_for_campaigns
from orchestration.instance_config import JOB_TAG

CATALOG_GROUPS = ("catalog", "embeddings", "index")
# Why a run ran, on every run this project starts (the Runs page filters on it): "schedule", "cli",
# "studio", or the sensor's reason ("image-folder", "new-segment", "edited-segment").
TRIGGER_TAG = "adrag/trigger"
SEGMENTS_TAG = "adrag/segments"  # a campaign run's segment keys, comma-separated (a backfill chunk has several)
SEGMENTS_TAG_MAX_CHARS = 255  # Dagster's limit for a tag value is larger, but the Runs page shows it on one line


def segments_tag(keys: list[str]) -> str:
    joined = ",".join(keys)
    return joined if len(joined) <= SEGMENTS_TAG_MAX_CHARS else f"{joined[:SEGMENTS_TAG_MAX_CHARS - 20]}... ({len(keys)})"

refresh_catalog = dg.define_asset_job(
    name="refresh_catalog",
    selection=dg.AssetSelection.groups(*CATALOG_GROUPS),
    run_tags={JOB_TAG: "refresh_catalog"},  # the queued run coordinator's limit: one refresh at a time
    description="Scan the image folder and bring the mirror, embeddings and index up to date (incremental; "
                "everything is embedded again under a new model key), with every catalog asset check.",
)

# The readiness check targets image_index, which a campaign run does not materialize: selected on its
# own it runs first in every campaign run and, being blocking, skips the campaign steps when it fails.
generate_campaigns = dg.define_asset_job(
    name="generate_campaigns",
    selection=dg.AssetSelection.groups("campaigns") | dg.AssetSelection.checks(index_ready_for_campaigns),
    description="Candidates and ad for segment partitions, after a blocking check that the index is ready "
                "(non-empty, the configured model's, not older than the embeddings). Launch a backfill to run "
                "a list of segments; re-run one failed partition alone.",
)
