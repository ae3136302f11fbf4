"""Campaign candidates for one segment: subject, query, top-3 photos and their contact sheet."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from assets_pkg.campaigns.contact_sheet import contact_sheet
from assets_pkg.campaigns.retrieval import retrieve_candidates
from assets_pkg.campaigns.segments import Segment
from assets_pkg.campaigns.store import write_atomically
from assets_pkg.campaigns.subjects import SubjectProposal, SubjectProposer, choose_subject
from assets_pkg.catalog.mirror import read_image_bytes
from assets_pkg.index.lance_index import IndexReader
from assets_pkg.tracking import RunRecord


@dataclass
class CandidatesResult:
    row: dict  # a campaign_candidates row
    proposal: SubjectProposal
    contact_sheet_path: Path


def build_candidates(segment: Segment, index: IndexReader, model_key: str, encode_texts: Callable[[list[str]], np.ndarray],
                     proposer: SubjectProposer, catalog_labels: list[str], mirror_table: Path,
                     segment_dir: Path, record: RunRecord) -> CandidatesResult:
    with record.step("propose_subject", segment=segment.key, description=segment.description) as out:
        proposal = choose_subject(segment, proposer, catalog_labels)
        out.update(subject=proposal.subject, method=proposal.method, scores=proposal.scores)
    with record.step("retrieve", subject=proposal.subject, labels=list(segment.labels)) as out:
        found = retrieve_candidates(index, encode_texts, proposal.subject, segment.labels)
        out.update(query=found.query, hits=[(h.path, round(h.score, 4)) for h in found.hits])
    with record.step("contact_sheet", n=len(found.hits)) as out:
        images = read_image_bytes(mirror_table, [h.image_id for h in found.hits])
        sheet = contact_sheet([images[h.image_id] for h in found.hits],
                              [f"#{rank} score {h.score:.3f}\n{h.path}" for rank, h in enumerate(found.hits, start=1)])
        sheet_path = segment_dir / "candidates.png"
        write_atomically(sheet_path, sheet)
        out.update(path=str(sheet_path))
    row = {
        "segment_key": segment.key, "segment_name": segment.name, "description": segment.description,
        "subject": proposal.subject, "subject_method": proposal.method, "query": found.query,
        "model_key": model_key,
        "candidates": [{"rank": rank, "image_id": h.image_id, "path": h.path, "score": h.score}
                       for rank, h in enumerate(found.hits)],
        "contact_sheet": str(sheet_path), "created_at": datetime.now(timezone.utc),
    }
    return CandidatesResult(row=row, proposal=proposal, contact_sheet_path=sheet_path)
