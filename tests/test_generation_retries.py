"""The generation step's retry policy: a busy image API gets another try later; a refused request does not."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from replicate_standin import ReplicateStandIn
from conftest import NO_QUALITY_BAR
from test_pipeline import SENTINEL_TOKEN, meta, refresh

from assets_pkg.campaigns.resources import ImageGeneratorResource
from assets_pkg.delta_tables import read_table
from assets_pkg.layout import CAMPAIGNS_SCHEMA
from orchestration.definitions import CAMPAIGN_ASSETS
from orchestration.runner import sync_segment_partitions


def generate(resources, instance, key, api, **generator_settings) -> dg.ExecuteInProcessResult:
    remote = {**resources, "image_generator": ImageGeneratorResource(**NO_QUALITY_BAR,
        replicate_api_token=SENTINEL_TOKEN, replicate_base_url=api.base_url, **generator_settings)}
    return dg.materialize(CAMPAIGN_ASSETS, resources=remote, instance=instance, partition_key=key,
                          raise_on_error=False)


def step_events(result: dg.ExecuteInProcessResult, step: str) -> list[str]:
    return [e.event_type_value for e in result.all_events if e.step_key == step]


def test_a_busy_image_api_is_retried_by_the_step_and_the_ad_lands(resources, instance, layout):
    refresh(resources, instance)
    key = sync_segment_partitions(instance, layout.segments_file)[0]
    # One attempt per call, and the first create answers 503: the generation fails as transient.
    with ReplicateStandIn(create_faults=[503]) as api:
        result = generate(resources, instance, key, api, max_attempts=1)
        paid = api.paid
    assert result.success
    events = step_events(result, "segment_campaign")
    assert events.count("STEP_UP_FOR_RETRY") == 1 and events.count("STEP_RESTARTED") == 1
    assert meta(result, "campaign_ad")["generator"].startswith("replicate/")
    assert paid == 1  # the refused create was never charged
    rows = sorted(read_table(layout.campaigns_table, CAMPAIGNS_SCHEMA).to_pylist(), key=lambda r: r["created_at"])
    statuses = [r["status"] for r in rows]
    assert statuses == ["failed", "succeeded"]  # the failed attempt is recorded, then the retry's ad


def test_a_refused_generation_fails_at_once_without_retries(resources, instance, layout):
    refresh(resources, instance)
    key = sync_segment_partitions(instance, layout.segments_file)[0]
    with ReplicateStandIn(outcome="failed", error_message="E005: flagged as sensitive") as api:
        result = generate(resources, instance, key, api)
        created = len(api.created)
    assert not result.success
    events = step_events(result, "segment_campaign")
    assert "STEP_UP_FOR_RETRY" not in events and events.count("STEP_FAILURE") == 1
    assert created == 1  # one paid prediction: a refusal is not worth paying for again


def test_a_paid_ad_whose_download_failed_is_collected_by_the_next_run_without_paying_again(resources, instance,
                                                                                          layout):
    refresh(resources, instance)
    key = sync_segment_partitions(instance, layout.segments_file)[0]

    def pending() -> list[Path]:
        return list((layout.campaigns_dir / key).glob(".pending-*"))

    # The prediction succeeds, but its output URL answers 404 the first time (a CDN not yet in sync).
    with ReplicateStandIn(download_faults=[404]) as api:
        first = generate(resources, instance, key, api)
        kept = pending()
        second = generate(resources, instance, key, api)
        paid = api.paid
        served = next(iter(api.served.values()))
    assert not first.success and second.success
    assert paid == 1, "the next run collected the paid prediction instead of paying again"
    assert kept, "the paid prediction's id was kept for the next run"
    assert not pending(), "the pending marker is gone once the ad exists"
    rows = sorted(read_table(layout.campaigns_table, CAMPAIGNS_SCHEMA).to_pylist(), key=lambda r: r["created_at"])
    assert [r["status"] for r in rows] == ["failed", "succeeded"]
    assert Path(rows[-1]["output_path"]).read_bytes() == served
