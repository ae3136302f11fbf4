"""Run the graph from the command line, on the persistent Dagster instance `dagster dev` shows."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import dagster as dg

from assets_pkg.campaigns.partitions import segment_partitions
from assets_pkg.campaigns.segments import load_segments
from assets_pkg.campaigns.store import CAMPAIGNS_SCHEMA
from assets_pkg.delta_tables import read_table
from assets_pkg.index.lance_index import open_reader
from assets_pkg.layout import DataLayout
from orchestration.definitions import defs
from orchestration.failures import failures_table, record_failure
from orchestration.resources import resources_from_environment
from orchestration.sensors import describe_failed_run


def layout() -> DataLayout:
    return resources_from_environment()["data_store"].layout


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


# Run logs at INFO (progress, quarantine) rather than Dagster's default DEBUG event stream.
RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
PROJECT_SEGMENTS = Path(__file__).resolve().parent.parent / "data" / "segments.yaml"


def run_everything(segment_keys: list[str] | None = None) -> int:
    instance = dg.DagsterInstance.get()
    where = layout()
    started = time.perf_counter()
    catalog = defs.resolve_job_def("refresh_catalog").execute_in_process(
        run_config=RUN_CONFIG, instance=instance, raise_on_error=False)
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
        print(f"no segments file at {where.segments_file}: the catalog is ready; write one (see "
              f"{PROJECT_SEGMENTS}) to generate campaigns")
        return 0
    keys = sync_segment_partitions(instance, where.segments_file)
    chosen = [k for k in keys if not segment_keys or k in segment_keys]
    failed = generate_segments(chosen)
    print_outputs(where, chosen, failed, time.perf_counter() - started)
    return 1 if failed else 0


def generate_segments(keys: list[str], instance: dg.DagsterInstance | None = None) -> list[str]:
    """Generate the segments' campaigns; returns the keys that failed.

    Like a backfill launched from the UI (the campaign assets' single-run backfill policy), each
    stretch of consecutive partitions is one run, in which generations wait on the image API
    together, up to its concurrency limit.
    """
    if instance is None:
        with dg.DagsterInstance.get() as persistent:
            return generate_segments(keys, persistent)
    failed = []
    ordered = instance.get_dynamic_partitions(segment_partitions.name)
    for stretch in consecutive_stretches(ordered, keys):
        result = defs.resolve_job_def("generate_campaigns").execute_in_process(
            run_config=RUN_CONFIG, instance=instance, raise_on_error=False,
            tags={PARTITION_RANGE_START: stretch[0], PARTITION_RANGE_END: stretch[-1]})
        # From the instance: a partly failed run's materializations are in its event log, not in `result`.
        records = instance.get_records_for_run(result.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION,
                                               limit=100_000).records
        made = {r.asset_materialization.partition for r in records
                if r.asset_materialization.asset_key == dg.AssetKey("campaign_ad")}
        failed.extend(key for key in stretch if key not in made)
        if not result.success:
            report_failed_run(instance, layout(), result.dagster_run)
    return failed


def report_failed_run(instance: dg.DagsterInstance, where: DataLayout, run: dg.DagsterRun) -> None:
    """Say why the run failed (each step's error, each failed check's advice) and record it where the
    run-failure sensor does: CLI runs are in-process, so no daemon may be watching."""
    failure = describe_failed_run(instance, run)
    for reason in failure.error.split(" | "):
        print(f"  {reason}")
    record_failure(failures_table(where.lake_dir), failure)


# The run tags Dagster's own single-run backfills put on a run over a range of partitions.
PARTITION_RANGE_START = "dagster/asset_partition_range_start"
PARTITION_RANGE_END = "dagster/asset_partition_range_end"


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


def run_demo(images_per_subject: int = 12) -> int:
    from orchestration.demo_catalog import make_demo_catalog

    where = layout()
    catalog = make_demo_catalog(where.data_dir, images_per_subject=images_per_subject)
    if not where.segments_file.exists():
        shutil.copyfile(PROJECT_SEGMENTS, where.segments_file)
    print(f"demo catalog: {len(catalog.image_paths)} images under {catalog.images_dir}, brand {catalog.brand_image}")
    return run_everything()


def print_outputs(where: DataLayout, keys: list[str], failed: list[str], seconds: float) -> None:
    campaigns = read_table(where.campaigns_table, CAMPAIGNS_SCHEMA).to_pylist()
    latest = {row["segment_key"]: row for row in sorted(campaigns, key=lambda r: r["created_at"])}
    print(f"\nads ({len(keys) - len(failed)} of {len(keys)} segments, {seconds:.1f}s in all):")
    for key in keys:
        row = latest.get(key)
        if row is None:
            outcome = "FAILED before generation: see the run in the Dagster UI"
        elif row["status"] == "failed":
            outcome = f"FAILED: {row['error']}"
        else:
            outcome = f"{row['output_path']}  ({row['subject']}, {row['generator_id']})"
        print(f"  {key:<32} {outcome}")
    print(f"\ntables (Delta):  {where.lake_dir}/{{image_manifest,quarantine,image_mirror,image_mirror_bytes,image_embeddings,"
          "campaign_candidates,campaigns}")
    print(f"vector index:    {where.lance_dir}")
    store = resources_from_environment()["mlflow_tracking"].store(where)
    print(f"MLflow runs:     {store.tracking_uri}  (browse: adrag mlflow, then {store.ui_url or 'its address'})")
    print("Dagster UI:      adrag ui")


def print_search(query: str, k: int) -> int:
    resources = resources_from_environment()
    encoder = resources["clip"].encoder()
    reader = open_reader(resources["data_store"].layout.lance_dir, encoder.model_key)
    if reader is None:
        print(f"no index for model {encoder.model_key}: run `adrag run` (or `adrag demo`) first")
        return 1
    for rank, hit in enumerate(reader.search(encoder.encode_texts([query])[0], k=k), start=1):
        print(f"{rank:>2}. {hit.score:.4f}  {hit.path}  [{', '.join(hit.labels)}]")
    return 0
