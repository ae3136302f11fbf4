"""Dagster makes the approved ad: an approval (recorded through the review policy) launches the
segment's partition run; later plain runs reuse the approved photo; an approval that no longer holds
(the segment was edited, the photo left the catalog) flags the segment as needing review instead of
choosing another photo. Real Dagster runs, real Delta tables, real MLflow store, tiny real CLIP."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

import dagster as dg
import pytest
from mlflow import MlflowClient
from pydantic import ValidationError
from test_pipeline import refresh

from assets_pkg.campaigns.approvals import APPROVED_SUBJECT_METHOD, segment_digest
from assets_pkg.campaigns.assets import AdConfig
from assets_pkg.campaigns.generators.compositor import LocalCompositor
from assets_pkg.campaigns.operations import Campaigns, latest_campaign, make_ad, make_candidates
from assets_pkg.catalog.resources import QuarantineLimit
from assets_pkg.delta_tables import read_table
from assets_pkg.layout import CAMPAIGNS_SCHEMA, CANDIDATES_SCHEMA, MIRROR_SCHEMA
from assets_pkg.review import policy
from orchestration.definitions import CAMPAIGN_ASSETS, build_definitions
from orchestration.review_runs import (
    DONE,
    FAILED,
    JOB,
    LAUNCHER_TAG,
    QUEUED,
    THIS_LAUNCHER,
    launch_approved,
    run_for_review,
    run_status,
)
from orchestration.runner import PARTITION_RANGE_END, PARTITION_RANGE_START, RUN_CONFIG, sync_segment_partitions

URBAN = "young-urban-professionals"  # labels [cat, dog], no subject in the segments file
OUTDOOR = "outdoor-loving-dog-owners"
AD = dg.AssetKey("campaign_ad")
CANDIDATES = dg.AssetKey("campaign_candidates")


@pytest.fixture
def campaigns(resources, instance, layout) -> Campaigns:
    refresh(resources, instance)
    sync_segment_partitions(instance, layout.segments_file)
    return Campaigns(layout, resources["mlflow_tracking"].store(layout), resources["clip"].encoder)


@pytest.fixture
def defs(resources) -> dg.Definitions:
    return build_definitions(resources={**resources, "quarantine_limit": QuarantineLimit()})


def approve_second(campaigns: Campaigns, key: str = URBAN):
    policy.start(campaigns, key, "alice")
    policy.answer(campaigns, key, "alice", "yes")
    assert policy.approve(campaigns, key, "alice", rank=2, said="the second one").done
    return policy.approved_choice(campaigns.layout, key)


def latest_record(instance, asset: dg.AssetKey, key: str):
    [record] = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset, asset_partitions=[key]), limit=1).records
    return record


def latest_metadata(instance, asset: dg.AssetKey, key: str) -> dict:
    return {k: v.value for k, v in latest_record(instance, asset, key).asset_materialization.metadata.items()}


def campaign_rows(layout, key: str) -> list[dict]:
    return [r for r in read_table(layout.campaigns_table, CAMPAIGNS_SCHEMA).to_pylist() if r["segment_key"] == key]


def run_partition(resources, instance, key: str) -> dg.ExecuteInProcessResult:
    return dg.materialize(CAMPAIGN_ASSETS, resources=resources, instance=instance, partition_key=key,
                          raise_on_error=False)


def test_approval_launches_the_partition_run_and_later_runs_reuse_the_approved_photo(
        campaigns, defs, resources, instance, layout):
    choice = approve_second(campaigns)
    assert choice.rank == 2 and choice.segment_digest == segment_digest(campaigns.segment(URBAN))

    launched = launch_approved(instance, defs, layout, URBAN)
    assert launched.wait(600), "the launched run finished"
    assert run_status(instance, launched.run_id) == (DONE, None)
    assert run_for_review(instance, choice.review_id) == launched.run_id  # how the page finds it after a reload

    run = instance.get_run_by_id(launched.run_id)
    assert run.tags["adrag/review_id"] == choice.review_id and run.tags["adrag/reviewer"] == "alice"
    assert run.tags["adrag/trigger"] == "studio" and run.tags["dagster/partition"] == URBAN

    record = latest_record(instance, AD, URBAN)
    assert record.run_id == launched.run_id
    ad = latest_metadata(instance, AD, URBAN)
    assert (ad["review"], ad["review_id"], ad["approved_by"], ad["approved_rank"]) == (
        "approved", choice.review_id, "alice", 2)
    assert ad["seed_image_id"] == choice.image_id and ad["subject"] == choice.subject
    candidates = latest_metadata(instance, CANDIDATES, URBAN)
    assert candidates["review"] == "approved" and candidates["subject_method"] == APPROVED_SUBJECT_METHOD
    [row] = campaign_rows(layout, URBAN)
    assert row["seed_image_id"] == choice.image_id and row["status"] == "succeeded"

    client = MlflowClient(tracking_uri=f"sqlite:///{layout.mlflow_dir / 'mlflow.db'}")
    tags = client.get_run(row["mlflow_run_id"]).data.tags
    assert (tags["review_id"], tags["approved_by"], tags["review"]) == (choice.review_id, "alice", "approved")
    assert tags["trigger"] == "studio" and tags["dagster_run_id"] == launched.run_id

    # A later plain batch over both segments (no review tags), as `adrag run` or a backfill makes it.
    batch = defs.resolve_job_def("generate_campaigns").execute_in_process(
        run_config=RUN_CONFIG, instance=instance,
        tags={PARTITION_RANGE_START: URBAN, PARTITION_RANGE_END: OUTDOOR})
    assert batch.success
    again = latest_metadata(instance, AD, URBAN)
    assert again["review"] == "approved" and again["seed_image_id"] == choice.image_id and again["reused"] is True
    assert latest_metadata(instance, AD, OUTDOOR)["review"] == "none"
    latest = latest_campaign(layout, URBAN)
    assert latest["seed_image_id"] == choice.image_id
    assert client.get_run(latest["mlflow_run_id"]).data.tags["review_id"] == choice.review_id


def test_an_edited_segment_needs_review_and_gets_no_new_ad(campaigns, defs, resources, instance, layout):
    choice = approve_second(campaigns)
    assert run_partition(resources, instance, URBAN).success
    assert len(campaign_rows(layout, URBAN)) == 1

    original = layout.segments_file.read_text()
    layout.segments_file.write_text(original.replace("busy city dwellers", "retired gardeners"))
    launched = launch_approved(instance, defs, layout, URBAN)
    assert launched.wait(600)
    status, reason = run_status(instance, launched.run_id)
    assert status == FAILED and "needs review: the segment's name or description changed" in reason

    flagged = latest_metadata(instance, CANDIDATES, URBAN)
    assert flagged["review"] == "needs_review" and flagged["review_id"] == choice.review_id
    assert "description changed" in flagged["review_reason"]
    assert latest_record(instance, AD, URBAN).run_id != launched.run_id, "no new ad materialization"
    assert len(campaign_rows(layout, URBAN)) == 1, "nothing generated, nothing stored"

    # Put back as approved: the approval holds again.
    layout.segments_file.write_text(original)
    assert run_partition(resources, instance, URBAN).success
    assert latest_metadata(instance, AD, URBAN)["seed_image_id"] == choice.image_id


def test_an_approved_photo_that_left_the_catalog_needs_review(campaigns, resources, instance, layout):
    choice = approve_second(campaigns)
    (layout.images_dir / choice.path).unlink()
    refresh(resources, instance)

    result = run_partition(resources, instance, URBAN)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "needs review: the approved photo" in str(failure.event_specific_data.error)
    flagged = latest_metadata(instance, CANDIDATES, URBAN)
    assert flagged["review"] == "needs_review" and "left the catalog" in flagged["review_reason"]
    assert campaign_rows(layout, URBAN) == [] and not instance.get_materialized_partitions(AD)
    # The studio reads the same verdict without Dagster.
    from assets_pkg.campaigns.approvals import NEEDS_REVIEW, check_approval
    verdict = check_approval(campaigns.segment(URBAN), policy.approved_choice(layout, URBAN), layout.mirror_table)
    assert verdict.status == NEEDS_REVIEW and verdict.reason == flagged["review_reason"]


@dataclass(frozen=True)
class Choice:  # an approval as the review log holds it (the operations' `Approval`)
    review_id: str
    reviewer: str
    subject: str
    rank: int
    image_id: str
    path: str
    segment_digest: str | None


def test_an_approved_photo_no_longer_in_the_top_3_is_fetched_by_id(campaigns, layout):
    segment = campaigns.segment(URBAN)
    best = make_candidates(campaigns, URBAN).row
    top3 = {c["image_id"] for c in best["candidates"]}
    mirror = read_table(layout.mirror_table, MIRROR_SCHEMA, ["image_id", "paths", "labels"]).to_pylist()
    other = next(r for r in mirror if r["image_id"] not in top3 and best["subject"] in r["labels"])
    approval = Choice("r-1", "alice", best["subject"], 2, other["image_id"], other["paths"][0], segment_digest(segment))

    made = make_candidates(campaigns, URBAN, approval)
    ids = [c["image_id"] for c in made.row["candidates"]]
    assert ids == [*[c["image_id"] for c in best["candidates"]][:2], other["image_id"]]
    stored = read_table(layout.candidates_table, CANDIDATES_SCHEMA).to_pylist()
    assert other["image_id"] in [c["image_id"] for r in stored if r["segment_key"] == URBAN for c in r["candidates"]]
    ad = make_ad(campaigns, URBAN, LocalCompositor(width=128, height=128), layout.brand_image.read_bytes(),
                 rank=0, approval=approval)
    assert not ad.failed and ad.row["seed_image_id"] == other["image_id"] and ad.row["seed_index"] == 2


def test_the_config_refuses_rank_4_before_anything_runs(campaigns, resources, instance, layout):
    with pytest.raises(ValidationError, match="less than or equal to 3"):
        dg.RunConfig(ops={"segment_campaign": AdConfig(rank=4)})
    assert AdConfig().rank == 1 and AdConfig(rank=3).rank == 3

    # Raw run config (YAML in the launchpad): Dagster's schema has no bounds, so the step refuses it
    # when it builds its config, before reading or writing anything.
    result = dg.materialize(CAMPAIGN_ASSETS, resources=resources, instance=instance, partition_key=URBAN,
                            run_config={"ops": {"segment_campaign": {"config": {"rank": 4}}}}, raise_on_error=False)
    assert not result.success
    assert "less than or equal to 3" in str(next(e for e in result.all_events if e.is_step_failure).event_specific_data.error)
    assert read_table(layout.candidates_table, CANDIDATES_SCHEMA).num_rows == 0
    assert read_table(layout.campaigns_table, CAMPAIGNS_SCHEMA).num_rows == 0


def test_a_run_whose_studio_died_is_reported_failed_not_running_for_ever(defs, instance):
    """A studio killed mid-run leaves its in-process run unfinished: the next status read marks it failed,
    saying why; a run of this process, or of a launcher still alive, is left alone."""
    job = defs.resolve_job_def(JOB)
    exited = subprocess.Popen(["true"])
    exited.wait()
    alive = subprocess.Popen(["sleep", "60"])
    try:
        runs = {name: instance.create_run_for_job(job_def=job, tags={LAUNCHER_TAG: launcher}).run_id
                for name, launcher in [("dead", f"{exited.pid}-0123456789ab"), ("ours", THIS_LAUNCHER),
                                       ("reused pid", f"{os.getpid()}-0123456789ab"),
                                       ("alive", f"{alive.pid}-0123456789ab")]}
        status, why = run_status(instance, runs["dead"])
        assert status == FAILED and f"pid {exited.pid}" in why and "make the ad again" in why
        assert instance.get_run_by_id(runs["dead"]).status == dg.DagsterRunStatus.FAILURE
        assert run_status(instance, runs["dead"])[0] == FAILED  # and stays so
        assert run_status(instance, runs["reused pid"])[0] == FAILED  # this pid, an earlier process's token
        assert run_status(instance, runs["ours"]) == (QUEUED, None)
        assert run_status(instance, runs["alive"]) == (QUEUED, None)
    finally:
        alive.kill()
        alive.wait()
