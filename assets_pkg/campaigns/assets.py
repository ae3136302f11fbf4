"""Campaign assets, one partition per audience segment: candidates (subject + top-3), then the ad.

Both assets are made by one step (a multi-asset that can run either alone). Why: a run may hold
many segments (a backfill over partitions runs as one run, single-run backfill policy), so a batch
of 20 pays for one process, one model load and one MLflow connection instead of 20, and its
generations wait on the image API together, up to the API's concurrency limit. A segment whose
candidates fail must not stop the other segments' ads, which two steps (the second skipped when the
first fails) could not give. Each segment still gets its own materializations, metadata and
pictures; a failed segment fails alone, the others are recorded as materialized, and it can be
re-run on its own.

Review: each segment's latest approval (from the review log) is read once per run and passed to the
operations. While it holds, the candidates are the approved subject's and the ad is made from the
approved photo; when the segment changed since, or the photo left the catalog, the candidates say
`review: needs_review` with the reason and the segment's ad fails alone ("needs review: ...") rather
than another photo being chosen. This file is the one place that wires the review stage (which
imports this stage's operations) to the campaign step; no campaign domain module imports it.
"""

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import quote

import dagster as dg
from pydantic import Field

from assets_pkg.campaigns.approvals import Approval, NeedsReview
from assets_pkg.campaigns.operations import (
    Campaigns,
    MissingBrandImage,
    QualityPolicy,
    make_ad,
    make_candidates,
    read_brand_image,
)
from assets_pkg.campaigns.partitions import segment_partitions
from assets_pkg.campaigns.previews import markdown_picture
from assets_pkg.campaigns.quality import Attempt
from assets_pkg.campaigns.resources import CandidateDiversity, ImageGeneratorResource
from assets_pkg.catalog.assets import image_mirror
from assets_pkg.embeddings.resources import ClipModel
from assets_pkg.index.assets import image_index
from assets_pkg.index.readiness import IndexNotReady
from assets_pkg.layout import DataLayout
from assets_pkg.resources import DataStore, MlflowTracking
from assets_pkg.review.policy import approved_choice
from assets_pkg.tracking import MlflowStore

# A generation that failed because the service was busy, down or slow (after the generator's own bounded
# retries) runs again later; at most 2 more paid attempts per segment and run.
GENERATION_RETRY = dg.RetryPolicy(max_retries=2, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


class AdConfig(dg.Config):
    rank: int = Field(1, ge=1, le=3, description=(
        "Which of the segment's top-3 candidates seeds the ad: 1 = the best match, as in the contact sheet. "
        "A segment with a reviewer's approval ignores it: its ad is made from the approved photo."))


CANDIDATES = dg.AssetKey("campaign_candidates")
AD = dg.AssetKey("campaign_ad")


@dg.multi_asset(
    name="segment_campaign",
    specs=[
        dg.AssetSpec(CANDIDATES, group_name="campaigns", deps=[image_index, image_mirror],
                     kinds={"deltalake", "lancedb"}, skippable=True,
                     description="For one segment: the subject (from the segments file or CLIP zero-shot over "
                                 "catalog labels), the retrieval query (fused with the segment's reference "
                                 "photo, if any), three diverse photos with scores (maximal marginal relevance "
                                 "over a larger pool, near-duplicates dropped and listed), and a contact sheet."),
        dg.AssetSpec(AD, group_name="campaigns", deps=[CANDIDATES], kinds={"replicate", "mlflow"}, skippable=True,
                     description="For one segment: the ad made from the chosen seed photo and the brand image "
                                 "(Replicate FLUX Kontext, or the local compositor without a token), reused when "
                                 "its inputs are unchanged."),
    ],
    partitions_def=segment_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    can_subset=True,
    # One campaign step at a time on an instance that limits this pool (`adrag ui` sets 1): its worker
    # threads (ADRAG_IMAGE_API_CONCURRENCY) are then all the generations in flight.
    pool="image_api",
    retry_policy=GENERATION_RETRY,
)
def segment_campaign(context: dg.AssetExecutionContext, config: AdConfig, data_store: DataStore, clip: ClipModel,
                     image_generator: ImageGeneratorResource, mlflow_tracking: MlflowTracking,
                     candidate_diversity: CandidateDiversity):
    layout = data_store.layout
    store = mlflow_tracking.store(layout)
    # The run's own adrag/ tags (review_id, reviewer, trigger) go on its MLflow runs too.
    run_tags = {name.removeprefix("adrag/"): value for name, value in context.run.tags.items()
                if name.startswith("adrag/")}
    campaigns = Campaigns(layout, store, clip.encoder, tags={**mlflow_tracking.dagster_run_tags(context.run.run_id), **run_tags},
                          diversity=candidate_diversity.diversity)
    approval_of = Approvals(layout)
    steps: dict[dg.AssetKey, Callable[[str], dict]] = {}
    if CANDIDATES in context.selected_asset_keys:
        try:  # also when the campaign assets are materialized without the job's readiness check
            campaigns.index
        except IndexNotReady as err:  # not transient: a retry finds the same index
            raise dg.Failure(str(err), allow_retries=False) from None
        steps[CANDIDATES] = one_at_a_time(lambda key: candidates_metadata(campaigns, key, approval_of(key)))
    if AD in context.selected_asset_keys:
        try:
            brand_image = read_brand_image(layout)
        except MissingBrandImage as err:  # not transient: fail at once, every segment, no retries
            raise dg.Failure(str(err), allow_retries=False) from None
        generator = image_generator.generator()
        quality = image_generator.quality_policy()
        steps[AD] = lambda key: ad_metadata(campaigns, key, generator, brand_image, config.rank, approval_of(key),
                                            quality)
    # Each segment runs its steps in order; segments overlap, so one's candidates (CPU work, one at a
    # time) are made while others' generations wait on the image API, as many at once as it allows.
    outcomes = run_segments(context, context.partition_keys, steps,
                            max_workers=image_generator.max_concurrent if AD in steps else 1)
    yield from finish(context, outcomes)


def one_at_a_time(work: Callable[[str], dict]) -> Callable[[str], dict]:
    """`work` one call at a time: CPU-bound steps gain nothing from threads, and their table writes stay apart."""
    lock = threading.Lock()

    def serialised(key: str) -> dict:
        with lock:
            return work(key)

    return serialised


class Approvals:
    """Each segment's latest approval, read once per run, so its candidates and its ad use the same one."""

    def __init__(self, layout: DataLayout):
        self.layout, self.read = layout, {}

    def __call__(self, key: str) -> Approval | None:
        if key not in self.read:  # one thread per segment: no two reads of one key race
            self.read[key] = approved_choice(self.layout, key)
        return self.read[key]


def candidates_metadata(campaigns: Campaigns, key: str, approval: Approval | None) -> dict:
    made = make_candidates(campaigns, key, approval)
    row, segment = made.row, campaigns.segment(key)
    return {
        "segment": segment.name,
        "description": segment.description,
        "subject": row["subject"],
        "subject_method": row["subject_method"],
        "query": row["query"],
        "candidates": dg.MetadataValue.md("\n".join(
            f"{c['rank']}. `{c['path']}` score {c['score']:.3f}" for c in row["candidates"])),
        "near_duplicates_dropped": dg.MetadataValue.md(near_duplicates_markdown(row["near_duplicates"])),
        "near_duplicate_count": len(row["near_duplicates"]),
        **campaigns.diversity.fields(),
        "contact_sheet": dg.MetadataValue.md(markdown_picture(made.contact_sheet, f"{segment.name}: top 3")),
        "contact_sheet_file": dg.MetadataValue.path(str(made.contact_sheet)),
        **made.review.fields(),
        "ad_page": asset_page_link(AD, key),
        **mlflow_metadata(campaigns.tracking, made.mlflow_run_id),
    }


def near_duplicates_markdown(dropped: list[dict]) -> str:
    """What took no place for being near-identical to a chosen photo: path, score, the photo, the cosine."""
    if not dropped:
        return "none"
    return "\n".join(f"- `{d['path']}` score {d['score']:.3f}: near-duplicate of `{d['duplicate_of_path']}` "
                     f"(cosine {d['similarity']:.4f})" for d in dropped)


def ad_metadata(campaigns: Campaigns, key: str, generator, brand_image: bytes, rank: int,
                approval: Approval | None, quality: QualityPolicy) -> dict:
    """`rank`: 1-3 as users see them; an approval overrides it."""
    try:
        ad = make_ad(campaigns, key, generator, brand_image, rank - 1, approval, quality)
    except NeedsReview as err:
        raise SegmentFailed(f"segment {key!r} needs review: {err}") from None
    row = ad.row
    if ad.failed:
        raise SegmentFailed(f"generation failed for segment {key!r}: {row['error']}", transient=ad.transient)
    return {
        "segment": row["segment_name"],
        "ad": dg.MetadataValue.md(markdown_picture(ad.path, f"{row['segment_name']}: ad")),
        "ad_file": dg.MetadataValue.path(str(ad.path)),
        "subject": row["subject"],
        "seed": row["seed_path"],
        "seed_image_id": row["seed_image_id"],
        "seed_rank": row["seed_index"] + 1,
        "generator": row["generator_id"],
        "prompt": row["prompt"],
        "reused": ad.reused,
        "cost_usd": round(ad.spent_usd, 4),  # every attempt of this step, chosen or not
        **quality_metadata(ad.attempts, row["seed_index"] + 1),
        "latency_s": round(row["latency_s"], 3),
        **ad.review.fields(),
        "candidates_page": asset_page_link(CANDIDATES, key),
        **mlflow_metadata(campaigns.tracking, row["mlflow_run_id"]),
    }


def quality_metadata(attempts: list[Attempt], chosen_rank: int) -> dict:
    """The chosen ad's CLIP scores (floats, plotted per partition) and a table of every attempt."""
    chosen = next(a for a in attempts if a.rank == chosen_rank)
    out: dict = {"quality_passed": chosen.passed, "quality": chosen.note, "attempts": len(attempts)}
    if chosen.scores is not None:
        out.update({f"quality_{name}": score for name, score in chosen.scores.rounded().items()})
    lines = ["| rank | subject | seed | brand | cost (USD) | reused | verdict |", "|---|---|---|---|---|---|---|"]
    for a in attempts:
        s = a.scores.rounded() if a.scores else {"subject": "-", "seed": "-", "brand": "-"}
        lines.append(f"| {a.rank} | {s['subject']} | {s['seed']} | {s['brand']} | {a.cost_usd:.2f} | {a.reused} | "
                     f"{a.note} |")
    out["quality_attempts"] = dg.MetadataValue.md("\n".join(lines))
    return out


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


def asset_page_link(asset: dg.AssetKey, partition: str) -> dg.MetadataValue:
    """The segment's page of the other campaign asset in the Dagster UI: relative, so it holds on any host and port."""
    return dg.MetadataValue.url(f"/assets/{'/'.join(asset.path)}?view=events&partition={quote(partition)}")


def mlflow_metadata(store: MlflowStore, run_id: str) -> dict:
    url = store.run_url(run_id)
    return {"mlflow_run_id": run_id, **({"mlflow_run": dg.MetadataValue.url(url)} if url else {})}
