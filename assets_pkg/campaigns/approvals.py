"""A reviewer's approved choice as the campaign operations use it, and whether it still holds.

The review stage (`assets_pkg.review`) records approvals and derives them from its event log; it
imports this stage, so this stage never imports it. The operations take the approval as an argument
(anything with the attributes of `Approval`, such as `review.state.ApprovedChoice`), and the Dagster
step, which wires both stages, reads it and passes it in.

An approval holds while the segment reads as it did when it was approved (its name and description:
`segment_digest`, stored with the approval) and the approved photo is still in the catalog. Otherwise
the segment needs review: no other photo is silently chosen in its place.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from assets_pkg.campaigns.segments import Segment
from assets_pkg.delta_tables import read_table, sql_literal
from assets_pkg.layout import MIRROR_SCHEMA

REVIEW_NONE = "none"  # no approval: the best match, as always
REVIEW_APPROVED = "approved"  # the approved subject and photo
NEEDS_REVIEW = "needs_review"  # an approval that no longer holds: no ad until a reviewer approves again

APPROVED_SUBJECT_METHOD = "review-approved"  # the candidates row's subject_method under an approval


class Approval(Protocol):
    review_id: str
    reviewer: str
    subject: str
    rank: int  # 1-3, as the reviewer saw it
    image_id: str
    path: str
    segment_digest: str | None  # the segment when it was approved; None: approved before digests were kept


def segment_digest(segment: Segment) -> str:
    """What a reviewer approved a photo for: the segment's name and description (sha256, 16 hex chars)."""
    payload = json.dumps({"name": segment.name, "description": segment.description}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ApprovalCheck:
    status: str  # REVIEW_NONE, REVIEW_APPROVED or NEEDS_REVIEW
    approval: Approval | None = None
    reason: str | None = None  # why the segment needs review

    @property
    def approved(self) -> bool:
        return self.status == REVIEW_APPROVED

    def fields(self) -> dict:
        """The review's part of a materialization's metadata or an MLflow run's tags, as plain values."""
        out: dict = {"review": self.status}
        if self.approval is not None:
            out.update(review_id=self.approval.review_id, approved_by=self.approval.reviewer,
                       approved_rank=self.approval.rank)
        if self.reason:
            out["review_reason"] = self.reason
        return out


class NeedsReview(Exception):
    """The segment's approval no longer holds; the message says why."""


def check_approval(segment: Segment, approval: Approval | None, mirror_table: Path) -> ApprovalCheck:
    """Whether `approval` (the segment's latest, or None) still holds: one small mirror read."""
    if approval is None:
        return ApprovalCheck(REVIEW_NONE)
    if approval.segment_digest is not None and approval.segment_digest != segment_digest(segment):
        return ApprovalCheck(NEEDS_REVIEW, approval, f"the segment's name or description changed since review "
                                                     f"{approval.review_id} approved photo #{approval.rank}")
    found = read_table(mirror_table, MIRROR_SCHEMA, ["image_id"], where=f"image_id = {sql_literal(approval.image_id)}")
    if found.num_rows == 0:
        return ApprovalCheck(NEEDS_REVIEW, approval, f"the approved photo {approval.path} "
                                                     f"({approval.image_id[:12]}) left the catalog")
    return ApprovalCheck(REVIEW_APPROVED, approval)
