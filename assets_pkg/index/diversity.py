"""Diverse top-k from a larger pool of hits: near-duplicates out, then maximal marginal relevance.

A search returns the photos most like the query, and the photos most like the query are often most
like each other: the same shot resized, recompressed or lightly cropped, or a burst of nearly equal
frames. A reviewer who finds #1 "not quite" learns nothing from a #2 that is #1 again. So retrieval
fetches a pool (the top `pool` hits, with their stored vectors) and picks `k` of it:

1. Near-duplicates out. In score order, a hit whose cosine to a better hit still in the running is
   above `near_duplicate_cosine` is dropped: it never takes a place, whatever `mmr_lambda` says.
   Each dropped hit is reported with the photo it duplicates and their cosine (when that photo is
   among the chosen ones: duplicates of a photo that is not chosen left nothing a reader needs).
2. Maximal marginal relevance (Carbonell & Goldstein, 1998) over the rest: the best hit first, then
   each time the hit maximising  mmr_lambda * score - (1 - mmr_lambda) * max cosine to those chosen.
   `mmr_lambda` 1 is the plain top-k by score; 0 takes the photo least like those chosen each time.

The chosen hits are returned in score order (rank 1 is always the best match); fewer than `k` when
the pool holds fewer distinct photos.

Choosing the settings: the two terms of MMR live on different scales. With CLIP, the text-to-image
cosines of a pool typically spread over a few hundredths, image-to-image cosines over tenths, so the
redundancy term weighs more than `mmr_lambda` suggests: at the default 0.7 a photo 0.03 less relevant
takes the place of one 0.07 more like a photo already chosen (0.7 / 0.3 = 2.3 to 1). An image query
puts both terms on the image-to-image scale. The near-duplicate threshold is a property of the
model's cosine scale: 0.95 is a common starting point for a real CLIP (not measured in this
project: no real weights offline). The tiny random-weight model squeezes cosines towards 1 (on the
demo catalog: distinct photos up to 0.9987, resized or recompressed copies 0.9999-1.0), so
`adrag --offline` and the tests use `TINY_MODEL_NEAR_DUPLICATE_COSINE` with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from assets_pkg.index.lance_index import Hit

DEFAULT_MMR_LAMBDA = 0.7
DEFAULT_NEAR_DUPLICATE_COSINE = 0.95
DEFAULT_POOL = 20
# Measured on demo-catalog photos with the tiny random-weight model (`adrag --offline`), cosine to the
# original: re-saved as PNG, halved or recompressed at JPEG quality 40 0.99998-1.0; 1% cropped off each
# side 0.9997-0.9999, 2% 0.9991-0.9996, 3% 0.9980-0.9992 (so heavier crops count as distinct photos here);
# distinct photos of one subject at most 0.9987 (12 per subject).
TINY_MODEL_NEAR_DUPLICATE_COSINE = 0.999


@dataclass(frozen=True)
class Diversity:
    """How a top-k is made diverse (see the module docstring)."""

    mmr_lambda: float = DEFAULT_MMR_LAMBDA
    near_duplicate_cosine: float = DEFAULT_NEAR_DUPLICATE_COSINE
    pool: int = DEFAULT_POOL  # hits fetched to choose from

    def __post_init__(self):
        if not 0.0 <= self.mmr_lambda <= 1.0:
            raise ValueError(f"mmr_lambda {self.mmr_lambda} is outside 0..1 (1 = plain top-k by score)")
        if not -1.0 <= self.near_duplicate_cosine <= 1.0:
            raise ValueError(f"near_duplicate_cosine {self.near_duplicate_cosine} is outside -1..1 "
                             "(1 = never drop a near-duplicate)")
        if self.pool < 1:
            raise ValueError(f"pool {self.pool} must be at least 1")

    def fields(self) -> dict[str, float | int]:
        return {"mmr_lambda": self.mmr_lambda, "near_duplicate_cosine": self.near_duplicate_cosine, "pool": self.pool}


@dataclass(frozen=True)
class NearDuplicate:
    """A hit that took no place because it is near-identical to a better, chosen one."""

    hit: Hit
    duplicate_of: Hit
    similarity: float  # cosine between the two photos' vectors

    def fields(self) -> dict:
        return {"image_id": self.hit.image_id, "path": self.hit.path, "score": self.hit.score,
                "duplicate_of_image_id": self.duplicate_of.image_id, "duplicate_of_path": self.duplicate_of.path,
                "similarity": self.similarity}


@dataclass
class DiverseHits:
    chosen: list[Hit]  # in score order
    near_duplicates: list[NearDuplicate] = field(default_factory=list)  # of the chosen ones, in score order
    pool: int = 0  # hits the choice was made from


def pick_diverse(hits: list[Hit], k: int, diversity: Diversity = Diversity()) -> DiverseHits:
    """`k` of `hits` (a search's top hits, best first, each with its vector), near-duplicates dropped
    and the rest chosen by maximal marginal relevance."""
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    if not hits:
        return DiverseHits([], [], 0)
    if any(h.vector is None for h in hits):
        raise ValueError("diversity needs each hit's vector: search with with_vectors=True")
    hits = sorted(hits, key=lambda h: -h.score)  # stable: the index's order among equal scores
    vectors = np.stack([np.asarray(h.vector, np.float32) for h in hits])
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    similarity = vectors @ vectors.T

    kept: list[int] = []
    duplicate_of: dict[int, int] = {}  # dropped hit -> the better kept hit it is most like
    for n in range(len(hits)):
        closest = max(kept, key=lambda m: similarity[n, m], default=None)
        if closest is not None and similarity[n, closest] > diversity.near_duplicate_cosine:
            duplicate_of[n] = closest
        else:
            kept.append(n)

    scores = np.array([h.score for h in hits])
    chosen = [kept[0]]
    while len(chosen) < min(k, len(kept)):
        rest = [n for n in kept if n not in chosen]
        redundancy = similarity[np.ix_(rest, chosen)].max(axis=1)
        marginal = diversity.mmr_lambda * scores[rest] - (1 - diversity.mmr_lambda) * redundancy
        chosen.append(rest[int(np.argmax(marginal))])  # argmax: the first (best-scored) of equals
    chosen.sort()
    dropped = [NearDuplicate(hits[n], hits[m], float(similarity[n, m]))
               for n, m in duplicate_of.items() if m in chosen]
    return DiverseHits([hits[n] for n in chosen], dropped, len(hits))
