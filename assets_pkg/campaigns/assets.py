"""Campaign assets, one partition per audience segment: candidates (subject + top-3), then the ad.

Both assets are made by one step (a multi-asset that can run either alone). Why: a run may hold
many segments (a backfill over partitions runs as one run, single-run backfill policy), so a batch
of 20 pays for one process, one model load and one MLflow connection instead of 20, and its
generations wait on the image API together, up to the API's concurrency limit. A segment whose
candidates fail must not stop the other segments' ads, which two steps (the second skipped when the
first fails) could not give. Each segment still gets its own materializations, metadata and
pictures; a failed segment fails alone, the others are recorded as materialized, and it can be
re-run on its own.
"""

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import dagster as dg

from assets_pkg.campaigns.ads import make_ad
from assets_pkg.campaigns.candidates import build_candidates
from assets_pkg.campaigns.partitions import segment_partitions
from assets_pkg.campaigns.previews import markdown_picture
from assets_pkg.campaigns.resources import ImageGeneratorResource
from assets_pkg.campaigns.segments import load_segments
from assets_pkg.campaigns.store import append_campaign, read_candidates, replace_candidates
from assets_pkg.campaigns.subjects import ClipZeroShotProposer
from assets_pkg.catalog.assets import image_mirror
from assets_pkg.embeddings.resources import ClipModel
from assets_pkg.index.assets import image_index
from assets_pkg.index.lance_index import catalog_labels, open_reader
from assets_pkg.index.readiness import IndexNotReady, require_ready
from assets_pkg.resources import DataStore, MlflowTracking
from assets_pkg.slots import slot
from assets_pkg.tracking import MlflowStore, RunRecord

EXPERIMENT = "ad-campaigns"


# A generation that failed because the service was busy, down or slow (after the generator's own bounded
# retries) runs again later; at most 2 more paid attempts per segment and run.
GENERATION_RETRY = dg.RetryPolicy(max_retries=2, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


class AdConfig(dg.Config):
    seed_index: int = 0  # which of the top-3 candidates seeds the ad (0 = best match)


CANDIDATES = dg.AssetKey("campaign_candidates")
AD = dg.AssetKey("campaign_ad")


@dg.multi_asset(
    name="segment_campaign",
    specs=[
        dg.AssetSpec(CANDIDATES, group_name="campaigns", deps=[image_index, image_mirror],
                     kinds={"deltalake", "lancedb"}, skippable=True,
                     description="For one segment: the subject (from the segments file or CLIP zero-shot over "
                                 "catalog labels), the retrieval query, the top-3 photos with scores, and a "
                                 "contact sheet of them."),
        dg.AssetSpec(AD, group_name="campaigns", deps=[CANDIDATES], kinds={"replicate", "mlflow"}, skippable=True,
                     description="For one segment: the ad made from the chosen seed photo and the brand image "
                                 "(Replicate FLUX Kontext, or the local compositor without a token), reused when "
                                 "its inputs are unchanged."),
    ],
    partitions_def=segment_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    can_subset=True,
    pool="image_api",
    retry_policy=GENERATION_RETRY,
)
def segment_campaign(context: dg.AssetExecutionContext, config: AdConfig, data_store: DataStore, clip: ClipModel,
                     image_generator: ImageGeneratorResource, mlflow_tracking: MlflowTracking):
    layout = data_store.layout
    segments = load_segments(layout.segments_file)
    store = mlflow_tracking.store(layout)
    steps: dict[dg.AssetKey, Callable[[str], dict]] = {}
    if CANDIDATES in context.selected_asset_keys:
        steps[CANDIDATES] = serialised(candidates_maker(context, segments, layout, clip, store))
    if AD in context.selected_asset_keys:
        steps[AD] = ad_maker(context, config, segments, layout, image_generator, store)
    # Each segment runs its steps in order; segments overlap, so one's candidates (CPU work, one at a
    # time) are made while others' generations wait on the image API, as many at once as it allows
    # (the slots enforce that limit across every run on this machine; more threads would only queue).
    outcomes = run_segments(context, context.partition_keys, steps,
                            max_workers=image_generator.max_concurrent if AD in steps else 1)
    yield from finish(context, outcomes)


def serialised(work: Callable[[str], dict]) -> Callable[[str], dict]:
    """`work` one call at a time: CPU-bound steps gain nothing from threads, and their table writes stay apart."""
    lock = threading.Lock()

    def one_at_a_time(key: str) -> dict:
        with lock:
            return work(key)

    return one_at_a_time


def candidates_maker(context: dg.AssetExecutionContext, segments, layout, clip: ClipModel,
                     store: MlflowStore) -> Callable[[str], dict]:
    encoder = clip.encoder()
    try:  # also when the campaign assets are materialized without the job's readiness check
        require_ready(layout.lance_dir, layout.embeddings_table, layout.mirror_table, encoder.model_key, encoder.dim)
    except IndexNotReady as err:
        raise dg.Failure(str(err)) from None
    index = open_reader(layout.lance_dir, encoder.model_key)
    labels = catalog_labels(index.table)
    proposer = ClipZeroShotProposer(encoder.encode_texts)

    def candidates_for(key: str) -> dict:
        segment = segments.by_key(key)
        record = RunRecord(experiment=EXPERIMENT, run_name=f"{segment.key}-candidates",
                           tags={"segment": segment.key, "stage": "candidates", "dagster_run_id": context.run.run_id})
        result = build_candidates(segment, index, encoder.model_key, encoder.encode_texts, proposer, labels,
                                  layout.mirror_table, layout.campaign_dir(segment.key), record)
        replace_candidates(layout.candidates_table, result.row)
        record.params.update(segment=segment.key, segment_name=segment.name, subject=result.proposal.subject,
                             subject_method=result.proposal.method, query=result.row["query"],
                             model_key=encoder.model_key)
        record.texts["candidates.json"] = json.dumps(result.row["candidates"], indent=2)
        record.files.append(result.contact_sheet_path)
        run_id = store.log(record)
        return {
            "segment": segment.name,
            "description": segment.description,
            "subject": result.proposal.subject,
            "subject_method": result.proposal.method,
            "query": result.row["query"],
            "candidates": dg.MetadataValue.md("\n".join(
                f"{c['rank']}. `{c['path']}` score {c['score']:.3f}" for c in result.row["candidates"])),
            "contact_sheet": dg.MetadataValue.md(markdown_picture(result.contact_sheet_path,
                                                                  f"{segment.name}: top 3")),
            "contact_sheet_file": dg.MetadataValue.path(str(result.contact_sheet_path)),
            **mlflow_metadata(store, run_id),
        }

    return candidates_for


def ad_maker(context: dg.AssetExecutionContext, config: AdConfig, segments, layout,
             image_generator: ImageGeneratorResource, store: MlflowStore) -> Callable[[str], dict]:
    brand_image = layout.brand_image.read_bytes()

    def ad_for(key: str) -> dict:
        segment = segments.by_key(key)
        candidates = read_candidates(layout.candidates_table, segment.key)
        record = RunRecord(experiment=EXPERIMENT, run_name=f"{segment.key}-ad",
                           tags={"segment": segment.key, "stage": "ad", "dagster_run_id": context.run.run_id})
        ad = make_ad(segment, segments.brand, brand_image, candidates, config.seed_index,
                     image_generator.generator(), layout.mirror_table, layout.campaign_dir(segment.key), record,
                     api_slot=lambda: slot(layout.slots_dir, "image_api", image_generator.max_concurrent))
        row = ad.row
        record.params.update(
            segment=segment.key, segment_name=segment.name, subject=row["subject"], query=candidates["query"],
            seed_index=row["seed_index"], seed_path=row["seed_path"], generator=row["generator_id"],
            generator_parameters=row["parameters"], output_key=row["output_key"], prompt=row["prompt"])
        record.metrics.update(latency_s=row["latency_s"], cost_usd=row["cost_usd"], reused=float(row["reused"]))
        record.texts["prompt.txt"] = row["prompt"]
        record.texts["candidates.json"] = json.dumps(candidates["candidates"], indent=2, default=str)
        record.files.extend([p for p in (Path(candidates["contact_sheet"]), ad.path) if p and p.is_file()])
        if ad.failed:
            record.status = "FAILED"
            record.texts["error.txt"] = row["error"]
        row["mlflow_run_id"] = store.log(record)
        append_campaign(layout.campaigns_table, row)
        if ad.failed:
            raise SegmentFailed(f"generation failed for segment {segment.key!r}: {row['error']}",
                                transient=ad.transient)
        return {
            "segment": segment.name,
            "ad": dg.MetadataValue.md(markdown_picture(ad.path, f"{segment.name}: ad")),
            "ad_file": dg.MetadataValue.path(str(ad.path)),
            "subject": row["subject"],
            "seed": row["seed_path"],
            "generator": row["generator_id"],
            "prompt": row["prompt"],
            "reused": ad.reused,
            "cost_usd": row["cost_usd"],
            "latency_s": round(row["latency_s"], 3),
            **mlflow_metadata(store, row["mlflow_run_id"]),
        }

    return ad_for


class SegmentFailed(Exception):
    def __init__(self, message: str, transient: bool = False):
        super().__init__(message)
        self.transient = transient  # worth the step's retry policy (a busy or slow service)


@dataclass
class Outcomes:
    done: dict[str, dict] = field(default_factory=dict)  # partition key -> its materialization's metadata
    failed: dict[str, Exception] = field(default_factory=dict)


def run_segments(context: dg.AssetExecutionContext, keys: list[str], steps: dict[dg.AssetKey, Callable[[str], dict]],
                 max_workers: int) -> dict[dg.AssetKey, Outcomes]:
    """Every segment through `steps` (asset -> `work(partition key) -> metadata`, in order); a step's
    exception is that segment's failure alone, and skips the segment's later steps."""
    outcomes = {asset: Outcomes() for asset in steps}

    def one_segment(key: str) -> None:
        for asset, work in steps.items():
            try:
                outcomes[asset].done[key] = work(key)
            except Exception as err:  # one segment's failure must not lose the others' work
                outcomes[asset].failed[key] = err
                context.log.error(f"{asset.to_user_string()} for segment {key!r} failed: {err}")
                return

    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(keys)))) as pool:
        list(pool.map(one_segment, keys))
    return outcomes


def finish(context: dg.AssetExecutionContext, outcomes: dict[dg.AssetKey, Outcomes]):
    """Each segment's materializations with their own metadata; or, when some failed, the others' and a failure.

    A failed step records no materialization, so the segments that succeeded are then logged as explicit
    materializations before the step fails naming every failed segment with its reason.
    """
    failed = {key: err for outcome in outcomes.values() for key, err in outcome.failed.items()}
    if not failed:
        for asset, outcome in outcomes.items():
            for key, metadata in outcome.done.items():
                context.add_asset_metadata(metadata, asset_key=asset, partition_key=key)
            yield dg.MaterializeResult(asset_key=asset)
        return
    for asset, outcome in outcomes.items():
        for key, metadata in outcome.done.items():
            context.log_event(dg.AssetMaterialization(asset_key=asset, partition=key, metadata=metadata))
    reasons = "; ".join(str(err) for _, err in sorted(failed.items()))
    # Retrying re-runs the step; segments already done then reuse their stored ads and pay nothing.
    retry = all(getattr(err, "transient", False) for err in failed.values())
    raise dg.Failure(description=f"{len(failed)} of {len(context.partition_keys)} segment(s) failed: {reasons}",
                     metadata={"failed_segments": sorted(failed)}, allow_retries=retry)


def mlflow_metadata(store: MlflowStore, run_id: str) -> dict:
    url = store.run_url(run_id)
    return {"mlflow_run_id": run_id, **({"mlflow_run": dg.MetadataValue.url(url)} if url else {})}
