"""Where a segment's review stands, derived from its events alone (so it survives restarts and every
reviewer of the segment sees the same state).

Rules of the derivation (events in seq order, from the segment's last `review_started`):
- a proposal makes its subject current and waits for a subject answer;
- retrieved candidates show the rank the event names (1) and wait for a candidate answer;
- a rejected candidate shows the next rank not yet rejected; none left shows nothing;
- a rejected subject joins `rejected_subjects` and leaves no current subject until the next proposal
  (with none, the review waits for a subject the reviewer types);
- an approval closes the review; `approved` keeps the choice.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from assets_pkg.review import events as ev
from assets_pkg.review.events import Candidate

IDLE = "idle"  # no review open: none yet, or the last one was approved
AWAITING_SUBJECT = "awaiting_subject"  # a subject is proposed: yes, no, or another?
AWAITING_CANDIDATE = "awaiting_candidate"  # a candidate is shown: approve it, or the next?
AWAITING_TYPED_SUBJECT = "awaiting_typed_subject"  # nothing left to propose: the reviewer names a subject
APPROVED = "approved"


@dataclass(frozen=True)
class ApprovedChoice:
    review_id: str
    segment_key: str
    subject: str
    rank: int  # 1-3
    image_id: str
    path: str
    score: float
    reviewer: str
    at: datetime
    segment_digest: str | None = None  # the segment's name and description when approved


@dataclass(frozen=True)
class ReviewState:
    segment_key: str
    review_id: str | None = None
    phase: str = IDLE
    subject: str | None = None
    subject_method: str | None = None
    candidates: tuple[Candidate, ...] = ()
    shown_rank: int | None = None
    rejected_ranks: tuple[int, ...] = ()  # of the current subject
    rejected_subjects: tuple[str, ...] = ()  # in this review
    approved: ApprovedChoice | None = None
    last_seq: int = 0

    @property
    def shown(self) -> Candidate | None:
        return next((c for c in self.candidates if c.rank == self.shown_rank), None)

    def candidate(self, rank: int) -> Candidate | None:
        return next((c for c in self.candidates if c.rank == rank), None)

    @property
    def is_open(self) -> bool:
        return self.phase not in (IDLE, APPROVED)


def derive_state(segment_key: str, events: list[dict]) -> ReviewState:
    """The state after `events` (one segment's, in seq order)."""
    state = ReviewState(segment_key)
    for e in events:
        state = _apply(state, e)
    return replace(state, last_seq=events[-1]["seq"] if events else 0)


def _apply(state: ReviewState, e: dict) -> ReviewState:
    kind = e["event"]
    if kind == ev.REVIEW_STARTED:
        return ReviewState(state.segment_key, review_id=e["review_id"], phase=AWAITING_TYPED_SUBJECT)
    if kind == ev.SUBJECT_PROPOSED:
        return replace(state, phase=AWAITING_SUBJECT, subject=e["subject"], subject_method=e["note"],
                       candidates=(), shown_rank=None, rejected_ranks=())
    if kind == ev.CANDIDATES_RETRIEVED:
        return replace(state, phase=AWAITING_CANDIDATE, subject=e["subject"],
                       candidates=ev.parse_candidates(e["candidates"]), shown_rank=e["candidate_rank"],
                       rejected_ranks=())
    if kind == ev.CANDIDATE_REJECTED:
        rejected = (*state.rejected_ranks, e["candidate_rank"])
        left = [c.rank for c in state.candidates if c.rank not in rejected]
        return replace(state, rejected_ranks=rejected, shown_rank=left[0] if left else None)
    if kind == ev.SUBJECT_REJECTED:
        return replace(state, phase=AWAITING_TYPED_SUBJECT, subject=None, subject_method=None, candidates=(),
                       shown_rank=None, rejected_ranks=(),
                       rejected_subjects=(*state.rejected_subjects, e["subject"]))
    if kind == ev.APPROVED:
        chosen = state.candidate(e["candidate_rank"])
        return replace(state, phase=APPROVED, approved=ApprovedChoice(
            review_id=e["review_id"], segment_key=state.segment_key, subject=e["subject"],
            rank=e["candidate_rank"], image_id=e["image_id"], path=chosen.path if chosen else "",
            score=chosen.score if chosen else float("nan"), reviewer=e["reviewer"], at=e["at"],
            segment_digest=e.get("segment_digest")))
    return state  # subject_accepted (its candidates event follows in the same commit), reply_not_understood


def latest_approval(segment_key: str, events: list[dict]) -> ApprovedChoice | None:
    """The segment's last approved choice, also while a newer review is open: it stands until replaced."""
    last = None
    state = ReviewState(segment_key)
    for e in events:
        state = _apply(state, e)
        if e["event"] == ev.APPROVED:
            last = state.approved
    return last
