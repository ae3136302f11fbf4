"""Run the graph from the command line, on the persistent Dagster instance `dagster dev` shows."""

from __future__ import annotations

import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import dagster as dg

from assets_pkg.campaigns.partitions import segment_partitions
from assets_pkg.campaigns.segments import load_segments
from assets_pkg.campaigns.store import CAMPAIGNS_SCHEMA
from assets_pkg.delta_tables import read_table
from assets_pkg.index.lance_index import open_index, search
from assets_pkg.layout import DataLayout
from orchestration.definitions import defs
from orchestration.resources import resources_from_environment


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


def run_everything(segment_keys: list[str] | None = None, parallel: int = 1) -> int:
    instance = dg.DagsterInstance.get()
    where = layout()
    started = time.perf_counter()
    catalog = defs.resolve_job_def("refresh_catalog").execute_in_process(
        run_config=RUN_CONFIG, instance=instance, raise_on_error=False)
    if not catalog.success:
        for event in catalog.all_events:
            if event.is_step_failure:
                error = event.event_specific_data.error
                while error.cause is not None:  # the user-code exception under Dagster's wrapper
                    error = error.cause
                print(f"{event.step_key} failed: {error.message.strip()}")
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
    failed = generate_segments(chosen, parallel)
    print_outputs(where, chosen, failed, time.perf_counter() - started)
    return 1 if failed else 0


def generate_segments(keys: list[str], parallel: int = 1) -> list[str]:
    """Run each segment's campaign partition; returns the keys that failed.

    With `parallel` > 1 the partitions run in that many worker processes (Dagster's in-process
    execution is not thread-safe); the image API's slots still cap generations in flight.
    """
    if parallel <= 1 or len(keys) <= 1:
        return [key for key in keys if not generate_segment(key)]
    with ProcessPoolExecutor(max_workers=min(parallel, len(keys)), mp_context=get_context("spawn")) as pool:
        return [key for key, ok in zip(keys, pool.map(generate_segment, keys)) if not ok]


def generate_segment(key: str) -> bool:
    with dg.DagsterInstance.get() as instance:
        return defs.resolve_job_def("generate_campaigns").execute_in_process(
            run_config=RUN_CONFIG, instance=instance, partition_key=key, raise_on_error=False).success


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
    print(f"\ntables (Delta):  {where.lake_dir}/{{image_manifest,quarantine,image_mirror,image_embeddings,"
          "campaign_candidates,campaigns}")
    print(f"vector index:    {where.lance_dir}")
    store = resources_from_environment()["mlflow_tracking"].store(where)
    print(f"MLflow runs:     {store.tracking_uri}  (browse: mlflow ui --backend-store-uri {store.tracking_uri})")
    print("Dagster UI:      adrag ui")


def print_search(query: str, k: int) -> int:
    resources = resources_from_environment()
    encoder = resources["clip"].encoder()
    table = open_index(resources["data_store"].layout.lance_dir, encoder.model_key)
    if table is None:
        print(f"no index for model {encoder.model_key}: run `adrag run` (or `adrag demo`) first")
        return 1
    for rank, hit in enumerate(search(table, encoder.encode_texts([query])[0], k=k), start=1):
        print(f"{rank:>2}. {hit.score:.4f}  {hit.path}  [{', '.join(hit.labels)}]")
    return 0
