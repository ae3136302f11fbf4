"""A batch of segments as one run (the campaign assets' single-run backfill policy), as `adrag run` and a
backfill from the UI make it: generations overlap up to the image API limit, every segment gets its own
materialization, and a failing segment fails alone and can be re-run on its own."""

from __future__ import annotations

import os

import dagster as dg
import pytest
from replicate_standin import ReplicateStandIn
from test_pipeline import refresh

from assets_pkg.delta_tables import read_table
from assets_pkg.embeddings.model import RANDOM, TINY_MODEL
from assets_pkg.layout import CAMPAIGNS_SCHEMA
from orchestration.runner import Project, consecutive_stretches, generate_segments, sync_segment_partitions

SEGMENTS = """
brand: {name: Bricks, tagline: Real food for real pets}
segments:
  - {name: Dog people, description: they love dogs, subject: dog, labels: [dog]}
  - {name: Unicorn riders, description: nobody has photographed one yet, subject: unicorn, labels: [unicorn]}
  - {name: Cat people, description: they love cats, subject: cat, labels: [cat]}
  - {name: Parrot people, description: they love parrots, subject: parrot, labels: [parrot]}
"""


@pytest.fixture
def project(monkeypatch, data_dir, tmp_path) -> Project:
    """What `adrag --data-dir ... --offline run` runs on: the flags' settings over the user's shell, whose
    variables the resources read through dg.EnvVar."""
    for name in [n for n in os.environ if n.startswith(("ADRAG_", "REPLICATE_", "MLFLOW_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("ADRAG_DEVICE", "cpu")
    monkeypatch.setenv("ADRAG_IMAGE_API_CONCURRENCY", "2")
    return Project({"ADRAG_DATA_DIR": str(data_dir), "ADRAG_CLIP_MODEL": TINY_MODEL, "ADRAG_CLIP_WEIGHTS": RANDOM},
                   tmp_path / "dagster_home")


def latest_ad_metadata(instance: dg.DagsterInstance, key: str) -> dict:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("campaign_ad"), asset_partitions=[key]), limit=1).records
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()} if records else {}


def test_a_batch_overlaps_generations_within_the_limit_and_a_bad_segment_fails_alone(
        project, resources, instance, layout, monkeypatch):
    refresh(resources, instance)
    layout.segments_file.write_text(SEGMENTS)
    keys = sync_segment_partitions(instance, layout.segments_file)
    unicorn = keys[1]

    with ReplicateStandIn(seconds_before_done=1.0) as api:
        monkeypatch.setenv("REPLICATE_API_TOKEN", "r8_test-token")
        monkeypatch.setenv("ADRAG_REPLICATE_BASE_URL", api.base_url)
        failed = generate_segments(project, keys, instance)
        peak, paid = api.peak_in_flight(), api.paid

    assert failed == [unicorn]  # no photo is labelled unicorn: that segment fails, the others go on
    assert peak == 2 and paid == 3  # overlapped, and never beyond the configured limit
    runs = instance.get_runs(dg.RunsFilter(job_name="generate_campaigns"))
    assert len(runs) == 1 and runs[0].status == dg.DagsterRunStatus.FAILURE  # one run for the whole batch
    materialized = instance.get_materialized_partitions(dg.AssetKey("campaign_ad"))
    assert materialized == {keys[0], keys[2], keys[3]}
    names = {key: latest_ad_metadata(instance, key)["segment"] for key in materialized}
    assert names == {keys[0]: "Dog people", keys[2]: "Cat people", keys[3]: "Parrot people"}

    # The bad segment is fixed and re-run alone: one more paid generation, nothing else regenerated.
    layout.segments_file.write_text(SEGMENTS.replace("labels: [unicorn]", "labels: [dog]"))
    with ReplicateStandIn() as api:
        monkeypatch.setenv("ADRAG_REPLICATE_BASE_URL", api.base_url)
        assert generate_segments(project, [unicorn], instance) == []
        assert api.paid == 1
    assert instance.get_materialized_partitions(dg.AssetKey("campaign_ad")) == set(keys)
    rows = read_table(layout.campaigns_table, CAMPAIGNS_SCHEMA).to_pylist()
    assert sorted(r["segment_key"] for r in rows if r["status"] == "succeeded") == sorted(keys)


def test_chosen_segments_run_as_stretches_of_neighbouring_partitions():
    ordered = ["a", "b", "c", "d", "e"]
    assert consecutive_stretches(ordered, ["a", "b", "c", "d", "e"]) == [["a", "b", "c", "d", "e"]]
    assert consecutive_stretches(ordered, ["e", "a", "b", "d"]) == [["a", "b"], ["d", "e"]]
    assert consecutive_stretches(ordered, ["c", "zz"]) == [["c"]]
    assert consecutive_stretches(ordered, []) == []


def test_a_partition_added_by_hand_fails_alone_naming_the_file_and_the_segments(resources, instance, layout):
    """Dagster lets a user add a partition key in the UI; one that names no segment fails that segment,
    at once and without retries, saying where segments come from; the others' ads are made."""
    from orchestration.definitions import CAMPAIGN_ASSETS
    from orchestration.sensors import segments_sensor

    refresh(resources, instance)
    layout.segments_file.write_text(SEGMENTS)
    keys = sync_segment_partitions(instance, layout.segments_file)
    instance.add_dynamic_partitions("segments", ["typo-segment"])
    result = dg.materialize(CAMPAIGN_ASSETS, resources=resources, instance=instance, raise_on_error=False, tags={
        "dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": "typo-segment"})
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = str(failure.event_specific_data.error)
    assert f"'typo-segment' is not a segment of {layout.segments_file} (known: {', '.join(keys)})" in message
    assert "add the segment there" in message and "KeyError" not in message
    assert len([e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]) == 0
    assert instance.get_materialized_partitions(dg.AssetKey("campaign_ad")) == {keys[0], keys[2], keys[3]}

    # The segments sensor removes the hand-added partition.
    result = segments_sensor(dg.build_sensor_context(instance=instance, resources={"data_store": resources["data_store"]}))
    deletes = [r for r in result.dynamic_partitions_requests if isinstance(r, dg.DeleteDynamicPartitionsRequest)]
    assert [list(d.partition_keys) for d in deletes] == [["typo-segment"]]
