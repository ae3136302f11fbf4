"""Subject proposal: which subject (a catalog label) fits a segment best.

A swappable interface: the default ranks the catalog's labels by CLIP similarity between the
segment description and "a photo of a <label>"; an LLM proposer can take its place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Protocol

import numpy as np

from assets_pkg.campaigns.segments import Segment


@dataclass(frozen=True)
class SubjectProposal:
    subject: str
    method: str  # "segments-file" or the proposer's id
    scores: dict[str, float]  # candidate subject -> score, when the proposer ranks


class SubjectProposer(Protocol):
    proposer_id: str

    def propose(self, segment: Segment, candidates: list[str]) -> SubjectProposal: ...


class ClipZeroShotProposer:
    proposer_id = "clip-zero-shot"

    def __init__(self, encode_texts: Callable[[list[str]], np.ndarray]):
        self.encode_texts = encode_texts

    def propose(self, segment: Segment, candidates: list[str]) -> SubjectProposal:
        if not candidates:
            raise ValueError(f"segment {segment.key!r} names no subject and the catalog has no labels to choose from")
        vectors = self.encode_texts([f"{segment.name}: {segment.description}"]
                                    + [f"a photo of a {label}" for label in candidates])
        scores = vectors[1:] @ vectors[0]
        ranked = sorted(zip(candidates, scores.tolist()), key=lambda pair: -pair[1])
        return SubjectProposal(subject=ranked[0][0], method=self.proposer_id,
                               scores={label: round(score, 6) for label, score in ranked})


class NoSubjectLeft(LookupError):
    """Every subject the catalog offers this segment has been rejected: only a reviewer can name another."""


def subject_key(subject: str) -> str:
    """How two spellings of one subject compare: case and spacing do not make a new subject."""
    return " ".join(subject.lower().split())


def choose_subject(segment: Segment, proposer: SubjectProposer, candidates: list[str],
                   exclude: Iterable[str] = ()) -> SubjectProposal:
    """The segments file's subject when it names one, else the proposer's choice. Subjects in
    `exclude` (rejected by a reviewer) are never chosen, the segments file's included."""
    excluded = {subject_key(s) for s in exclude}
    if segment.subject and subject_key(segment.subject) not in excluded:
        return SubjectProposal(subject=segment.subject, method="segments-file", scores={})
    allowed = [c for c in candidates if not segment.labels or c in segment.labels] or candidates
    remaining = [c for c in allowed if subject_key(c) not in excluded]
    if allowed and not remaining:
        raise NoSubjectLeft(f"every subject for segment {segment.key!r} has been rejected "
                            f"({', '.join(sorted(excluded))}); name another one")
    return proposer.propose(segment, remaining)
