"""The campaign stage's resources: how ads are made (the generator: Replicate FLUX Kontext when a token
is set, else local; how many at once; the quality bar every ad is scored against and what a segment may
spend reaching it), and how diverse each segment's top 3 are."""

from __future__ import annotations

import dagster as dg

from assets_pkg.campaigns.generators.base import ImageGenerator
from assets_pkg.campaigns.generators.compositor import LocalCompositor
from assets_pkg.campaigns.generators.replicate_kontext import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MODEL,
    DEFAULT_TIMEOUT_S,
    ReplicateKontextGenerator,
)
from assets_pkg.campaigns.operations import QualityPolicy
from assets_pkg.campaigns.quality import QualityBar
from assets_pkg.index.diversity import DEFAULT_MMR_LAMBDA, DEFAULT_NEAR_DUPLICATE_COSINE, DEFAULT_POOL, Diversity


class ImageGeneratorResource(dg.ConfigurableResource):
    """Which generator makes the ads. An empty token selects the local compositor."""

    replicate_api_token: str = ""
    replicate_model: str = DEFAULT_MODEL
    replicate_base_url: str = ""  # empty: Replicate's API; tests point it at a local stand-in
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_attempts: int = DEFAULT_MAX_ATTEMPTS  # per API call; then the step's retry policy retries the generation
    # Generations in flight at once: the campaign step's worker threads. The step's `image_api` pool
    # (limit 1 on the instance) keeps it to one such step at a time, so this bounds the whole instance.
    max_concurrent: int = 4
    # The quality bar (CLIP cosines of the ad to the subject text, the seed photo, the brand image) and the
    # per-segment cost cap of falling back to the next candidate (empty: one generation's cost). Strings,
    # so `dg.EnvVar` can set them.
    min_subject_score: str = str(QualityBar.min_subject)
    min_seed_score: str = str(QualityBar.min_seed)
    min_brand_score: str = str(QualityBar.min_brand)
    max_cost_per_segment_usd: str = ""

    def quality_policy(self) -> QualityPolicy:
        bar = QualityBar.parse(self.min_subject_score, self.min_seed_score, self.min_brand_score)
        if not self.max_cost_per_segment_usd.strip():
            return QualityPolicy(bar)
        try:
            cap = float(self.max_cost_per_segment_usd)
        except ValueError:
            cap = -1.0
        if cap < 0:
            raise ValueError(f"the cost cap per segment must be a number of US dollars >= 0, "
                             f"not {self.max_cost_per_segment_usd!r}")
        return QualityPolicy(bar, cap)

    def generator(self) -> ImageGenerator:
        if not self.replicate_api_token:
            return LocalCompositor()
        return ReplicateKontextGenerator(api_token=self.replicate_api_token, model=self.replicate_model,
                                         base_url=self.replicate_base_url or None, timeout_s=self.timeout_s,
                                         max_attempts=self.max_attempts)


class CandidateDiversity(dg.ConfigurableResource):
    """How each segment's top 3 are chosen from the retrieved pool (`assets_pkg.index.diversity`):
    maximal marginal relevance with `mmr_lambda` (1 = plain top 3 by score), and photos whose cosine to
    a better, chosen one is above `near_duplicate_cosine` never take a place (1 = keep them).

    String fields so `dg.EnvVar` can set them (EnvVar gives str or int)."""

    mmr_lambda: str = str(DEFAULT_MMR_LAMBDA)
    near_duplicate_cosine: str = str(DEFAULT_NEAR_DUPLICATE_COSINE)
    pool: int = DEFAULT_POOL  # photos retrieved to choose the 3 from

    @property
    def diversity(self) -> Diversity:
        return Diversity(mmr_lambda=_number("mmr_lambda", self.mmr_lambda),
                         near_duplicate_cosine=_number("near_duplicate_cosine", self.near_duplicate_cosine),
                         pool=self.pool)


def _number(name: str, text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        raise ValueError(f"candidate_diversity.{name} {text!r} is not a number") from None
