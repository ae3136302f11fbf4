"""The campaign stage's operations, as plain functions over the data layout.

Any front end calls these: the Dagster step (`assets.py`), the CLI, a review app. Each operation
reads what it needs from the tables, writes its outputs (files, a table row) and logs its MLflow run;
the caller only decides which segments, which subject and which candidate.

- `Campaigns(...)`: what the operations share, each part loaded on first use (the model, the
  segments file, the index once it is checked ready for the model).
- `propose_subject(...)`: a subject for a segment (the segments file's, else the proposer's), never
  one in `exclude`.
- `retrieve_top3(...)`: three diverse photos for a subject (and the segment's reference photo, if any):
  exactly one index query, for a pool the three are chosen from (`Campaigns.diversity`).
- `make_candidates(...)`: subject + top 3 + contact sheet, stored as the segment's candidates; under
  a reviewer's approval (`approval`), the approved subject's, holding the approved photo.
- `make_ad(...)`: the ad from one of the stored candidates and the brand image, stored as a campaign;
  under an approval, from the approved photo (by image id); an approval that no longer holds (see
  `approvals.check_approval`) raises `NeedsReview` and makes nothing.
- `latest_campaign(...)` / `latest_campaigns(...)`: what was last generated for a segment.
- `read_brand_image(...)`: the brand image every ad carries, or `MissingBrandImage` saying where it belongs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterable

from assets_pkg.campaigns import ads
from assets_pkg.campaigns.approvals import (
    APPROVED_SUBJECT_METHOD,
    NEEDS_REVIEW,
    REVIEW_NONE,
    Approval,
    ApprovalCheck,
    NeedsReview,
    check_approval,
)
from assets_pkg.campaigns.contact_sheet import write_contact_sheet
from assets_pkg.campaigns.generators.base import ImageGenerator
from assets_pkg.campaigns.quality import Attempt, QualityBar, attempts_json, score_ad
from assets_pkg.campaigns.retrieval import TOP_K, Candidates, retrieve_candidates
from assets_pkg.campaigns.segments import Segment, SegmentsFile, load_segments, reference_image_path
from assets_pkg.campaigns.store import SUPERSEDED, append_campaign, read_candidates, replace_candidates
from assets_pkg.campaigns.subjects import ClipZeroShotProposer, SubjectProposal, SubjectProposer, choose_subject
from assets_pkg.catalog.mirror import read_image_bytes
from assets_pkg.delta_tables import read_table, sql_literal
from assets_pkg.embeddings.encode import ClipEncoder
from assets_pkg.index.diversity import Diversity
from assets_pkg.index.lance_index import Hit, IndexReader, catalog_labels, open_reader
from assets_pkg.index.queries import BadQuery, QueryImage
from assets_pkg.index.readiness import require_ready
from assets_pkg.layout import CAMPAIGNS_SCHEMA, DataLayout
from assets_pkg.tracking import MlflowStore, RunRecord

EXPERIMENT = "ad-campaigns"
EXPERIMENT_DESCRIPTION = (
    "One run per campaign step and segment: `stage` candidates (subject, query, the top 3 with scores, the "
    "contact sheet) and `stage` ad (seed, prompt, generator and parameters, cost, quality scores, the ad). "
    "Filter on `tags.segment` to see a segment's runs together; `dagster_run_id` names the Dagster run.")


@dataclass
class Campaigns:
    """What the operations share. Each part loads on first use, so making an ad from stored candidates
    loads no model and opens no index. `tags` go on every MLflow run (e.g. the Dagster run id);
    `diversity` is how the top 3 are chosen from the retrieved pool (the `candidate_diversity` resource)."""

    layout: DataLayout
    tracking: MlflowStore
    load_encoder: Callable[[], ClipEncoder]
    tags: dict[str, str] = field(default_factory=dict)
    diversity: Diversity = field(default_factory=Diversity)

    @cached_property
    def segments(self) -> SegmentsFile:
        return load_segments(self.layout.segments_file)

    @cached_property
    def encoder(self) -> ClipEncoder:
        return self.load_encoder()

    @cached_property
    def index(self) -> IndexReader:
        """The model's index; raises `IndexNotReady` (saying what to do) when it cannot serve this model."""
        layout, encoder = self.layout, self.encoder
        require_ready(layout.lance_dir, layout.embeddings_table, layout.mirror_table, encoder.model_key, encoder.dim)
        return open_reader(layout.lance_dir, encoder.model_key)

    @cached_property
    def labels(self) -> list[str]:
        """The catalog's labels: the subjects a proposer may choose from."""
        return catalog_labels(self.index.table)

    @cached_property
    def proposer(self) -> SubjectProposer:
        return ClipZeroShotProposer(self.encoder.encode_texts)

    def segment(self, key: str) -> Segment:
        return self.segments.by_key(key)

    def record(self, segment: Segment, stage: str, review: ApprovalCheck | None = None) -> RunRecord:
        """A run's record; under an approval, tagged with the review it comes from (`review_id`, `approved_by`)."""
        tags = {"segment": segment.key, "stage": stage, **self.tags}
        if review is not None:
            tags["review"] = review.status
            if review.approval is not None:
                tags.update(review_id=review.approval.review_id, approved_by=review.approval.reviewer)
        return RunRecord(experiment=EXPERIMENT, run_name=f"{segment.key}-{stage}", tags=tags,
                         experiment_description=EXPERIMENT_DESCRIPTION, trace_tags={"segment": segment.key,
                                                                                    "stage": stage},
                         trace_inputs={"segment": segment.key, "segment_name": segment.name, "stage": stage})


def propose_subject(campaigns: Campaigns, segment: Segment, exclude: Iterable[str] = ()) -> SubjectProposal:
    """`exclude`: subjects a reviewer rejected for this segment, never proposed again."""
    return choose_subject(segment, campaigns.proposer, campaigns.labels, exclude)


def retrieve_top3(campaigns: Campaigns, segment: Segment, subject: str) -> Candidates:
    """Three diverse photos for `subject` (fused with the segment's reference photo, if it names one)
    within the segment's labels: one index query. A reference photo that is missing or does not decode
    raises an error naming the segment."""
    layout = campaigns.layout
    reference = None
    if (path := reference_image_path(segment, layout.images_dir, layout.data_dir)) is not None:
        try:
            reference = QueryImage.read(path, name=segment.reference_image)
        except BadQuery as err:
            raise ValueError(f"segment {segment.key!r}: reference_image: {err}") from None
    try:
        return retrieve_candidates(campaigns.index, campaigns.encoder, subject, segment.labels, reference,
                                   segment.reference_weight, campaigns.diversity)
    except BadQuery as err:
        raise ValueError(f"segment {segment.key!r}: {err}") from None


@dataclass
class CandidatesMade:
    row: dict  # the segment's campaign_candidates row, as stored
    contact_sheet: Path
    mlflow_run_id: str
    review: ApprovalCheck = field(default_factory=lambda: ApprovalCheck(REVIEW_NONE))


def make_candidates(campaigns: Campaigns, segment_key: str, approval: Approval | None = None) -> CandidatesMade:
    """Subject, top 3 (one index query) and their contact sheet, stored as the segment's current
    candidates, with one MLflow run holding every step.

    `approval`: the segment's approved choice, if any. While it holds, the subject is the approved one
    and the approved photo is among the three (fetched by id from the index when a re-retrieval no
    longer ranks it in the top 3). When it no longer holds, the candidates are the best match as
    without one, and `review` says the segment needs review and why."""
    segment = campaigns.segment(segment_key)
    review = check_approval(segment, approval, campaigns.layout.mirror_table)
    record = campaigns.record(segment, "candidates", review)
    with record.step("propose_subject", segment=segment.key, description=segment.description, **review.fields()) as out:
        if review.approved:
            proposal = SubjectProposal(subject=approval.subject, method=APPROVED_SUBJECT_METHOD, scores={})
        else:
            proposal = propose_subject(campaigns, segment)
        out.update(subject=proposal.subject, method=proposal.method, scores=proposal.scores)
    with record.step("retrieve", subject=proposal.subject, labels=list(segment.labels)) as out:
        found = retrieve_top3(campaigns, segment, proposal.subject)
        if review.approved:
            found = with_approved_photo(campaigns, found, approval)
        out.update(query=found.query, pool=found.pool, hits=[(h.path, round(h.score, 4)) for h in found.hits],
                   near_duplicates=[(d.hit.path, d.duplicate_of.path, round(d.similarity, 4))
                                    for d in found.near_duplicates])
    with record.step("contact_sheet", n=len(found.hits)) as out:
        sheet = write_contact_sheet(campaigns.layout.mirror_table, found.hits, campaigns.layout.campaign_dir(segment.key))
        out.update(path=str(sheet))
    row = {
        "segment_key": segment.key, "segment_name": segment.name, "description": segment.description,
        "subject": proposal.subject, "subject_method": proposal.method, "query": found.query,
        "model_key": campaigns.encoder.model_key,
        "candidates": [{"rank": rank, "image_id": h.image_id, "path": h.path, "score": h.score}
                       for rank, h in enumerate(found.hits)],
        "contact_sheet": str(sheet), "created_at": datetime.now(timezone.utc),
        "near_duplicates": [d.fields() for d in found.near_duplicates],
    }
    replace_candidates(campaigns.layout.candidates_table, row)
    record.params.update(segment=segment.key, segment_name=segment.name, subject=proposal.subject,
                         subject_method=proposal.method, query=found.query, model_key=campaigns.encoder.model_key,
                         reference_image=segment.reference_image or "", **campaigns.diversity.fields(),
                         **review.fields())
    record.texts["candidates.json"] = json.dumps(row["candidates"], indent=2)
    record.texts["near_duplicates.json"] = json.dumps(row["near_duplicates"], indent=2)
    record.files.append(sheet)
    return CandidatesMade(row=row, contact_sheet=sheet, mlflow_run_id=campaigns.tracking.log(record), review=review)


def with_approved_photo(campaigns: Campaigns, found: Candidates, approval: Approval) -> Candidates:
    """`found` holding the approved photo: as retrieved when it is among them, else in place of the
    third (its score for the same query vector, from the index by id: a second query, only in that case;
    kept even when it is a near-duplicate of another candidate: a reviewer chose it)."""
    if any(h.image_id == approval.image_id for h in found.hits):
        return found
    by_id: list[Hit] = campaigns.index.search(found.vector, k=1, where=f"image_id = {sql_literal(approval.image_id)}",
                                              exact=True)
    if not by_id:
        raise LookupError(f"the approved photo {approval.path} ({approval.image_id[:12]}) is not in the index: "
                          "refresh the catalog")
    hits = [*found.hits[:TOP_K - 1], by_id[0]]
    shown = {h.image_id for h in hits}
    dropped = [d for d in found.near_duplicates if d.duplicate_of.image_id in shown and d.hit.image_id not in shown]
    return replace(found, hits=hits, near_duplicates=dropped)


@dataclass(frozen=True)
class QualityPolicy:
    """The bar every ad is scored against, and what a segment may spend trying to reach it."""
    bar: QualityBar = field(default_factory=QualityBar)
    max_cost_usd: float | None = None  # per segment and step; None: the cost of one generation


def make_ad(campaigns: Campaigns, segment_key: str, generator: ImageGenerator, brand_image: bytes,
            rank: int = 0, approval: Approval | None = None, quality: QualityPolicy | None = None) -> ads.AdResult:
    """The ad from the segment's stored candidate `rank` (0 = best match) and the brand image: reused
    when its inputs are unchanged, else generated (and paid), then scored by CLIP (`quality`).

    An ad below the bar falls back to the next candidate, while what the segment has spent in this
    call plus one more generation stays within the cost cap (default: one generation's cost, so a paid
    ad is never followed by a paid retry; free and reused ads always may). The first ad that passes is
    the segment's ad; when none does, the first one made stays, flagged. Every attempt is a campaigns
    row (those not chosen with status `superseded`) with its MLflow run; the chosen row's `quality`
    says what was tried, scored and paid.

    `approval`: the segment's approved choice, if any; it overrides `rank` (the seed is the approved
    photo, found by image id among the stored candidates) and is never swapped for another photo. An
    approval that no longer holds raises `NeedsReview`; nothing is generated or stored."""
    segment = campaigns.segment(segment_key)
    review = check_approval(segment, approval, campaigns.layout.mirror_table)
    if review.status == NEEDS_REVIEW:
        raise NeedsReview(review.reason)
    stored = read_candidates(campaigns.layout.candidates_table, segment.key)
    if review.approved:
        rank = approved_position(stored, approval)
    quality = quality or QualityPolicy()
    price = generator.cost_per_image_usd
    cap = price if quality.max_cost_usd is None else quality.max_cost_usd
    ranks = [rank] if review.approved else list(range(rank, len(stored["candidates"])))
    made: list[tuple[ads.AdResult, Attempt, RunRecord]] = []
    spent = 0.0
    for position in ranks:
        if made and spent + price > cap + 1e-9:
            break
        record = campaigns.record(segment, "ad", review)
        record.params.update(review.fields())
        ad = ads.make_ad(segment, campaigns.segments.brand, brand_image, stored, position, generator,
                         campaigns.layout.mirror_table, campaigns.layout.campaign_dir(segment.key), record)
        ad.review = review
        spent += ad.row["cost_usd"]
        attempt = _judged(campaigns, ad, stored["subject"], brand_image, quality.bar, position)
        if attempt.scores is not None:
            record.metrics.update({f"quality_{name}": score for name, score in attempt.scores.rounded().items()})
        record.params.update(quality_passed=attempt.passed, quality_note=attempt.note)
        made.append((ad, attempt, record))
        if ad.failed or attempt.passed:
            break
    chosen = next((ad for ad, attempt, _ in made if attempt.passed), made[0][0])
    attempts = [attempt for _, attempt, _ in made]
    chosen.attempts, chosen.spent_usd = attempts, spent
    summary = attempts_json(attempts, quality.bar, chosen.row["seed_index"] + 1, cap)
    for ad, attempt, record in made:
        if ad is chosen:
            ad.row["quality"] = summary
            record.texts["quality.json"] = summary
        else:
            ad.row["status"] = SUPERSEDED
            ad.row["quality"] = json.dumps(attempt.as_dict(), sort_keys=True)
        ad.row["mlflow_run_id"] = campaigns.tracking.log(record)
    for ad in sorted((ad for ad, _, _ in made), key=lambda ad: ad is chosen):  # the chosen row last
        append_campaign(campaigns.layout.campaigns_table, ad.row)
    return chosen


def _judged(campaigns: Campaigns, ad: ads.AdResult, subject: str, brand_image: bytes, bar: QualityBar,
            position: int) -> Attempt:
    rank = position + 1
    if ad.failed:
        return Attempt(rank, None, ad.row["cost_usd"], ad.reused, None, False, f"generation failed: {ad.row['error']}")
    seed_id = ad.row["seed_image_id"]
    seed = read_image_bytes(campaigns.layout.mirror_table, [seed_id])[seed_id]
    try:
        scores = score_ad(campaigns.encoder, ad.path.read_bytes(), seed, brand_image, subject)
    except ValueError as err:
        return Attempt(rank, str(ad.path), ad.row["cost_usd"], ad.reused, None, False, str(err))
    shortfalls = scores.shortfalls(bar)
    return Attempt(rank, str(ad.path), ad.row["cost_usd"], ad.reused, scores, not shortfalls,
                   "; ".join(shortfalls) or "passed")


def approved_position(stored: dict, approval: Approval) -> int:
    """Where the approved photo is among the stored candidates of the approved subject."""
    positions = [n for n, c in enumerate(stored["candidates"]) if c["image_id"] == approval.image_id]
    if stored["subject"] != approval.subject or not positions:
        raise LookupError(f"the stored candidates of segment {stored['segment_key']!r} are not those of the approved "
                          f"choice (review {approval.review_id}): materialize campaign_candidates for it first")
    return positions[0]


class MissingBrandImage(FileNotFoundError):
    """No brand image where the layout expects it: not transient, so no retry helps."""


def read_brand_image(layout: DataLayout) -> bytes:
    """The brand image's bytes; `MissingBrandImage` (one line, saying where it belongs) when it is not a file there."""
    try:
        return layout.brand_image.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise MissingBrandImage(f"no brand image at {layout.brand_image}: put the brand's image there (a PNG or "
                                "JPEG, e.g. its logo); every ad carries it") from None


def latest_campaigns(layout: DataLayout, segment_key: str | None = None) -> dict[str, dict]:
    """Each segment's newest campaigns row (succeeded or failed; never a superseded attempt), by segment
    key; one segment's only when `segment_key` is given."""
    where = f"(status IS NULL OR status <> {sql_literal(SUPERSEDED)})"
    if segment_key is not None:
        where += f" AND segment_key = {sql_literal(segment_key)}"
    rows = read_table(layout.campaigns_table, CAMPAIGNS_SCHEMA, where=where).sort_by("created_at").to_pylist()
    return {row["segment_key"]: row for row in rows}


def latest_campaign(layout: DataLayout, segment_key: str) -> dict | None:
    return latest_campaigns(layout, segment_key).get(segment_key)
