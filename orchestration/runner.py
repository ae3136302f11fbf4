"""Run the graph from the command line, on the persistent Dagster instance `dagster dev` shows."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Mapping

import dagster as dg

from assets_pkg.campaigns.operations import latest_campaigns
from assets_pkg.campaigns.partitions import segment_partitions
from assets_pkg.campaigns.segments import load_segments
from assets_pkg.database_urls import masked
from assets_pkg.index.lance_index import catalog_labels, open_reader
from assets_pkg.index.queries import Query, build_query
from assets_pkg.layout import DataLayout
from orchestration.definitions import build_definitions
from orchestration.failures import record_failure
from orchestration.instance_config import uses_postgres
from orchestration.jobs import SEGMENTS_TAG, TRIGGER_TAG, segments_tag
from orchestration.pools import ensure_pool_limits
from orchestration.preflight import check_brand_image, check_clip_weights, check_images_folder, check_segments
from orchestration.resources import build_resources
from orchestration.sensors import describe_failed_run

# Run logs at INFO (progress, quarantine) rather than Dagster's default DEBUG event stream.
RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
PROJECT_SEGMENTS = Path(__file__).resolve().parent.parent / "data" / "segments.yaml"
# The run tags Dagster's own single-run backfills put on a run over a range of partitions.
PARTITION_RANGE_START = "dagster/asset_partition_range_start"
PARTITION_RANGE_END = "dagster/asset_partition_range_end"
CLI = "cli"  # the trigger tag of the runs `adrag demo` and `adrag run` start


class Project:
    """What the CLI runs on: the resources (its flags over the environment, which runs read through
    `dg.EnvVar`), the Definitions built with them, and the instance under `dagster_home`."""

    def __init__(self, overrides: Mapping[str, str], dagster_home: Path):
        self.overrides = dict(overrides)
        self.dagster_home = dagster_home

    @cached_property
    def defs(self) -> dg.Definitions:
        return build_definitions(resources=build_resources(self.overrides))

    @cached_property
    def current(self) -> dict:
        """The resources with their values now, for work outside a run (paths, search, the MLflow store)."""
        return build_resources(self.overrides, read_now=True)

    @property
    def layout(self) -> DataLayout:
        return self.current["data_store"].layout

    def instance(self) -> dg.DagsterInstance:
        instance = dg.DagsterInstance.from_config(str(self.dagster_home))
        environ = {**os.environ, **self.overrides}
        # A shared instance (the dagster.yaml adrag writes for ADRAG_DAGSTER_PG_URL): give its pools this
        # project's limits where they have none.
        if uses_postgres(environ) and type(instance.event_log_storage).__module__.startswith("dagster_postgres"):
            ensure_pool_limits(instance, environ)
        return instance


def sync_segment_partitions(instance: dg.DagsterInstance, segments_file) -> list[str]:
    """Make the segment partitions equal to the segments file (what the sensor does on a tick)."""
    segments = load_segments(segments_file)
    for error in segments.errors:
        print(f"segments file: {error}")
    wanted = [s.key for s in segments.segments]
    current = set(instance.get_dynamic_partitions(segment_partitions.name))
    if missing := [k for k in wanted if k not in current]:
        instance.add_dynamic_partitions(segment_partitions.name, missing)
    for key in sorted(current - set(wanted)):
        instance.delete_dynamic_partition(segment_partitions.name, key)
    return wanted


@dataclass
class RunReport:
    """What the end summary says besides the ads: why each failed segment failed, in this command's
    runs, and the asset checks that did not pass (warnings such as the quarantine rate included)."""

    since: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    reasons: dict[str, str] = field(default_factory=dict)  # failed segment key -> why
    checks: list[str] = field(default_factory=list)  # one line per failed check

    def add_checks(self, instance: dg.DagsterInstance, run_id: str) -> None:
        for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
            evaluation = record.dagster_event.event_specific_data
            if not evaluation.passed:
                partition = f" [{evaluation.partition}]" if getattr(evaluation, "partition", None) else ""
                self.checks.append(f"{evaluation.severity.value:<5} {evaluation.asset_key.to_user_string()}"
                                   f"{partition} {evaluation.check_name}: {evaluation.description}")


def preflight(project: Project, segment_keys: list[str] | None) -> None:
    """`CannotRun` (one line) for what would fail the runs: the folder, the weights, the segments file,
    an unknown --segments key, the brand image (only when there are segments to make ads for)."""
    where = project.layout
    check_images_folder(where.images_dir)
    check_clip_weights(project.current["clip"].spec)
    if check_segments(where.segments_file, segment_keys):
        check_brand_image(where)


def run_everything(project: Project, segment_keys: list[str] | None = None) -> int:
    """The whole graph: the catalog, then the chosen segments' campaigns (all by default). `CannotRun`
    before anything runs when the inputs cannot work (`preflight`)."""
    preflight(project, segment_keys)
    where = project.layout
    started = time.perf_counter()
    report = RunReport()
    with project.instance() as instance:
        catalog = project.defs.resolve_job_def("refresh_catalog").execute_in_process(
            run_config=RUN_CONFIG, instance=instance, raise_on_error=False, tags={TRIGGER_TAG: CLI})
        report.add_checks(instance, catalog.run_id)
        if not catalog.success:
            report_failed_run(instance, where, catalog.dagster_run)
            print("refresh_catalog failed; the run is in the Dagster UI (`adrag ui`)")
            return 1
        for event in catalog.get_asset_materialization_events():
            meta = event.materialization.metadata
            summary = ", ".join(f"{k}={v.value}" for k, v in meta.items()
                                if k in ("files", "quarantined", "added", "removed", "embedded", "images_per_s", "rows"))
            print(f"  {event.asset_key.to_user_string():<18} {summary}")
        if not where.segments_file.is_file():
            print_checks(report)
            print(f"no segments file at {where.segments_file}: the catalog is ready; write one (see "
                  f"{PROJECT_SEGMENTS}) to generate campaigns")
            return 0
        keys = sync_segment_partitions(instance, where.segments_file)
        chosen = [k for k in keys if not segment_keys or k in segment_keys]
        failed = generate_segments(project, chosen, instance, report)
    print_outputs(project, chosen, failed, time.perf_counter() - started, report)
    return 1 if failed else 0


def generate_segments(project: Project, keys: list[str], instance: dg.DagsterInstance,
                      report: RunReport | None = None) -> list[str]:
    """Generate the segments' campaigns; returns the keys that failed (why, and the failed checks, in `report`).

    Like a backfill launched from the UI (the campaign assets' single-run backfill policy), each
    stretch of consecutive partitions is one run, in which generations overlap up to the image API
    limit. Dagster's backfills do this chunking only when the daemon launches them; these runs are
    in-process, so the stretches are made here.
    """
    failed = []
    ordered = instance.get_dynamic_partitions(segment_partitions.name)
    for stretch in consecutive_stretches(ordered, keys):
        result = project.defs.resolve_job_def("generate_campaigns").execute_in_process(
            run_config=RUN_CONFIG, instance=instance, raise_on_error=False,
            tags={PARTITION_RANGE_START: stretch[0], PARTITION_RANGE_END: stretch[-1], TRIGGER_TAG: CLI,
                  SEGMENTS_TAG: segments_tag(stretch)})
        # From the instance: a partly failed run's materializations are in its event log, not in `result`.
        records = instance.get_records_for_run(result.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION,
                                               limit=100_000).records
        made = {r.asset_materialization.partition for r in records
                if r.asset_materialization.asset_key == dg.AssetKey("campaign_ad")}
        failed_here = [key for key in stretch if key not in made]
        failed.extend(failed_here)
        if report is not None:
            report.add_checks(instance, result.run_id)
        if not result.success:
            failure = report_failed_run(instance, project.layout, result.dagster_run)
            if report is not None:
                report.reasons.update({key: failure.error for key in failed_here})
    return failed


def report_failed_run(instance: dg.DagsterInstance, where: DataLayout, run: dg.DagsterRun):
    """Say why the run failed (each step's error, each failed check's advice) and record it where the
    run-failure sensor does: CLI runs are in-process, so no daemon may be watching. Returns the failure."""
    failure = describe_failed_run(instance, run)
    for reason in failure.error.split(" | "):
        print(f"  {reason}")
    record_failure(where.failures_table, failure)
    return failure


def consecutive_stretches(ordered: list[str], chosen: list[str]) -> list[list[str]]:
    """The chosen keys as runs of neighbours in partition order: each becomes one partition-range run."""
    wanted = set(chosen)
    stretches: list[list[str]] = []
    previous_chosen = False
    for key in ordered:
        if key in wanted:
            if not previous_chosen:
                stretches.append([])
            stretches[-1].append(key)
        previous_chosen = key in wanted
    return stretches


def run_demo(project: Project, images_per_subject: int = 12) -> int:
    from demo_catalog import make_demo_catalog

    where = project.layout
    check_clip_weights(project.current["clip"].spec)  # before the demo catalog is drawn
    catalog = make_demo_catalog(where.data_dir, images_per_subject=images_per_subject)
    if not where.segments_file.exists():
        shutil.copyfile(PROJECT_SEGMENTS, where.segments_file)
    print(f"demo catalog: {len(catalog.image_paths)} images under {catalog.images_dir}, brand {catalog.brand_image}")
    return run_everything(project)


def print_outputs(project: Project, keys: list[str], failed: list[str], seconds: float,
                  report: RunReport | None = None) -> None:
    """The end summary: each segment's ad, or why it failed (never an older ad as if it were new), the
    checks that did not pass, and where everything is."""
    report = report or RunReport(since=datetime.min.replace(tzinfo=timezone.utc))
    where = project.layout
    latest = latest_campaigns(where)
    print(f"\nads ({len(keys) - len(failed)} of {len(keys)} segments, {seconds:.1f}s in all):")
    for key in keys:
        row = latest.get(key)
        if row is not None and key in failed and row["created_at"] < report.since:
            row = None  # an earlier run's ad: not what this command made
        if row is not None and row["status"] == "failed":
            outcome = f"FAILED: {row['error']}"
        elif row is not None:
            outcome = f"{row['output_path']}  ({row['subject']}, {row['generator_id']})"
        elif key in report.reasons:
            outcome = f"FAILED: {report.reasons[key]}"
        else:
            outcome = "FAILED before generation: see the run in the Dagster UI"
        print(f"  {key:<32} {outcome}")
    print_checks(report)
    tables = ",".join(path.name for path in (where.manifest_table, where.quarantine_table, where.mirror_table,
                                              where.mirror_bytes_table, where.embeddings_table,
                                              where.candidates_table, where.campaigns_table))
    print(f"\ntables (Delta):  {where.lake_dir}/{{{tables}}}")
    print(f"vector index:    {where.lance_dir}")
    store = project.current["mlflow_tracking"].store(where)
    browse = f"browse: adrag mlflow, then {store.ui_url or 'its address'}"
    print(f"MLflow runs:     {masked(store.tracking_uri)}  ({browse})")
    print("Dagster UI:      adrag ui")


def print_checks(report: RunReport) -> None:
    if report.checks:
        print(f"\nchecks that did not pass ({len(report.checks)}; the Dagster UI has their details):")
        for line in report.checks:
            print(f"  {line}")


def print_search(project: Project, query: Query, k: int) -> int:
    """The query's top-k, one line each: rank, cosine score, path, labels. Raises `BadQuery`."""
    encoder = project.current["clip"].encoder()
    reader = open_reader(project.layout.lance_dir, encoder.model_key)
    if reader is None:
        print(f"no index for model {encoder.model_key}: run `adrag run` (or `adrag demo`) first")
        return 1
    built = build_query(query, encoder)
    print(f"query: {built.description}")
    hits = reader.search(built.vector, k=k, where=built.where)
    if not hits:
        if query.labels:
            known = ", ".join(catalog_labels(reader.table)) or "none"
            print(f"no image in the index carries label {' or '.join(query.labels)} (labels: {known})")
        else:
            print("the index is empty")
        return 1
    for rank, hit in enumerate(hits, start=1):
        print(f"{rank:>2}. {hit.score:.4f}  {hit.path}  [{', '.join(hit.labels)}]")
    return 0
