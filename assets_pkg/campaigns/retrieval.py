"""Top-3 seed photos for a subject: one index query for a pool, then a diverse three of it.

The query is "a photo of a <subject>", fused with the segment's reference photo when it names one,
filtered to the segment's labels (`assets_pkg.index.queries`). One search fetches the top
`diversity.pool` hits with their stored vectors; near-duplicates are dropped and three chosen by
maximal marginal relevance (`assets_pkg.index.diversity`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from assets_pkg.index.diversity import Diversity, NearDuplicate, pick_diverse
from assets_pkg.index.lance_index import Hit, IndexReader
from assets_pkg.index.queries import DEFAULT_IMAGE_WEIGHT, Query, QueryEncoder, QueryImage, build_query

TOP_K = 3


@dataclass(frozen=True)
class Candidates:
    query: str  # what was searched, in words (`Query.describe`)
    label_filter: str | None
    hits: list[Hit]
    vector: np.ndarray | None = field(default=None, compare=False, repr=False)  # the query vector searched with
    near_duplicates: list[NearDuplicate] = field(default_factory=list)  # dropped: near-identical to a chosen hit
    pool: int = 0  # hits the three were chosen from


def query_for(subject: str) -> str:
    return f"a photo of a {subject}"


def retrieve_candidates(index: IndexReader, encoder: QueryEncoder, subject: str, labels: tuple[str, ...] = (),
                        reference: QueryImage | None = None, reference_weight: float = DEFAULT_IMAGE_WEIGHT,
                        diversity: Diversity | None = None, k: int = TOP_K) -> Candidates:
    """`k` diverse photos for `subject` among images carrying one of `labels` (any image when none),
    the query fused with `reference` (a photo) when given; one index query."""
    diversity = diversity or Diversity()
    query = Query(text=query_for(subject), image=reference, labels=labels, image_weight=reference_weight)
    built = build_query(query, encoder)
    pool = index.search(built.vector, k=max(k, diversity.pool), where=built.where, with_vectors=True)
    if not pool:
        scope = f" with labels {', '.join(labels)}" if labels else ""
        raise LookupError(f"no image in the index{scope} for query {built.description}")
    diverse = pick_diverse(pool, k, diversity)
    return Candidates(query=built.description, label_filter=built.where, hits=diverse.chosen, vector=built.vector,
                      near_duplicates=diverse.near_duplicates, pool=diverse.pool)
