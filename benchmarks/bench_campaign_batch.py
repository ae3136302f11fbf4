"""Campaign batch: 20 segments against a local Replicate stand-in that takes 10 s per prediction.

Measures, in one run, the batch generated one segment at a time (a run per segment, one after
the other: the baseline) and as one batch (one run over every partition, as a backfill from the UI
or `adrag run` makes it), and reports the ratio, the most predictions in flight at once (must stay
within the image API limit) and the paid predictions (one per segment: retries never pay twice).

    .venv/bin/python benchmarks/bench_campaign_batch.py [--segments 20] [--seconds 10] [--api-limit 4]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0, help="how long each prediction takes")
    parser.add_argument("--api-limit", type=int, default=4, help="generations in flight at once (ADRAG_IMAGE_API_CONCURRENCY; the project default is 4)")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="adrag-batch-"))
    os.environ.update({"ADRAG_DATA_DIR": str(root / "data"), "DAGSTER_HOME": str(root / "dagster_home"),
                       "ADRAG_CLIP_MODEL": "adrag-tiny-clip", "ADRAG_CLIP_WEIGHTS": "random",
                       "REPLICATE_API_TOKEN": "r8_benchmark", "ADRAG_IMAGE_API_CONCURRENCY": str(args.api_limit)})
    (root / "dagster_home").mkdir(parents=True)
    (root / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    from orchestration.settings import apply_defaults

    apply_defaults()

    import dagster as dg
    from replicate_standin import ReplicateStandIn

    from orchestration.demo_catalog import SUBJECTS, make_demo_catalog
    from orchestration.runner import RUN_CONFIG, defs, generate_segments, layout, sync_segment_partitions

    where = layout()
    make_demo_catalog(where.data_dir, images_per_subject=2)
    where.segments_file.write_text("segments:\n" + "".join(
        f"  - {{name: Segment {n}, description: audience number {n}, subject: {SUBJECTS[n % len(SUBJECTS)]}, "
        f"labels: [{SUBJECTS[n % len(SUBJECTS)]}]}}\n" for n in range(args.segments)))
    with dg.DagsterInstance.get() as instance:
        assert defs.resolve_job_def("refresh_catalog").execute_in_process(run_config=RUN_CONFIG, instance=instance).success
        keys = sync_segment_partitions(instance, where.segments_file)

    results = {}
    batches = {"one segment at a time": [[key] for key in keys], "one batch": [keys]}
    for label, runs in batches.items():
        for ad in where.campaigns_dir.rglob("ad-*.png"):  # generate again, not reuse
            ad.unlink()
        with ReplicateStandIn(seconds_before_done=args.seconds) as api:
            os.environ["ADRAG_REPLICATE_BASE_URL"] = api.base_url
            started = time.perf_counter()
            failed = [key for run in runs for key in generate_segments(run)]
            seconds = time.perf_counter() - started
            results[label] = (seconds, api.peak_in_flight(), api.paid, len(api.created), failed)

    baseline = results["one segment at a time"][0]
    print(f"\n{args.segments} segments, stand-in prediction time {args.seconds:.0f} s, image API limit {args.api_limit}")
    print(f"{'how':<24} {'seconds':>8} {'vs one-at-a-time':>17} {'peak in flight':>15} {'paid':>5} {'creates':>8} failed")
    for label, (seconds, peak, paid, creates, failed) in results.items():
        print(f"{label:<24} {seconds:>8.1f} {seconds / baseline:>16.2f}x {peak:>15} {paid:>5} {creates:>8} {failed or '-'}")


if __name__ == "__main__":
    main()
