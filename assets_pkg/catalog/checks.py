"""Asset checks on the catalog assets: the quarantine stays small, the mirror mirrors the manifest."""

import dagster as dg

from assets_pkg.catalog.assets import image_manifest, image_mirror
from assets_pkg.catalog.consistency import manifest_quarantine_rate, mirror_matches_manifest
from assets_pkg.catalog.resources import QuarantineLimit
from assets_pkg.checks import check_result
from assets_pkg.resources import DataStore


@dg.asset_check(asset=image_manifest,
                description="The share of the folder's files quarantined by the scan is at most "
                            "ADRAG_MAX_QUARANTINE_RATE (a warning: bad files never stop the pipeline).")
def manifest_quarantine_rate_within_limit(data_store: DataStore,
                                          quarantine_limit: QuarantineLimit) -> dg.AssetCheckResult:
    layout = data_store.layout
    return check_result(manifest_quarantine_rate(layout.manifest_table, layout.quarantine_table,
                                                  quarantine_limit.rate))


@dg.asset_check(asset=image_mirror,
                description="One mirror row per distinct image of the manifest, with its current paths and labels.")
def mirror_matches_manifest_images(data_store: DataStore) -> dg.AssetCheckResult:
    layout = data_store.layout
    return check_result(mirror_matches_manifest(layout.mirror_table, layout.manifest_table))
