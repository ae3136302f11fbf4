"""Campaign batch: 20 segments against a local Replicate stand-in that takes 10 s per prediction.

Measures, in one run, the batch made in the ways --designs names, and reports each one's time, its ratio to
one-at-a-time, the most predictions in flight at once (must stay within the image API limit), the paid
predictions (one per segment: retries never pay twice), the creates and the failed segments:

- one-at-a-time: a run per segment, one after the other, in this process (the baseline);
- one-batch: one run over every partition (as a backfill from the UI or `adrag run` makes it), whose
  step generates up to the API limit at once on a thread pool;
- per-partition: one run per partition, all submitted at once, each in its own process as the run
  launcher of `dagster dev` starts them (`execute_job` of the reconstructable job: the job's default
  multiprocess executor, each step in a process of its own), at most --max-concurrent-runs at a time
  (the queued run coordinator's default, 10). Only the instance's `image_api` pool (limit = the API
  limit) holds generations back: one partition per run leaves the step one worker thread;
- per-partition-no-pool: the same without a pool limit (a control: what the pool holds back).

The in-step designs run with the pool limits `adrag ui` sets (`orchestration.pools`).

    .venv/bin/python benchmarks/bench_campaign_batch.py [--segments 20] [--seconds 10] [--api-limit 4]
        [--designs one-at-a-time,one-batch,per-partition] [--max-concurrent-runs 10]
        [--launch execute_job|execute_in_process]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

DESIGNS = ("one-at-a-time", "one-batch", "per-partition", "per-partition-no-pool")
POOL = "image_api"
CAMPAIGN_STEP = "segment_campaign"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0, help="how long each prediction takes")
    parser.add_argument("--api-limit", type=int, default=4, help="generations in flight at once (ADRAG_IMAGE_API_CONCURRENCY, "
                                                                 "and the per-partition image_api pool limit; the project default is 4)")
    parser.add_argument("--designs", default="one-at-a-time,one-batch,per-partition",
                        help=f"comma-separated, in order, from {', '.join(DESIGNS)}; ratios are to one-at-a-time")
    parser.add_argument("--max-concurrent-runs", type=int, default=10,
                        help="per-partition: runs in progress at once (the queued run coordinator's default is 10)")
    parser.add_argument("--launch", choices=("execute_job", "execute_in_process"), default="execute_job",
                        help="per-partition: how each run's process executes it")
    parser.add_argument("--run-partition", metavar="KEY", help=argparse.SUPPRESS)  # a per-partition run's process
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_partition:
        return run_one_partition(args.run_partition, args.launch, Path(args.result_file))
    designs = [d.strip() for d in args.designs.split(",") if d.strip()]
    if unknown := [d for d in designs if d not in DESIGNS]:
        parser.error(f"unknown design(s) {unknown}: choose from {DESIGNS}")

    root = Path(tempfile.mkdtemp(prefix="adrag-batch-"))
    os.environ.update({"ADRAG_DATA_DIR": str(root / "data"), "DAGSTER_HOME": str(root / "dagster_home"),
                       "ADRAG_CLIP_MODEL": "adrag-tiny-clip", "ADRAG_CLIP_WEIGHTS": "random",
                       "REPLICATE_API_TOKEN": "r8_benchmark", "ADRAG_IMAGE_API_CONCURRENCY": str(args.api_limit),
                       # random weights: no quality bar (as `--offline`), so no ad is ever retried on scores
                       "ADRAG_AD_MIN_SUBJECT_SCORE": "-1", "ADRAG_AD_MIN_SEED_SCORE": "-1",
                       "ADRAG_AD_MIN_BRAND_SCORE": "-1"})
    (root / "dagster_home").mkdir(parents=True)
    (root / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    import dagster as dg
    from replicate_standin import ReplicateStandIn

    from demo_catalog import SUBJECTS, make_demo_catalog
    from orchestration.pools import apply_pool_limits
    from orchestration.runner import RUN_CONFIG, Project, generate_segments, sync_segment_partitions

    project = Project({}, root / "dagster_home")  # every setting from the environment, as the runs' processes read it
    where = project.layout
    make_demo_catalog(where.data_dir, images_per_subject=2)
    where.segments_file.write_text("segments:\n" + "".join(
        f"  - {{name: Segment {n}, description: audience number {n}, subject: {SUBJECTS[n % len(SUBJECTS)]}, "
        f"labels: [{SUBJECTS[n % len(SUBJECTS)]}]}}\n" for n in range(args.segments)))
    with dg.DagsterInstance.get() as instance:
        assert project.defs.resolve_job_def("refresh_catalog").execute_in_process(
            run_config=RUN_CONFIG, instance=instance).success
        keys = sync_segment_partitions(instance, where.segments_file)

    results, notes = {}, {}
    for design in designs:
        for ad in where.campaigns_dir.rglob("ad-*.png"):  # generate again, not reuse
            ad.unlink()
        per_partition = design.startswith("per-partition")
        with dg.DagsterInstance.get() as instance:
            if design == "per-partition":
                instance.event_log_storage.set_concurrency_slots(POOL, args.api_limit)
            elif design == "per-partition-no-pool":
                instance.event_log_storage.delete_concurrency_limit(POOL)
            else:
                apply_pool_limits(instance)
            pool_limit = next((p.limit for p in instance.event_log_storage.get_pool_limits() if p.name == POOL), None)
        with ReplicateStandIn(seconds_before_done=args.seconds) as api:
            os.environ["ADRAG_REPLICATE_BASE_URL"] = api.base_url
            project = Project({}, root / "dagster_home")  # resources read a variable through dg.EnvVar only if set when built
            load_before = os.getloadavg()
            started = time.perf_counter()
            if per_partition:
                failed, notes[design] = run_per_partition(keys, root / "runs" / design, args.max_concurrent_runs,
                                                          args.launch, args.seconds)
            else:
                with dg.DagsterInstance.get() as instance:
                    failed = [key for run in ([[key] for key in keys] if design == "one-at-a-time" else [keys])
                              for key in generate_segments(project, run, instance)]
            seconds = time.perf_counter() - started
            results[design] = (seconds, api.peak_in_flight(), api.paid, len(api.created), pool_limit, failed,
                               load_before, os.getloadavg())

    baseline = results.get("one-at-a-time", (None,))[0]
    print(f"\n{args.segments} segments, stand-in prediction time {args.seconds:.0f} s, image API limit {args.api_limit}, "
          f"{os.cpu_count()} CPUs; per-partition runs: {args.launch}, at most {args.max_concurrent_runs} at once")
    print(f"{'design':<22} {'seconds':>8} {'vs one-at-a-time':>17} {'peak in flight':>15} {'paid':>5} {'creates':>8}"
          f" {'pool limit':>11} {'load 1-min before/after':>24}  failed")
    for design, (seconds, peak, paid, creates, pool_limit, failed, before, after) in results.items():
        ratio = f"{seconds / baseline:.2f}x" if baseline else "-"
        print(f"{design:<22} {seconds:>8.1f} {ratio:>17} {peak:>15} {paid:>5} {creates:>8} {pool_limit or 'none':>11}"
              f" {f'{before[0]:.2f} / {after[0]:.2f}':>24}  {failed or '-'}")
    for design, lines in notes.items():
        print(f"\n{design}:")
        for line in lines:
            print(f"  {line}")


def campaigns_job():
    """The generate_campaigns job, for `dg.reconstructable`: a run's step processes load it again."""
    from orchestration.definitions import defs

    return defs.resolve_job_def("generate_campaigns")


def run_one_partition(key: str, launch: str, result_file: Path) -> None:
    """One partition's run, in this process (what a launched run worker does)."""
    imports_started = time.time()
    import dagster as dg

    from orchestration.definitions import defs
    from orchestration.runner import RUN_CONFIG

    imported = time.time()
    tags = {"dagster/partition": key}
    with dg.DagsterInstance.get() as instance:
        if launch == "execute_job":
            with dg.execute_job(dg.reconstructable(campaigns_job), instance=instance, run_config=RUN_CONFIG,
                                tags=tags) as result:
                run_id, success = result.run_id, result.success
        else:
            result = defs.resolve_job_def("generate_campaigns").execute_in_process(
                run_config=RUN_CONFIG, instance=instance, tags=tags, raise_on_error=False)
            run_id, success = result.run_id, result.success
    result_file.write_text(json.dumps({"run_id": run_id, "success": success, "imports_started": imports_started,
                                       "imported": imported, "done": time.time()}))


def run_per_partition(keys: list[str], folder: Path, max_runs: int, launch: str,
                      prediction_s: float) -> tuple[list[str], list[str]]:
    """A run per partition, each in a new process, at most `max_runs` at a time, all submitted at once.
    Returns the failed partitions and lines on where a run's time went."""
    import dagster as dg

    folder.mkdir(parents=True)
    queued, running, runs = list(keys), {}, {}
    while queued or running:
        while queued and len(running) < max_runs:
            key = queued.pop(0)
            log = open(folder / f"{key}.log", "w")
            command = [sys.executable, str(Path(__file__).resolve()), "--run-partition", key, "--launch", launch,
                       "--result-file", str(folder / f"{key}.json")]
            running[key] = (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), log, time.time())
        for key, (process, log, launched) in list(running.items()):
            if process.poll() is not None:
                log.close()
                runs[key] = {"launched": launched, "exited": time.time(), "rc": process.returncode}
                del running[key]
        time.sleep(0.05)

    failed, phases, blocked = [], {}, 0
    with dg.DagsterInstance.get() as instance:
        for key, run in runs.items():
            result_file = folder / f"{key}.json"
            if run["rc"] != 0 or not result_file.is_file():
                failed.append(key)
                continue
            run.update(json.loads(result_file.read_text()))
            records = instance.get_records_for_run(run["run_id"], limit=100_000).records
            if not any(r.event_log_entry.dagster_event and r.event_log_entry.dagster_event.event_type
                       == dg.DagsterEventType.ASSET_MATERIALIZATION
                       and r.event_log_entry.dagster_event.asset_key == dg.AssetKey("campaign_ad") for r in records):
                failed.append(key)
            # The event Dagster logs when a step must wait for a slot of its pool.
            blocked += any(r.event_log_entry.dagster_event and f"blocked by limit for pool {POOL}"
                           in (r.event_log_entry.dagster_event.message or "") for r in records)
            for name, seconds in run_phases(run, records).items():
                phases.setdefault(name, []).append(seconds)
    lines = [f"runs whose campaign step Dagster held back ('Step blocked by limit for pool {POOL}'): {blocked} of {len(runs)}",
             f"median over {len(runs)} runs (min-max), seconds:"]
    lines += [f"{name:<58} {statistics.median(values):6.1f}  ({min(values):.1f}-{max(values):.1f})"
              for name, values in phases.items()]
    lines.append(f"(the campaign step includes its {prediction_s:.0f} s prediction; logs under {folder})")
    return sorted(failed, key=keys.index), lines


def run_phases(run: dict, records) -> dict[str, float]:
    """Where one run's time went, from its process's clock and its Dagster event log."""
    import dagster as dg

    E = dg.DagsterEventType
    first: dict[tuple, float] = {}
    for record in records:
        event = record.event_log_entry.dagster_event
        if event is not None:
            first.setdefault((event.step_key, event.event_type), record.event_log_entry.timestamp)
    check_step = next((step for step, _ in first if step and step != CAMPAIGN_STEP), None)

    def at(step, kind):
        return first.get((step, kind))

    spans = {
        "process start + imports (dagster, project, torch)": (run["launched"], run["imported"]),
        "imports done -> run start": (run["imported"], at(None, E.RUN_START)),
        "check step: spawn its process": (at(check_step, E.STEP_WORKER_STARTING), at(check_step, E.STEP_START)),
        "check step: run (model load)": (at(check_step, E.STEP_START), at(check_step, E.STEP_SUCCESS)),
        "wait for an image_api slot (+ executor poll)": (at(check_step, E.STEP_SUCCESS), at(CAMPAIGN_STEP, E.STEP_WORKER_STARTING)
                                                        or at(CAMPAIGN_STEP, E.STEP_START)),
        "campaign step: spawn its process": (at(CAMPAIGN_STEP, E.STEP_WORKER_STARTING), at(CAMPAIGN_STEP, E.STEP_START)),
        "campaign step: run (model load, candidates, prediction, ad)": (at(CAMPAIGN_STEP, E.STEP_START),
                                                                       at(CAMPAIGN_STEP, E.STEP_SUCCESS)),
        "campaign step end -> run end": (at(CAMPAIGN_STEP, E.STEP_SUCCESS), at(None, E.RUN_SUCCESS)),
        "run end -> process exit": (at(None, E.RUN_SUCCESS), run["exited"]),
        "launch -> process exit (the whole run)": (run["launched"], run["exited"]),
    }
    return {name: end - start for name, (start, end) in spans.items() if start is not None and end is not None}


if __name__ == "__main__":
    main()
