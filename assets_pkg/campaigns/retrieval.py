"""Top-k retrieval of seed photos for a subject, with an optional label filter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from assets_pkg.index.lance_index import Hit, IndexReader, labels_filter

TOP_K = 3


@dataclass(frozen=True)
class Candidates:
    query: str
    label_filter: str | None
    hits: list[Hit]


def query_for(subject: str) -> str:
    return f"a photo of a {subject}"


def retrieve_candidates(index: IndexReader, encode_texts: Callable[[list[str]], np.ndarray], subject: str,
                        labels: tuple[str, ...] = (), k: int = TOP_K) -> Candidates:
    query = query_for(subject)
    where = labels_filter(list(labels))
    hits = index.search(encode_texts([query])[0], k=k, where=where)
    if not hits:
        scope = f" with labels {', '.join(labels)}" if labels else ""
        raise LookupError(f"no image in the index{scope} for query {query!r}")
    return Candidates(query=query, label_filter=where, hits=hits)
