"""The segments sensor: keeps the segment partitions equal to the segments file."""

import dagster as dg

from assets_pkg.campaigns.partitions import segment_partitions
from assets_pkg.campaigns.segments import load_segments
from assets_pkg.resources import DataStore
from orchestration.jobs import generate_campaigns


@dg.sensor(
    job=generate_campaigns,
    minimum_interval_seconds=60,
    description="Adds partitions for new segments (and requests their campaign runs), removes deleted ones.",
)
def segments_sensor(context: dg.SensorEvaluationContext, data_store: DataStore) -> dg.SensorResult:
    parsed = load_segments(data_store.layout.segments_file)
    for error in parsed.errors:
        context.log.warning(f"segments file: {error}")
    wanted = [s.key for s in parsed.segments]
    current = set(context.instance.get_dynamic_partitions(segment_partitions.name))
    added = [key for key in wanted if key not in current]
    removed = sorted(current - set(wanted))
    requests = []
    if added:
        requests.append(segment_partitions.build_add_request(added))
    if removed:
        requests.append(segment_partitions.build_delete_request(removed))
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=key, run_key=f"new-segment-{key}") for key in added],
        dynamic_partitions_requests=requests,
        skip_reason=None if requests else "segments file and partitions agree",
    )
