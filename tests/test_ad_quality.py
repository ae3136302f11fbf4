"""Every ad is scored by CLIP (subject text, seed photo, brand image) before a marketer sees it; below the
bar the step falls back to the next candidate only within the per-segment cost cap, never a loop of paid
retries; what was tried, scored and paid is in the metadata, the campaigns rows and MLflow; the asset
check on campaign_ad flags segments whose ad is below the bar. Real Dagster runs, real Delta tables, the
real replicate client against the local stand-in of its API (each prediction costs $0.08), tiny CLIP."""

from __future__ import annotations

import json

import dagster as dg
import pytest
from mlflow import MlflowClient
from replicate_standin import ReplicateStandIn
from test_pipeline import meta, refresh

from assets_pkg.campaigns.operations import latest_campaign
from assets_pkg.campaigns.quality import AdScores, QualityBar
from assets_pkg.campaigns.resources import ImageGeneratorResource
from assets_pkg.campaigns.store import SUPERSEDED
from assets_pkg.delta_tables import read_table
from assets_pkg.layout import CAMPAIGNS_SCHEMA
from orchestration.definitions import CAMPAIGN_ASSETS, CAMPAIGN_CHECKS
from orchestration.runner import sync_segment_partitions

PRICE = 0.08
UNREACHABLE = {"min_subject_score": "1", "min_seed_score": "1", "min_brand_score": "1"}  # no cosine of two
# different images, or of an image and a text, reaches 1


def generate(resources, instance, key, api, **settings) -> dg.ExecuteInProcessResult:
    made = {**resources, "image_generator": ImageGeneratorResource(
        replicate_api_token="r8_quality", replicate_base_url=api.base_url, **settings)}
    return dg.materialize([*CAMPAIGN_ASSETS, *CAMPAIGN_CHECKS], resources=made, instance=instance,
                          partition_key=key, raise_on_error=False)


def rows(layout, key: str) -> list[dict]:
    found = read_table(layout.campaigns_table, CAMPAIGNS_SCHEMA).to_pylist()
    return sorted((r for r in found if r["segment_key"] == key), key=lambda r: r["created_at"])


def check_of(result, name: str = "ads_reach_quality_bar") -> dg.AssetCheckEvaluation:
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return evaluation


def test_the_bar_and_its_settings():
    scores = AdScores(subject=0.25, seed=0.55, brand=0.4)
    assert scores.shortfalls(QualityBar()) == ["seed photo 0.550 < 0.600"] and not scores.passes(QualityBar())
    assert scores.passes(QualityBar(min_seed=0.5))
    with pytest.raises(ValueError, match="min_seed must be a cosine between -1 and 1, not 'high'"):
        QualityBar.parse("0.2", "high", "0.3")
    with pytest.raises(ValueError, match="cost cap per segment must be a number of US dollars >= 0"):
        ImageGeneratorResource(max_cost_per_segment_usd="-2").quality_policy()
    assert ImageGeneratorResource().quality_policy().max_cost_usd is None  # default: one generation's cost


def test_below_the_bar_the_default_cap_pays_once_and_a_higher_cap_one_fallback(resources, instance, layout):
    refresh(resources, instance)
    first_key, second_key = sync_segment_partitions(instance, layout.segments_file)[:2]
    with ReplicateStandIn() as api:
        # Default cap (one generation): the ad is below the bar, and no second prediction is paid for.
        once = generate(resources, instance, first_key, api, **UNREACHABLE)
        assert once.success and api.paid == 1
        ad = meta(once, "campaign_ad")
        assert ad["quality_passed"] is False and ad["attempts"] == 1 and ad["cost_usd"] == pytest.approx(PRICE)
        assert {"quality_subject", "quality_seed", "quality_brand"} <= set(ad)
        assert "subject" in ad["quality"] and "< 1.000" in ad["quality"]
        evaluation = check_of(once)
        assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
        assert first_key in evaluation.description
        [row] = rows(layout, first_key)
        assert row["status"] == "succeeded" and row["seed_index"] == 0

        # A cap of two generations: one fallback to #2, paid; none passes, so the best match (#1) stays.
        twice = generate(resources, instance, second_key, api, max_cost_per_segment_usd=str(2 * PRICE),
                         **UNREACHABLE)
        assert twice.success and api.paid == 3
        ad = meta(twice, "campaign_ad")
        assert ad["attempts"] == 2 and ad["cost_usd"] == pytest.approx(2 * PRICE) and ad["seed_rank"] == 1
        [tried] = [r for r in rows(layout, second_key) if r["status"] == SUPERSEDED]
        [chosen] = [r for r in rows(layout, second_key) if r["status"] != SUPERSEDED]
        assert (tried["seed_index"], chosen["status"], chosen["seed_index"]) == (1, "succeeded", 0)
        assert latest_campaign(layout, second_key)["output_key"] == chosen["output_key"]
        summary = json.loads(chosen["quality"])
        assert summary["max_cost_usd"] == pytest.approx(2 * PRICE) and summary["chosen_rank"] == 1
        assert [(a["rank"], a["cost_usd"], a["passed"]) for a in summary["attempts"]] == [
            (1, PRICE, False), (2, PRICE, False)]
        client = MlflowClient(resources["mlflow_tracking"].store(layout).tracking_uri)
        for r in (tried, chosen):
            run = client.get_run(r["mlflow_run_id"])
            assert run.data.params["quality_passed"] == "false" and "quality_seed" in run.data.metrics

        # Rerun with no cap beyond one generation: every ad tried before is reused (free), so the step
        # may look at #3 too, and pays for it once; a third run pays nothing.
        again = generate(resources, instance, second_key, api, **UNREACHABLE)
        assert again.success and api.paid == 4 and meta(again, "campaign_ad")["attempts"] == 3
        generate(resources, instance, second_key, api, **UNREACHABLE)
        assert api.paid == 4


def test_the_first_candidate_that_reaches_the_bar_is_the_ad(resources, instance, layout):
    """The bar is set from measured scores, so that #1 misses it on one score and a later candidate makes it."""
    refresh(resources, instance)
    key = sync_segment_partitions(instance, layout.segments_file)[0]
    with ReplicateStandIn() as api:
        measured = generate(resources, instance, key, api, max_cost_per_segment_usd="1", **UNREACHABLE)
        assert measured.success and api.paid == 3
        attempts = json.loads(latest_campaign(layout, key)["quality"])["attempts"]
        scores = {a["rank"]: a["scores"] for a in attempts}
        # A score on which a later candidate beats #1; the bar is just below that candidate's score on it
        # (the recorded scores are rounded to 4 decimals).
        name, rank = next((n, r) for n in ("seed", "brand", "subject") for r in (2, 3)
                          if scores[r][n] > scores[1][n] + 2e-4)
        threshold = scores[rank][name] - 5e-5
        bar = {"min_subject_score": "-1", "min_seed_score": "-1", "min_brand_score": "-1",
               f"min_{name}_score": str(threshold)}
        expected = next(r for r in (2, 3) if scores[r][name] >= threshold)

        chosen = generate(resources, instance, key, api, max_cost_per_segment_usd="1", **bar)
        assert chosen.success and api.paid == 3, "every candidate's ad was made before: reused, free"
        ad = meta(chosen, "campaign_ad")
        assert ad["quality_passed"] is True and ad["seed_rank"] == expected and ad["attempts"] == expected
        assert check_of(chosen).passed
        assert latest_campaign(layout, key)["seed_index"] == expected - 1
