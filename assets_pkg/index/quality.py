"""Retrieval quality gate: do text queries find the photos the catalog's own labels say they show?

The folder labels make a probe set. For every label in the index, the text query "a photo of a
{label}" (the query campaign retrieval sends for a subject) is encoded by the configured CLIP model
and searched in the index as campaign retrieval searches it (no label filter); an image is relevant when it
carries the label. Per label:

- precision@3: the share of the top 3 (what a campaign offers for review) that carry the label;
- recall@10: the share of the label's images found in the top 10 (at most 10/n for n > 10 images).

Each figure comes with its chance level, the expected value when the ranking is a random
permutation: precision@3 chance is the label's share n/N of the images, recall@10 chance is
min(10, N)/N. Means are over labels, each label counting once.

The rule: the gate passes when the mean precision@3 is above its chance level and a random ranking
(an independent random permutation for every query) would reach at least the observed number of
relevant images in the top 3s with probability below `MAX_P_VALUE` (1%). That probability is exact:
the number of a label's images in a random top 3 is hypergeometric, and the per-label distributions
are convolved. A ranking that ignores the query scores exactly chance when every image carries one
label (each top 3 is the same three photos), and random weights come close to that: all images
embed almost alike (the tiny test model on held-out demo drawings: mean precision@3 0.11 against a
chance of 0.17, p = 0.83; trained for 40 s on the CPU: 0.72, p = 1.6e-7).

Some catalogs cannot be judged, and then the gate passes and says so: fewer than two labels (a
single label has nothing to be told apart from), or so few labels and images that even perfect
retrieval, every top 3 filled with its label, would be within what random ranking reaches 1% of the
time (two labels of eight or more images each: a random ranking fills both top 3s about one time in 64).

Only labelled images are ranked: an image without a label (directly in the image folder) may show
anything, so it is neither relevant nor irrelevant to any query; when there are such images the
searches are filtered to labelled ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from assets_pkg.consistency import Report
from assets_pkg.index.lance_index import IndexReader, catalog_label_counts, labels_filter

PROBE_QUERY = "a photo of a {label}"  # assets_pkg.campaigns.retrieval.query_for (a later stage) sends the same
PRECISION_K = 3  # campaigns retrieve the top 3 (campaigns.retrieval.TOP_K)
RECALL_K = 10
MAX_P_VALUE = 0.01
MIN_LABELS = 2


@dataclass(frozen=True)
class LabelProbe:
    """One label's query and what it retrieved."""

    label: str
    images: int  # labelled images carrying this label (the relevant ones)
    precision_at_3: float
    recall_at_10: float
    chance_precision_at_3: float
    chance_recall_at_10: float
    hits_at_3: int


@dataclass(frozen=True)
class RetrievalQuality:
    """The probe set's figures over the labelled images of one index."""

    images: int  # labelled images ranked (N)
    unlabelled: int  # images left out of the probe: no label says what they show
    probes: list[LabelProbe]
    p_value: float  # chance that random rankings put at least as many relevant images in the top 3s
    best_p_value: float  # the same for perfect retrieval: below MAX_P_VALUE means the gate can judge

    @property
    def labels(self) -> int:
        return len(self.probes)

    @property
    def mean_precision_at_3(self) -> float:
        return _mean(p.precision_at_3 for p in self.probes)

    @property
    def mean_recall_at_10(self) -> float:
        return _mean(p.recall_at_10 for p in self.probes)

    @property
    def chance_precision_at_3(self) -> float:
        return _mean(p.chance_precision_at_3 for p in self.probes)

    @property
    def chance_recall_at_10(self) -> float:
        return _mean(p.chance_recall_at_10 for p in self.probes)

    @property
    def can_judge(self) -> bool:
        return self.labels >= MIN_LABELS and self.best_p_value < MAX_P_VALUE

    @property
    def beats_chance(self) -> bool:
        return self.mean_precision_at_3 > self.chance_precision_at_3 and self.p_value < MAX_P_VALUE


def probe_labels(reader: IndexReader, encode_texts: Callable[[list[str]], np.ndarray]) -> RetrievalQuality:
    """Query the index once per label with "a photo of a {label}" and score the top 3 and top 10."""
    counts = catalog_label_counts(reader.table)
    labels = sorted(counts)
    total = reader.table.count_rows()
    unlabelled = reader.table.count_rows("array_length(labels) = 0") if labels else total
    images = total - unlabelled
    if not labels:
        return RetrievalQuality(images=0, unlabelled=unlabelled, probes=[], p_value=1.0, best_p_value=1.0)
    where = labels_filter(labels) if unlabelled else None
    k3, k10 = min(PRECISION_K, images), min(RECALL_K, images)
    queries = encode_texts([PROBE_QUERY.format(label=label) for label in labels])
    probes = []
    for label, query in zip(labels, queries):
        hits = reader.search(query, k=k10, where=where)
        relevant = [label in hit.labels for hit in hits]
        n = counts[label]
        probes.append(LabelProbe(
            label=label, images=n, hits_at_3=sum(relevant[:k3]),
            precision_at_3=sum(relevant[:k3]) / k3, recall_at_10=sum(relevant) / n,
            chance_precision_at_3=n / images, chance_recall_at_10=k10 / images))
    nulls = [hypergeometric_pmf(images, p.images, k3) for p in probes]
    observed = sum(p.hits_at_3 for p in probes)
    best = sum(min(k3, p.images) for p in probes)
    return RetrievalQuality(images=images, unlabelled=unlabelled, probes=probes,
                            p_value=tail_at_least(nulls, observed), best_p_value=tail_at_least(nulls, best))


def hypergeometric_pmf(population: int, relevant: int, drawn: int) -> np.ndarray:
    """P(j relevant among `drawn` taken at random from `population` holding `relevant`), j = 0..drawn."""
    ways = math.comb(population, drawn)
    return np.array([math.comb(relevant, j) * math.comb(population - relevant, drawn - j) / ways
                     for j in range(drawn + 1)])


def tail_at_least(pmfs: list[np.ndarray], observed: int) -> float:
    """P(sum >= observed) for independent counts with the given distributions."""
    total = np.array([1.0])
    for pmf in pmfs:
        total = np.convolve(total, pmf)
    return float(min(1.0, total[observed:].sum())) if observed < len(total) else 0.0


def judge(quality: RetrievalQuality, model_key: str) -> Report:
    """The gate's verdict: a problem (a warning: nothing is broken, the model is no use) when the
    catalog can be judged and retrieval is no better than chance; the figures as facts."""
    report = Report(serious=False, facts=figures(quality))
    if quality.can_judge and not quality.beats_chance:
        advice = ("The model has random weights, which rank at chance by construction: point ADRAG_CLIP_WEIGHTS at "
                  "trained open_clip weights." if "/random-" in model_key else
                  f"Check that {model_key} is the model you meant (ADRAG_CLIP_MODEL, ADRAG_CLIP_WEIGHTS) and that "
                  "the folder labels name what the photos show.")
        report.problems.append(f"retrieval is no better than chance: {_summary(quality)}. Queries 'a photo of a "
                               f"<label>' do not find the photos their labels name. {advice}")
    return report


def passing_verdict(quality: RetrievalQuality) -> str:
    """Why the gate passes, in words: retrieval beats chance, or the catalog cannot be judged and why."""
    if quality.labels < MIN_LABELS:
        found = f"{quality.labels} label" + ("" if quality.labels == 1 else "s")
        return (f"cannot judge: the catalog has {found} and the gate needs at least {MIN_LABELS} (one query per "
                "label; a single label leaves nothing to tell apart): put photos in labelled sub-folders")
    if not quality.can_judge:
        return (f"cannot judge: with {quality.labels} labels over {quality.images} labelled images, a random ranking "
                f"would put only relevant images in every top {PRECISION_K} with probability "
                f"{quality.best_p_value:.3g}, so not even perfect retrieval could be told from chance at the "
                f"{MAX_P_VALUE:.0%} level: add labels (sub-folders) or images")
    return f"retrieval beats chance: {_summary(quality)}"


def figures(quality: RetrievalQuality) -> dict[str, object]:
    """The gate's numbers, rounded for display and history plots."""
    return {
        "mean_precision_at_3": round(quality.mean_precision_at_3, 4),
        "chance_precision_at_3": round(quality.chance_precision_at_3, 4),
        "mean_recall_at_10": round(quality.mean_recall_at_10, 4),
        "chance_recall_at_10": round(quality.chance_recall_at_10, 4),
        "p_value": float(f"{quality.p_value:.3g}"),
        "labels": quality.labels,
        "labelled_images": quality.images,
        "unlabelled_images": quality.unlabelled,
    }


def _summary(quality: RetrievalQuality) -> str:
    return (f"mean precision@3 {quality.mean_precision_at_3:.3f} (chance {quality.chance_precision_at_3:.3f}), "
            f"mean recall@10 {quality.mean_recall_at_10:.3f} (chance {quality.chance_recall_at_10:.3f}) over "
            f"{quality.labels} labels and {quality.images} labelled images; a random ranking does as well with "
            f"probability {quality.p_value:.2g} (the gate asks below {MAX_P_VALUE:g})")


def _mean(values) -> float:
    values = list(values)
    return float(np.mean(values)) if values else 0.0
