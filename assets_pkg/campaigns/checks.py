"""Asset checks on the campaign assets."""

import dagster as dg

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
