"""The review event log: `lake/campaign_reviews`, append-only, one ordered history per segment.

Events (the `event` column) and what each carries besides review id, segment, seq, time, reviewer:

- `review_started`: a new review of the segment; everything before it is history.
- `subject_proposed`: `subject`; `note` says who proposed it (the proposer's id, "segments-file",
  "reviewer").
- `subject_accepted`: `subject`; the reviewer said yes to it.
- `candidates_retrieved`: `subject`, `candidates` (JSON, ranks 1-3), `candidate_rank` = the one shown.
  The one index query of a subject; every later step reads the candidates from here.
- `candidate_rejected`: `subject`, `candidate_rank` (the one the reviewer saw and turned down).
- `subject_rejected`: `subject`, `note` (why). Never proposed again in this review.
- `approved`: `subject`, `candidate_rank`, `image_id`, `segment_digest`. A choice, not a generation.
- `reply_not_understood`: `note` = the reviewer's text. Changes nothing; kept so the history shows it.

Why a lock around read-then-append: each step derives the state from the events and appends the
next `seq`; two reviewers answering at once would otherwise both append the same seq, or both
answer one candidate. The lock is per machine (see `delta_tables.exclusive`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa

from assets_pkg.delta_tables import append, compact_when_fragmented, exclusive, read_table, sql_literal
from assets_pkg.layout import REVIEWS_SCHEMA, DataLayout, require_safe_key

NOTE_MAX_CHARS = 2_000  # a note is kept as typed up to here; a reply longer than a page is not a reply
REVIEWER_MAX_CHARS = 100

REVIEW_STARTED = "review_started"
SUBJECT_PROPOSED = "subject_proposed"
SUBJECT_ACCEPTED = "subject_accepted"
CANDIDATES_RETRIEVED = "candidates_retrieved"
CANDIDATE_REJECTED = "candidate_rejected"
SUBJECT_REJECTED = "subject_rejected"
APPROVED = "approved"
REPLY_NOT_UNDERSTOOD = "reply_not_understood"
EVENTS = (REVIEW_STARTED, SUBJECT_PROPOSED, SUBJECT_ACCEPTED, CANDIDATES_RETRIEVED, CANDIDATE_REJECTED,
          SUBJECT_REJECTED, APPROVED, REPLY_NOT_UNDERSTOOD)


@dataclass(frozen=True)
class Candidate:
    rank: int  # 1-3
    image_id: str
    path: str
    score: float


@dataclass(frozen=True)
class NewEvent:
    """An event before it is stored: the log adds segment, seq, time and reviewer."""
    review_id: str
    event: str
    subject: str | None = None
    candidate_rank: int | None = None
    image_id: str | None = None
    candidates: tuple[Candidate, ...] | None = None
    note: str | None = None
    segment_digest: str | None = None  # on approvals only


def candidates_json(candidates: tuple[Candidate, ...]) -> str:
    return json.dumps([{"rank": c.rank, "image_id": c.image_id, "path": c.path, "score": c.score}
                       for c in candidates])


def parse_candidates(text: str | None) -> tuple[Candidate, ...]:
    if not text:
        return ()
    return tuple(Candidate(rank=int(c["rank"]), image_id=str(c["image_id"]), path=str(c["path"]),
                           score=float(c["score"])) for c in json.loads(text))


def read_events(layout: DataLayout, segment_key: str) -> list[dict]:
    """A segment's events in order (by seq); empty before its first review."""
    where = f"segment_key = {sql_literal(require_safe_key(segment_key))}"
    return read_table(layout.reviews_table, REVIEWS_SCHEMA, where=where).sort_by("seq").to_pylist()


@dataclass
class SegmentLog:
    """A segment's events, read under the lock; `append` writes the next ones in one commit."""
    layout: DataLayout
    segment_key: str
    events: list[dict] = field(default_factory=list)
    read: int = field(init=False)  # how many events were stored before this step: the rest it appended

    def __post_init__(self) -> None:
        self.read = len(self.events)

    def append(self, reviewer: str, new: list[NewEvent]) -> list[dict]:
        if not new:
            return []
        if unknown := {e.event for e in new} - set(EVENTS):
            raise ValueError(f"unknown review events {sorted(unknown)}")
        last = self.events[-1]["seq"] if self.events else 0
        at = datetime.now(UTC)
        rows = [{
            "review_id": e.review_id, "segment_key": self.segment_key, "seq": last + n, "at": at,
            "reviewer": _cap(reviewer, REVIEWER_MAX_CHARS), "event": e.event, "subject": e.subject,
            "candidate_rank": e.candidate_rank, "image_id": e.image_id,
            "candidates": None if e.candidates is None else candidates_json(e.candidates),
            "note": _cap(e.note, NOTE_MAX_CHARS), "segment_digest": e.segment_digest,
        } for n, e in enumerate(new, start=1)]
        # One commit for a step's events: a step killed half-way leaves none of them (e.g. never a
        # subject accepted without its candidates).
        append(self.layout.reviews_table, pa.Table.from_pylist(rows, schema=REVIEWS_SCHEMA))
        compact_when_fragmented(self.layout.reviews_table)  # under the log's lock (segment_log)
        self.events.extend(rows)
        return rows


@contextmanager
def segment_log(layout: DataLayout, segment_key: str) -> Iterator[SegmentLog]:
    """Hold the review log's lock while the caller reads a segment's events and appends the next.

    One lock for the whole table rather than one per segment: a step holds it for milliseconds
    (one text encoding and index query at most), and no lock file name is built from a key."""
    require_safe_key(segment_key)
    with exclusive(layout.reviews_table):
        yield SegmentLog(layout, segment_key, read_events(layout, segment_key))


def _cap(text: str | None, limit: int) -> str | None:
    return None if text is None else str(text)[:limit]
