"""The Dagster code location: all assets and checks, resources, jobs, the nightly schedule and the sensors.

`dagster dev -w workspace.yaml` loads `location` (a `@dg.definitions` function) when it loads the
code location, not at import: that is when the schedule's cron and timezone are read from the
environment (ADRAG_REFRESH_CRON, ADRAG_REFRESH_TIMEZONE). Resources read their settings through
`dg.EnvVar` when a run starts. `defs` (what the CLI runner and the tests import) is the same
Definitions, built on first access.
"""

from __future__ import annotations

import functools
import os
from typing import Mapping

import dagster as dg

from assets_pkg.campaigns.assets import segment_campaign
from assets_pkg.campaigns.checks import ads_exist_and_match_campaigns, ads_reach_quality_bar
from assets_pkg.catalog.assets import image_manifest, image_mirror
from assets_pkg.catalog.checks import manifest_quarantine_rate_within_limit, mirror_matches_manifest_images
from assets_pkg.embeddings.assets import image_embeddings
from assets_pkg.embeddings.checks import embeddings_match_mirror_and_model, embeddings_quarantine_rate_within_limit
from assets_pkg.index.assets import image_index
from assets_pkg.index.checks import (
    index_matches_mirror_and_embeddings,
    index_ready_for_campaigns,
    index_recall_at_10,
    index_retrieval_beats_chance,
)
from orchestration.asset_attributes import with_asset_attributes
from orchestration.jobs import generate_campaigns, refresh_catalog
from orchestration.resources import build_resources
from orchestration.schedules import index_freshness_policy, nightly_refresh_schedule
from orchestration.sensors import image_folder_sensor, record_run_failures, segments_sensor
from orchestration.settings import location_setting

CATALOG_ASSETS = [image_manifest, image_mirror, image_embeddings, image_index]
CAMPAIGN_ASSETS = [segment_campaign]  # campaign_candidates and campaign_ad, made by one step
# Checks that need only the pipeline's own resources (data_store, clip), run with every catalog refresh.
CATALOG_CHECKS = [index_matches_mirror_and_embeddings, index_recall_at_10, mirror_matches_manifest_images, embeddings_match_mirror_and_model, index_ready_for_campaigns]
# Checks against a configured limit (resource `quarantine_limit`); warnings, never blocking.
QUARANTINE_CHECKS = [manifest_quarantine_rate_within_limit, embeddings_quarantine_rate_within_limit]
# The retrieval quality gate judges the model, not the tables: a warning on random weights (tests, `--offline`),
# where every check above must pass.
QUALITY_CHECKS = [index_retrieval_beats_chance]
CAMPAIGN_CHECKS = [ads_reach_quality_bar, ads_exist_and_match_campaigns]  # run by generate_campaigns, after the ads
ALL_CHECKS = [*CATALOG_CHECKS, *QUARANTINE_CHECKS, *QUALITY_CHECKS, *CAMPAIGN_CHECKS]


def build_definitions(environ: Mapping[str, str] = os.environ, resources: dict | None = None) -> dg.Definitions:
    """The code location's Definitions; the schedule's cron and timezone, and the assets' code versions,
    kinds and the index's freshness policy (`asset_attributes`), come from `environ` now.

    `resources` replaces the environment-configured resources (the CLI passes its own, tests the tiny
    model's).
    """
    resources = resources if resources is not None else build_resources(environ=environ)
    cron, timezone = location_setting("ADRAG_REFRESH_CRON", environ), location_setting("ADRAG_REFRESH_TIMEZONE", environ)
    schedule = nightly_refresh_schedule(cron, timezone)  # first: it says what is wrong with a bad cron or timezone
    assets = with_asset_attributes([*CATALOG_ASSETS, *CAMPAIGN_ASSETS], resources, environ,
                                   index_freshness=index_freshness_policy(cron, timezone))
    return dg.Definitions(
        assets=assets,
        asset_checks=ALL_CHECKS,
        resources=resources,
        jobs=[refresh_catalog, generate_campaigns],
        schedules=[schedule],
        sensors=[image_folder_sensor, segments_sensor, record_run_failures],
    )


@dg.definitions
def location() -> dg.Definitions:
    return build_definitions()


@functools.cache
def _defs() -> dg.Definitions:
    return build_definitions()


def __getattr__(name: str):
    # `from orchestration.definitions import defs` builds the Definitions then, not at import.
    if name == "defs":
        return _defs()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
