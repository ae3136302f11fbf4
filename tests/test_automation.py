"""Automation through the real Dagster machinery: the configurable nightly schedule, the image-folder
and segments sensors (evaluated tick after tick with their cursors), the run-failure sensor on real
failed runs, and a model change that re-embeds everything into a new index beside the old one."""

from __future__ import annotations

import os
import shutil

import dagster as dg
import pytest
import torch
from conftest import write_photo

from assets_pkg.catalog.resources import QuarantineLimit
from assets_pkg.delta_tables import read_table
from assets_pkg.embeddings.model import TINY_MODEL
from assets_pkg.embeddings.resources import ClipModel
from assets_pkg.index.lance_index import open_index, scan_index
from assets_pkg.layout import CANDIDATES_SCHEMA, EMBEDDINGS_SCHEMA, MIRROR_SCHEMA
from assets_pkg.resources import DataStore
from orchestration import definitions
from orchestration.definitions import build_definitions
from orchestration.failures import read_failures
from orchestration.pools import apply_pool_limits
from orchestration.runner import sync_segment_partitions
from orchestration.sensors import image_folder_sensor, record_run_failures, segments_sensor

TINY_KEY = "adrag-tiny-clip/random-seed0/64px-bicubic-shortest"


def with_limit(resources: dict) -> dict:
    return {**resources, "quarantine_limit": QuarantineLimit()}


def meta(result, asset: str) -> dict:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset]
    return {k: v.value for k, v in event.materialization.metadata.items()}


# The nightly schedule ------------------------------------------------------------------------------

def test_nightly_schedule_takes_cron_and_timezone_from_the_environment_when_the_location_loads(monkeypatch):
    defaults = build_definitions(environ={}).resolve_schedule_def("nightly_refresh_catalog")
    assert (defaults.cron_schedule, defaults.execution_timezone, defaults.job_name) == (
        "0 2 * * *", "UTC", "refresh_catalog")

    monkeypatch.setenv("ADRAG_REFRESH_CRON", "30 3 * * 1-5")
    monkeypatch.setenv("ADRAG_REFRESH_TIMEZONE", "Europe/Berlin")
    loaded = definitions.location()  # what `dagster dev` calls when it loads the code location
    schedule = loaded.resolve_schedule_def("nightly_refresh_catalog")
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("30 3 * * 1-5", "Europe/Berlin")
    with dg.instance_for_test() as instance:
        [request] = schedule.evaluate_tick(dg.build_schedule_context(instance=instance)).run_requests
    assert request.job_name in (None, "refresh_catalog")
    assert request.tags["adrag/trigger"] == "schedule"  # the Runs page says why it ran

    with pytest.raises(ValueError, match="ADRAG_REFRESH_CRON='every night' is not a valid cron schedule"):
        build_definitions(environ={"ADRAG_REFRESH_CRON": "every night"})
    with pytest.raises(ValueError, match="ADRAG_REFRESH_TIMEZONE='Mars/Olympus' is not an IANA timezone"):
        build_definitions(environ={"ADRAG_REFRESH_TIMEZONE": "Mars/Olympus"})


# The image-folder sensor ---------------------------------------------------------------------------

class SensorTicks:
    """Evaluates a sensor the way the daemon does: each tick gets the cursor the previous one left."""

    def __init__(self, sensor, instance, data_dir):
        self.sensor, self.instance, self.store, self.cursor = sensor, instance, DataStore(data_dir=str(data_dir)), None

    def tick(self) -> dg.SensorResult:
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursor,
                                          resources={"data_store": self.store})
        result = self.sensor(context)
        if result.cursor is not None:
            self.cursor = result.cursor
        return result


class FolderTicks(SensorTicks):
    def __init__(self, instance, data_dir):
        super().__init__(image_folder_sensor, instance, data_dir)


def requested(result: dg.SensorResult) -> bool:
    if result.run_requests:
        assert len(result.run_requests) == 1 and not result.skip_reason
        return True
    assert result.skip_reason
    return False


def test_folder_sensor_requests_a_catalog_run_for_new_changed_deleted_and_relabelled_images(
        instance, data_dir, layout, resources):
    ticks = FolderTicks(instance, data_dir)
    first = ticks.tick()
    assert requested(first), "the first tick has nothing to compare with: it brings the catalog up to date"
    assert not requested(ticks.tick())
    assert "12 files, unchanged" in ticks.tick().skip_reason.skip_message

    images = layout.images_dir
    write_photo(images / "rabbit" / "rabbit-0.jpg", seed=99)                           # new
    added = ticks.tick()
    assert requested(added) and not requested(ticks.tick())
    write_photo(images / "cat" / "cat-0.jpg", seed=98)                                 # changed bytes
    assert requested(ticks.tick())
    (images / "parrot" / "parrot-1.png").unlink()                                      # deleted
    assert requested(ticks.tick())
    (images / "dog" / "dog-0.jpg").rename(images / "dog" / "renamed.jpg")              # renamed
    assert requested(ticks.tick())
    (images / "dog" / "renamed.jpg.labels").write_text("puppy\n")                      # labels sidecar
    assert requested(ticks.tick())
    (images / ".DS_Store").write_text("finder junk")                                   # hidden: ignored, like the scan
    assert not requested(ticks.tick())

    # Moved out and back (mv keeps the mtime): the listing returns to an earlier digest, and still
    # gets a run of its own, since the catalog has meanwhile dropped the file.
    shutil.move(images / "dog" / "dog-1.png", data_dir / "dog-1.png")
    out = ticks.tick()
    shutil.move(data_dir / "dog-1.png", images / "dog" / "dog-1.png")
    back = ticks.tick()
    assert requested(out) and requested(back)
    run_keys = [r.run_requests[0].run_key for r in (first, added, out, back)]
    assert len(set(run_keys)) == len(run_keys)

    # The requested run is the catalog job, and it picks the change up.
    job = build_definitions(resources=with_limit(resources)).resolve_job_def("refresh_catalog")
    assert job.name == image_folder_sensor.job_name
    run = job.execute_in_process(instance=instance, tags=back.run_requests[0].tags)
    assert run.success and run.dagster_run.tags["adrag/trigger"] == "image-folder"
    mirror = {p for r in read_table(layout.mirror_table, MIRROR_SCHEMA, ["paths"]).to_pylist() for p in r["paths"]}
    assert {"rabbit/rabbit-0.jpg", "dog/renamed.jpg", "dog/dog-1.png"} <= mirror
    assert "parrot/parrot-1.png" not in mirror


def test_folder_sensor_reads_no_file_only_the_listing(instance, data_dir, layout):
    """Same size and mtime after a rewrite: the listing (stat only) cannot tell, as the scan's own
    (size, mtime) shortcut cannot; anything that touches the mtime is seen."""
    ticks = FolderTicks(instance, data_dir)
    ticks.tick()
    path = layout.images_dir / "dog" / "dog-2.jpg"
    before = os.stat(path)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # same length, other bytes
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert not requested(ticks.tick())
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1))
    assert requested(ticks.tick())


def test_folder_sensor_skips_with_a_reason_when_the_folder_is_missing(instance, tmp_path):
    result = FolderTicks(instance, tmp_path / "nowhere").tick()
    assert not result.run_requests and "does not exist" in result.skip_reason.skip_message


# The segments sensor -------------------------------------------------------------------------------

SEGMENTS = """
brand: {name: Bricks, tagline: Real food for real pets}
segments:
  - {name: Alpha, description: city people, labels: [cat]}
  - {name: Beta, description: hikers, subject: dog}
  - {name: Gamma, description: families}
"""


class SegmentTicks(SensorTicks):
    """Sensor ticks with the partition requests applied too, as the daemon does."""

    def __init__(self, instance, data_dir):
        super().__init__(segments_sensor, instance, data_dir)

    def tick(self) -> dg.SensorResult:
        result = super().tick()
        for request in result.dynamic_partitions_requests or []:
            if isinstance(request, dg.AddDynamicPartitionsRequest):
                self.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
            else:
                for key in request.partition_keys:
                    self.instance.delete_dynamic_partition(request.partitions_def_name, key)
        return result


def run_keys(result: dg.SensorResult) -> list[str]:
    return [r.partition_key for r in result.run_requests or []]


def test_segments_sensor_requests_runs_for_new_and_edited_segments_only(instance, data_dir):
    segments_file = data_dir / "segments.yaml"
    segments_file.write_text(SEGMENTS)
    ticks = SegmentTicks(instance, data_dir)
    assert run_keys(ticks.tick()) == ["alpha", "beta", "gamma"]
    assert instance.get_dynamic_partitions("segments") == ["alpha", "beta", "gamma"]
    unchanged = ticks.tick()
    assert run_keys(unchanged) == [] and "no segment changed" in unchanged.skip_reason.skip_message

    segments_file.write_text(SEGMENTS.replace("hikers", "hikers who camp"))            # one description
    edited = ticks.tick()
    assert run_keys(edited) == ["beta"] and edited.run_requests[0].tags["adrag/trigger"] == "edited-segment"
    assert run_keys(ticks.tick()) == []

    segments_file.write_text(SEGMENTS.replace("hikers", "hikers who camp").replace("[cat]", "[cat, dog]"))  # filters
    assert run_keys(ticks.tick()) == ["alpha"]

    segments_file.write_text(SEGMENTS.replace("[cat]", "[cat, dog]"))                  # beta edited back
    back = ticks.tick()
    assert run_keys(back) == ["beta"]
    assert back.run_requests[0].run_key != edited.run_requests[0].run_key, "an edit back still runs"

    segments_file.write_text(SEGMENTS.replace("[cat]", "[cat, dog]").replace(
        "  - {name: Gamma, description: families}\n", "  - {name: Delta, description: students}\n"))
    changed = ticks.tick()
    assert run_keys(changed) == ["delta"]
    [add, delete] = changed.dynamic_partitions_requests
    assert list(add.partition_keys) == ["delta"] and list(delete.partition_keys) == ["gamma"]
    assert instance.get_dynamic_partitions("segments") == ["alpha", "beta", "delta"]

    segments_file.write_text(SEGMENTS.replace("[cat]", "[cat, dog]").replace("Gamma", "Delta").replace(
        "families", "students").replace("Real food", "Honest food"))                   # the brand: every ad
    assert run_keys(ticks.tick()) == ["alpha", "beta", "delta"]


def test_segments_sensor_leaves_partitions_alone_when_the_file_is_broken(instance, data_dir):
    ticks = SegmentTicks(instance, data_dir)
    ticks.tick()
    before = instance.get_dynamic_partitions("segments")
    (data_dir / "segments.yaml").write_text("segments: [unclosed")
    result = ticks.tick()
    assert not result.run_requests and not result.dynamic_partitions_requests
    assert "not valid YAML" in result.skip_reason.skip_message
    assert instance.get_dynamic_partitions("segments") == before == ["young-urban-professionals",
                                                                      "outdoor-loving-dog-owners"]


# The run-failure sensor ----------------------------------------------------------------------------

def evaluate_failure_sensor(instance, result: dg.ExecuteInProcessResult, data_dir) -> None:
    context = dg.build_run_status_sensor_context(
        sensor_name="record_run_failures", dagster_event=result.get_run_failure_event(),
        dagster_instance=instance, dagster_run=result.dagster_run,
        resources={"data_store": DataStore(data_dir=str(data_dir))},
        partition_key=result.dagster_run.tags.get("dagster/partition"),
    ).for_run_failure()
    record_run_failures(context)


def test_failed_campaign_run_is_recorded_with_what_to_do(instance, resources, data_dir, layout):
    [key, other] = sync_segment_partitions(instance, layout.segments_file)
    job = build_definitions(resources=with_limit(resources)).resolve_job_def("generate_campaigns")
    failed = job.execute_in_process(instance=instance, partition_key=key, raise_on_error=False)  # no catalog yet
    assert not failed.success

    evaluate_failure_sensor(instance, failed, data_dir)
    evaluate_failure_sensor(instance, failed, data_dir)  # a repeated tick records nothing twice
    [row] = read_failures(layout.failures_table)
    assert (row["run_id"], row["job_name"], row["partition_key"]) == (failed.run_id, "generate_campaigns", key)
    assert row["failed_steps"] == ["image_index_index_ready_for_campaigns"]
    assert "check index_ready_for_campaigns on image_index failed" in row["error"]
    assert f"there is no index for model {TINY_KEY}" in row["error"]
    assert "run the refresh_catalog job" in row["error"]
    assert row["failed_at"].tzinfo is not None
    assert record_run_failures.default_status == dg.DefaultSensorStatus.RUNNING

    # A run over several segments at once (a single-run backfill) is recorded with its range.
    batch = job.execute_in_process(instance=instance, raise_on_error=False, tags={
        "dagster/asset_partition_range_start": key, "dagster/asset_partition_range_end": other})
    assert not batch.success
    evaluate_failure_sensor(instance, batch, data_dir)
    latest = read_failures(layout.failures_table)[0]
    assert (latest["run_id"], latest["partition_key"]) == (batch.run_id, f"{key}...{other}")


def test_failure_sensor_ticks_pick_up_runs_the_cli_executes_in_process(instance, data_dir, layout):
    """The daemon's path: a tick sets the cursor, a later tick reads the failures logged since."""
    store = {"data_store": DataStore(data_dir=str(data_dir))}
    first = record_run_failures.evaluate_tick(dg.build_sensor_context(instance=instance, resources=store))

    @dg.asset
    def broken_step() -> None:
        raise RuntimeError("disk full while writing the mirror")

    failed = dg.materialize([broken_step], instance=instance, raise_on_error=False)  # no code location origin
    dg.materialize([broken_step], instance=instance, raise_on_error=False)
    later = record_run_failures.evaluate_tick(
        dg.build_sensor_context(instance=instance, resources=store, cursor=first.cursor))
    assert later.cursor != first.cursor
    rows = read_failures(layout.failures_table)
    assert len(rows) == 2 and failed.run_id in {r["run_id"] for r in rows}
    assert {r["error"] for r in rows} == {"broken_step: RuntimeError: disk full while writing the mirror"}


def test_failure_record_keeps_the_error_and_drops_secrets(instance, data_dir, layout, monkeypatch):
    token = "r8_SENTINEL_token_do_not_leak_0123456789"
    monkeypatch.setenv("ADRAG_SOME_API_TOKEN", "s3cr3t-value-xyz")

    @dg.asset
    def flaky_upload() -> None:
        raise RuntimeError(f"upload refused for Authorization: Bearer {token}; retry with s3cr3t-value-xyz later")

    failed = dg.materialize([flaky_upload], instance=instance, raise_on_error=False)
    evaluate_failure_sensor(instance, failed, data_dir)
    [row] = read_failures(layout.failures_table)
    assert row["job_name"] == "__ephemeral_asset_job__" and row["failed_steps"] == ["flaky_upload"]
    assert "upload refused for Authorization: Bearer [redacted]; retry with [redacted] later" in row["error"]
    stored = b"".join(p.read_bytes() for p in layout.failures_table.rglob("*") if p.is_file())
    assert token.encode() not in stored and b"s3cr3t-value-xyz" not in stored


# Pools ---------------------------------------------------------------------------------------------

def test_pool_limits_come_from_the_concurrency_settings(instance, resources):
    # image_api: one campaign step at a time (its threads are the generations in flight).
    assert apply_pool_limits(instance, {"ADRAG_GPU_CONCURRENCY": "2"}) == {"gpu": 2, "image_api": 1}
    limits = {p: instance.event_log_storage.get_concurrency_info(p).slot_count for p in ("gpu", "image_api")}
    assert limits == {"gpu": 2, "image_api": 1}
    # The catalog's GPU step runs under the limit and gives its slot back.
    job = build_definitions(resources=with_limit(resources)).resolve_job_def("refresh_catalog")
    assert job.execute_in_process(instance=instance).success
    assert instance.event_log_storage.get_concurrency_info("gpu").claimed_slots == []
    with pytest.raises(ValueError, match="ADRAG_IMAGE_API_CONCURRENCY='0': expected a whole number"):
        apply_pool_limits(instance, {"ADRAG_IMAGE_API_CONCURRENCY": "0"})


# A model change: everything re-embedded into a new index beside the old one ---------------------------

def other_weights(tmp_path):
    """A checkpoint of the tiny architecture with other weights: another model key, other vectors."""
    from assets_pkg.embeddings.model import ClipSpec, load_clip

    model = load_clip(ClipSpec(TINY_MODEL, "random")).model
    with torch.no_grad():
        generator = torch.Generator().manual_seed(7)
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    path = tmp_path / "tiny-other.pt"
    torch.save(model.state_dict(), path)
    return path


def test_changing_the_model_reembeds_everything_into_a_new_index_and_keeps_the_old_one(
        instance, resources, layout, tmp_path):
    refresh = build_definitions(resources=with_limit(resources)).resolve_job_def("refresh_catalog")
    first = refresh.execute_in_process(instance=instance)
    assert first.success and meta(first, "image_embeddings")["embedded"] == 12
    old = open_index(layout.lance_dir, TINY_KEY)
    old_version, old_rows = old.version, scan_index(old, ["image_id", "paths"]).sort_by("image_id")
    [segment, _] = sync_segment_partitions(instance, layout.segments_file)

    other = {**resources, "clip": ClipModel(model_name=TINY_MODEL, weights=str(other_weights(tmp_path)), device="cpu")}
    new_key = other["clip"].encoder().model_key
    assert new_key.startswith("adrag-tiny-clip/ckpt-") and new_key != TINY_KEY
    definitions_now = build_definitions(resources=with_limit(other))

    # Switched, not yet refreshed: generation is stopped, the old index is untouched.
    stopped = definitions_now.resolve_job_def("generate_campaigns").execute_in_process(
        instance=instance, partition_key=segment, raise_on_error=False)
    assert not stopped.success and open_index(layout.lance_dir, new_key) is None

    second = definitions_now.resolve_job_def("refresh_catalog").execute_in_process(instance=instance)
    assert second.success
    assert meta(second, "image_embeddings")["embedded"] == 12, "every image again under the new key"
    assert meta(second, "image_mirror")["table_written"] is False, "the mirror does not change with the model"
    assert meta(second, "image_index")["rows"] == 12 and meta(second, "image_index")["model_key"] == new_key
    # Every check but the retrieval quality gate, which warns on these random-ish weights.
    assert all(e.passed for e in second.get_asset_check_evaluations() if e.check_name != "index_retrieval_beats_chance")

    vectors = read_table(layout.embeddings_table, EMBEDDINGS_SCHEMA, ["image_id", "model_key"])
    per_key = {k: vectors["model_key"].to_pylist().count(k) for k in (TINY_KEY, new_key)}
    assert per_key == {TINY_KEY: 12, new_key: 12}, "the old model's vectors stay, keyed apart"
    old_after = open_index(layout.lance_dir, TINY_KEY)
    assert old_after.version == old_version and scan_index(old_after, ["image_id", "paths"]).sort_by(
        "image_id").equals(old_rows), "the old index is left exactly as it was"
    new_ids = set(scan_index(open_index(layout.lance_dir, new_key), ["image_id"])["image_id"].to_pylist())
    assert new_ids == set(old_rows["image_id"].to_pylist())

    # Campaigns now retrieve from the new model's table.
    generated = definitions_now.resolve_job_def("generate_campaigns").execute_in_process(
        instance=instance, partition_key=segment)
    assert generated.success
    [row] = read_table(layout.candidates_table, CANDIDATES_SCHEMA, ["segment_key", "model_key"]).to_pylist()
    assert row == {"segment_key": segment, "model_key": new_key}

    # Back to the old model: nothing to embed, and its index is still there to use.
    back = refresh.execute_in_process(instance=instance)
    assert meta(back, "image_embeddings")["embedded"] == 0 and meta(back, "image_index")["added"] == 0
