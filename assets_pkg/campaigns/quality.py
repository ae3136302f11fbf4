"""Whether an ad shows what it should, judged by the catalog's CLIP model before a marketer sees it.

Three cosine similarities of the ad's image embedding:
- `subject`: to the subject's text query ("a photo of a dog"): the subject is recognisable;
- `seed`: to the seed photo's embedding: the ad kept the real photo it was grounded in;
- `brand`: to the brand image's embedding: the brand is present.

An ad passes when each reaches its minimum (`QualityBar`). The defaults are starting points for
open_clip ViT-B-32 (matching text-image pairs score about 0.25-0.35, unrelated ones below 0.18; an
image and an edit of it above 0.7): tune them on your own ads. With random weights (`--offline`) the
scores mean nothing, like retrieval's.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np

from assets_pkg.campaigns.retrieval import query_for
from assets_pkg.consistency import Report


class Encoder(Protocol):
    def encode_images(self, items): ...
    def encode_texts(self, texts: list[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class QualityBar:
    min_subject: float = 0.20
    min_seed: float = 0.60
    min_brand: float = 0.30

    @classmethod
    def parse(cls, min_subject: str, min_seed: str, min_brand: str) -> QualityBar:
        """From settings text (environment variables); a clear error naming the bad value."""
        values = []
        for name, text in (("min_subject", min_subject), ("min_seed", min_seed), ("min_brand", min_brand)):
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"ad quality {name} must be a cosine between -1 and 1, not {text!r}") from None
            if not -1.0 <= value <= 1.0:
                raise ValueError(f"ad quality {name} must be a cosine between -1 and 1, not {value}")
            values.append(value)
        return cls(*values)


@dataclass(frozen=True)
class AdScores:
    subject: float
    seed: float
    brand: float

    def shortfalls(self, bar: QualityBar) -> list[str]:
        """What falls short of the bar, in words; empty when the ad passes."""
        checks = (("subject", self.subject, bar.min_subject), ("seed photo", self.seed, bar.min_seed),
                  ("brand", self.brand, bar.min_brand))
        return [f"{name} {score:.3f} < {minimum:.3f}" for name, score, minimum in checks if score < minimum]

    def passes(self, bar: QualityBar) -> bool:
        return not self.shortfalls(bar)

    def rounded(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in asdict(self).items()}


def score_ad(encoder: Encoder, ad: bytes, seed: bytes, brand: bytes, subject: str) -> AdScores:
    """The three similarities; raises ValueError when one of the images does not decode."""
    batches = list(encoder.encode_images([("ad", ad), ("seed", seed), ("brand", brand)]))
    failed = [f"{image_id}: {why}" for batch in batches for image_id, why in batch.failed]
    if failed:
        raise ValueError(f"cannot score the ad: {'; '.join(failed)}")
    vectors = dict(zip([i for b in batches for i in b.image_ids], np.concatenate([b.vectors for b in batches])))
    text = encoder.encode_texts([query_for(subject)])[0]
    ad_vector = vectors["ad"]
    return AdScores(subject=float(ad_vector @ text), seed=float(ad_vector @ vectors["seed"]),
                    brand=float(ad_vector @ vectors["brand"]))


@dataclass(frozen=True)
class Attempt:
    """One ad tried for a segment: which candidate, what it cost, how it scored."""
    rank: int  # 1-3
    path: str | None
    cost_usd: float
    reused: bool
    scores: AdScores | None  # None when generation failed
    passed: bool
    note: str = ""  # the shortfalls, or why it was not scored

    def as_dict(self) -> dict:
        out = asdict(self)
        out["scores"] = self.scores.rounded() if self.scores else None
        return out


def attempts_json(attempts: list[Attempt], bar: QualityBar, chosen_rank: int, cap_usd: float) -> str:
    """What the campaigns row and the MLflow run keep about the quality check of a segment's ad."""
    return json.dumps({"bar": asdict(bar), "max_cost_usd": cap_usd, "chosen_rank": chosen_rank,
                       "attempts": [a.as_dict() for a in attempts]}, sort_keys=True)


def latest_ads_below_bar(latest_rows: dict[str, dict]) -> Report:
    """Whether every segment's latest ad passed the quality bar it was made under (from the campaigns
    rows' `quality`). Not serious: a marketer looks at the flagged ads, or a rerun with a higher cost
    cap may fall back further. Rows made before ads were scored, and failed generations, are left out."""
    report = Report(serious=False)
    scored, below = 0, []
    for key, row in sorted(latest_rows.items()):
        if row.get("status") != "succeeded" or not row.get("quality"):
            continue
        summary = json.loads(row["quality"])
        chosen = next((a for a in summary["attempts"] if a["rank"] == summary["chosen_rank"]), None)
        if chosen is None:
            continue
        scored += 1
        if not chosen["passed"]:
            below.append(key)
            report.problems.append(f"{key}: {chosen['note']} (tried {len(summary['attempts'])})")
    report.facts.update(segments_scored=scored, segments_below_bar=len(below), below_bar=", ".join(below) or "none")
    return report
