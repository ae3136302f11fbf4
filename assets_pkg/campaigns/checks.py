"""Asset checks on the campaign assets."""

import dagster as dg

from assets_pkg.campaigns.ad_files import ads_on_disk
from assets_pkg.campaigns.assets import AD
from assets_pkg.campaigns.operations import latest_campaigns
from assets_pkg.campaigns.quality import latest_ads_below_bar
from assets_pkg.checks import check_result
from assets_pkg.resources import DataStore


@dg.asset_check(asset=AD,
                description="Every segment's latest ad reaches the quality bar it was made under: CLIP cosines of "
                            "the ad to the subject text, its seed photo and the brand image "
                            "(ADRAG_AD_MIN_SUBJECT_SCORE, ADRAG_AD_MIN_SEED_SCORE, ADRAG_AD_MIN_BRAND_SCORE). "
                            "A warning: the ad stays, flagged for a marketer.")
def ads_reach_quality_bar(data_store: DataStore) -> dg.AssetCheckResult:
    report = latest_ads_below_bar(latest_campaigns(data_store.layout))
    return check_result(report, report.describe(f"all {report.facts['segments_scored']} scored ads reach their bar"))


@dg.asset_check(asset=AD,
                description="Every segment's latest ad file exists and decodes as an image, and the segment's "
                            "latest campaign_ad materialization names the same file as its campaigns row.")
def ads_exist_and_match_campaigns(context: dg.AssetCheckExecutionContext, data_store: DataStore) -> dg.AssetCheckResult:
    latest = latest_campaigns(data_store.layout)
    materialized = {key: _materialized_ad_file(context.instance, key) for key in latest}
    report = ads_on_disk(latest, materialized)
    return check_result(report, report.describe(f"all {report.facts['ads_checked']} ads are on disk and decode"))


def _materialized_ad_file(instance: dg.DagsterInstance, segment_key: str) -> str | None:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=AD, asset_partitions=[segment_key]), limit=1).records
    if not records:
        return None
    ad_file = records[0].asset_materialization.metadata.get("ad_file")
    return None if ad_file is None else str(ad_file.value)
