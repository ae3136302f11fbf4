"""Runs the review studio launches: an approved segment's partition of `generate_campaigns`.

`launch_approved` starts one run of the segment's partition (candidates and ad) tagged with the
approval it was launched for: `adrag/review_id`, `adrag/reviewer`, `adrag/trigger=studio`. The step
itself reads the segment's approval from the review log (see `assets_pkg.campaigns.assets`), so the
ad is an ordinary materialization with lineage, checks and its MLflow run (tagged with the review id).

The run executes in process, in a background thread of the caller (the studio's process), on its own
instance opened from the caller's instance ref, the way the CLI runs: no daemon or webserver is needed.
What that means: the run lives and dies with the studio's process. The run carries the launching
process (`adrag/launcher`: its pid and a per-process token, as pids are reused), so `run_status` marks a run whose launcher is gone as failed, with
that reason, instead of showing it running for ever; and a failure is recorded in `lake/run_failures`
here, since no run-failure sensor may be watching in-process runs.

The page finds an approval's run from the instance (`run_for_review`, by the review id tag), so its
status survives a page reload and a studio restart.
"""

from __future__ import annotations

import os
import threading
import uuid
from dataclasses import dataclass

import dagster as dg

from assets_pkg.campaigns.partitions import segment_partitions
from assets_pkg.layout import DataLayout
from assets_pkg.review.policy import approved_choice
from orchestration.failures import record_failure
from orchestration.jobs import SEGMENTS_TAG, TRIGGER_TAG
from orchestration.runner import RUN_CONFIG
from orchestration.sensors import describe_failed_run

JOB = "generate_campaigns"
REVIEW_ID_TAG = "adrag/review_id"
REVIEWER_TAG = "adrag/reviewer"
LAUNCHER_TAG = "adrag/launcher"
# This process, as a launcher: its pid and a token, so a new process that got an old pid (a restarted
# container's pid 1) is not mistaken for the one that ran the run.
THIS_LAUNCHER = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
STUDIO = "studio"

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
_STATUS = {
    dg.DagsterRunStatus.NOT_STARTED: QUEUED, dg.DagsterRunStatus.QUEUED: QUEUED,
    dg.DagsterRunStatus.STARTING: RUNNING, dg.DagsterRunStatus.STARTED: RUNNING,
    dg.DagsterRunStatus.CANCELING: RUNNING, dg.DagsterRunStatus.SUCCESS: DONE,
    dg.DagsterRunStatus.FAILURE: FAILED, dg.DagsterRunStatus.CANCELED: FAILED,
}

# Runs whose thread failed before Dagster recorded them (this process only), by run id: the reason.
_not_started: dict[str, str] = {}


@dataclass
class LaunchedRun:
    run_id: str
    segment_key: str
    review_id: str
    thread: threading.Thread

    def wait(self, timeout_s: float | None = None) -> bool:
        """Wait for the run's thread; True when it has finished."""
        self.thread.join(timeout_s)
        return not self.thread.is_alive()


def launch_approved(instance: dg.DagsterInstance, defs: dg.Definitions, layout: DataLayout,
                    segment_key: str) -> LaunchedRun:
    """Start the run that makes the segment's ad from its approved photo; returns at once.

    Raises LookupError when the segment has no approval or no partition (the segments file and the
    partitions disagree: the segments sensor or `adrag run` syncs them)."""
    approval = approved_choice(layout, segment_key)
    if approval is None:
        raise LookupError(f"segment {segment_key!r} has no approved choice: approve a candidate first")
    if segment_key not in instance.get_dynamic_partitions(segment_partitions.name):
        raise LookupError(f"segment {segment_key!r} has no partition yet: sync the segments file first")
    job = defs.resolve_job_def(JOB)
    run_id = str(uuid.uuid4())
    tags = {REVIEW_ID_TAG: approval.review_id, REVIEWER_TAG: approval.reviewer, TRIGGER_TAG: STUDIO,
            SEGMENTS_TAG: segment_key, LAUNCHER_TAG: THIS_LAUNCHER}
    ref = None if instance.is_ephemeral else instance.get_ref()

    def execute(run_instance: dg.DagsterInstance) -> None:
        result = job.execute_in_process(run_config=RUN_CONFIG, instance=run_instance, partition_key=segment_key,
                                        run_id=run_id, tags=tags, raise_on_error=False)
        if not result.success:
            record_failure(layout.failures_table, describe_failed_run(run_instance, result.dagster_run))

    def work() -> None:
        try:
            if ref is None:
                execute(instance)
            else:
                with dg.DagsterInstance.from_ref(ref) as own:
                    execute(own)
        except Exception as err:  # noqa: BLE001 -- before or around the run: kept for run_status to report
            _not_started[run_id] = f"{type(err).__name__}: {err}"

    thread = threading.Thread(target=work, name=f"adrag-review-run-{segment_key}", daemon=True)
    thread.start()
    return LaunchedRun(run_id=run_id, segment_key=segment_key, review_id=approval.review_id, thread=thread)


def run_for_review(instance: dg.DagsterInstance, review_id: str) -> str | None:
    """The id of the latest run launched for the review's approval; None when none was."""
    runs = instance.get_runs(dg.RunsFilter(job_name=JOB, tags={REVIEW_ID_TAG: review_id}), limit=1)
    return runs[0].run_id if runs else None


def run_status(instance: dg.DagsterInstance, run_id: str) -> tuple[str, str | None]:
    """("queued" | "running" | "done" | "failed", the failure's reason or None)."""
    run = instance.get_run_by_id(run_id)
    if run is None:
        if run_id in _not_started:
            return FAILED, _not_started[run_id]
        return QUEUED, None
    status = _STATUS.get(run.status, RUNNING)
    if status in (QUEUED, RUNNING) and (gone := _launcher_gone(run)):
        instance.report_run_failed(run, gone)
        return FAILED, gone
    if status != FAILED:
        return status, None
    if run.status == dg.DagsterRunStatus.CANCELED:
        return FAILED, "the run was canceled"
    return FAILED, describe_failed_run(instance, run).error


def _launcher_gone(run: dg.DagsterRun) -> str | None:
    """Why an unfinished run will never finish: the process that ran it in process has exited."""
    launcher = run.tags.get(LAUNCHER_TAG, "")
    pid = launcher.partition("-")[0]
    if launcher == THIS_LAUNCHER or not pid.isdigit():
        return None
    gone = f"the studio process that ran it (pid {pid}) stopped before the run finished; make the ad again"
    if int(pid) == os.getpid():
        return gone  # this pid, another token: the launcher was an earlier process
    try:
        os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return gone
    except PermissionError:
        return None  # it exists, under another user
    return None
