"""Sensors: the image folder and the segments file request runs when they change; failed runs are
recorded where users look.

- `image_folder_sensor`: a digest of the folder's listing (stat only) in the cursor; a changed
  digest requests one `refresh_catalog` run, an unchanged one skips.
- `segments_sensor`: keeps the segment partitions equal to the segments file and requests a
  campaign run for each new or edited segment (per-segment digests in the cursor).
- `record_run_failures`: every failed run of this code location goes to `lake/run_failures` and the
  sensor's log, with the failing steps and checks and secrets scrubbed.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import dagster as dg

from assets_pkg.campaigns.partitions import segment_partitions
from assets_pkg.campaigns.segments import load_segments
from assets_pkg.resources import DataStore
from orchestration.failures import RunFailure, record_failure
from orchestration.fingerprints import folder_fingerprint, segment_fingerprint
from orchestration.jobs import generate_campaigns, refresh_catalog


@dg.sensor(
    job=refresh_catalog,
    minimum_interval_seconds=60,
    description="Lists the image folder (names, sizes, mtimes of images and .labels sidecars; no file is read) and "
                "requests a refresh_catalog run when the listing changed: new, changed, renamed or deleted images.",
)
def image_folder_sensor(context: dg.SensorEvaluationContext, data_store: DataStore) -> dg.SensorResult:
    images_dir = data_store.layout.images_dir
    try:
        listing = folder_fingerprint(images_dir)
    except FileNotFoundError as err:
        return dg.SensorResult(skip_reason=f"{err}: set ADRAG_IMAGES_DIR or create it")
    previous = json.loads(context.cursor) if context.cursor else {}
    if listing.digest == previous.get("digest"):
        return dg.SensorResult(skip_reason=f"{images_dir}: {listing.entries} files, unchanged since the last run request")
    changes = previous.get("changes", 0) + 1
    # The run key counts changes: a folder that changes back to an earlier listing still gets a run.
    request = dg.RunRequest(run_key=f"images-{changes}-{listing.digest[:16]}",
                            tags={"adrag/trigger": "image-folder", "adrag/folder_digest": listing.digest[:16]})
    context.log.info(f"{images_dir}: listing changed ({listing.entries} files); requesting refresh_catalog")
    return dg.SensorResult(run_requests=[request],
                           cursor=json.dumps({"digest": listing.digest, "changes": changes}))


@dg.sensor(
    job=generate_campaigns,
    minimum_interval_seconds=60,
    description="Keeps the segment partitions equal to the segments file: adds partitions for new segments, removes "
                "deleted ones and ones added by hand; requests a campaign run for each new segment and each segment "
                "whose name, description, subject, labels (or the brand) changed.",
)
def segments_sensor(context: dg.SensorEvaluationContext, data_store: DataStore) -> dg.SensorResult:
    try:
        parsed = load_segments(data_store.layout.segments_file)
    except (FileNotFoundError, ValueError) as err:
        return dg.SensorResult(skip_reason=f"{err}; partitions left as they are")
    for error in parsed.errors:
        context.log.warning(f"segments file: {error}")
    previous = json.loads(context.cursor) if context.cursor else None
    digests = {s.key: segment_fingerprint(s, parsed.brand) for s in parsed.segments}
    current = set(context.instance.get_dynamic_partitions(segment_partitions.name))
    added = [key for key in digests if key not in current]
    removed = sorted(current - set(digests))
    # Without a cursor (first tick) an existing partition's last content is unknown: not "edited".
    known = previous["segments"] if previous else {}
    edited = [key for key in digests if key in current and key in known and known[key] != digests[key]]
    if hand_added := [key for key in removed if key not in known]:
        context.log.warning(f"removing partition(s) {', '.join(hand_added)}: not segments of "
                            f"{data_store.layout.segments_file}; add a segment to that file to get a partition")
    requests = []
    if added:
        requests.append(segment_partitions.build_add_request(added))
    if removed:
        requests.append(segment_partitions.build_delete_request(removed))
    changes = (previous or {}).get("changes", 0) + (1 if added or edited else 0)
    run_requests = [
        dg.RunRequest(partition_key=key, run_key=f"segment-{key}-{changes}-{digests[key]}",
                      tags={"adrag/trigger": "new-segment" if key in added else "edited-segment"})
        for key in [*added, *edited]
    ]
    cursor = json.dumps({"segments": digests, "changes": changes}, sort_keys=True)
    if not requests and not run_requests:
        return dg.SensorResult(skip_reason="segments file and partitions agree; no segment changed", cursor=cursor)
    return dg.SensorResult(run_requests=run_requests, dynamic_partitions_requests=requests, cursor=cursor)


@dg.run_failure_sensor(
    name="record_run_failures",
    default_status=dg.DefaultSensorStatus.RUNNING,
    # The instance is this project's own (DAGSTER_HOME under the data dir): "all code locations" is
    # this one, and it takes in the runs the `adrag` CLI executes in process, which have no code
    # location origin and which the sensor would otherwise skip.
    monitor_all_code_locations=True,
    description="Records every failed run (run id, job, segment, time, failed steps and checks, the error with "
                "secrets scrubbed) in the Delta table lake/run_failures and in this sensor's log.",
)
def record_run_failures(context: dg.RunFailureSensorContext, data_store: DataStore) -> None:
    failure = describe_failed_run(context.instance, context.dagster_run)
    table = data_store.layout.failures_table
    written = record_failure(table, failure)
    context.log.error(f"run {failure.run_id} ({failure.job_name}"
                      + (f", partition {failure.partition_key}" if failure.partition_key else "")
                      + f") failed: {failure.error}" + ("" if written else " (already recorded)"))


def describe_failed_run(instance: dg.DagsterInstance, run: dg.DagsterRun) -> RunFailure:
    """A failed run in words, from its event log: each failed step's innermost error and each failed
    check's description (which says what to do), else the run's own failure message."""
    steps, errors = [], []
    for record in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        event = record.dagster_event
        steps.append(event.step_key)
        error = event.event_specific_data.error if event.event_specific_data else None
        while error is not None and error.cause is not None:  # the user's exception under Dagster's wrappers
            error = error.cause
        message = error.message.strip() if error else event.message
        if error is not None and error.cls_name == "Failure":  # our own words, without Dagster's class path
            message = message.split("Failure: ", 1)[-1]
        errors.append(f"{event.step_key}: {message}")
    for record in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = record.dagster_event.event_specific_data
        if not evaluation.passed:
            errors.append(f"check {evaluation.check_name} on {evaluation.asset_key.to_user_string()} failed: "
                          f"{evaluation.description}")
    if not errors:
        failures = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        errors.append(failures[-1].dagster_event.message if failures else "the run failed")
    stats = instance.get_run_stats(run.run_id)
    failed_at = datetime.fromtimestamp(stats.end_time, timezone.utc) if stats.end_time else datetime.now(timezone.utc)
    return RunFailure(run_id=run.run_id, job_name=run.job_name, partition_key=partitions_of(run.tags),
                      failed_at=failed_at, failed_steps=steps, error=" | ".join(errors))


def partitions_of(tags) -> str | None:
    """The run's partition, or `first...last` for a run over a range (a single-run backfill)."""
    if key := tags.get("dagster/partition"):
        return key
    start, end = tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end")
    if start and end:
        return start if start == end else f"{start}...{end}"
    return None
