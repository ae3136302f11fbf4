"""The image generator as a Dagster resource: Replicate FLUX Kontext when a token is set, else local."""

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

    def generator(self) -> ImageGenerator:
        if not self.replicate_api_token:
            return LocalCompositor()
        return ReplicateKontextGenerator(api_token=self.replicate_api_token, model=self.replicate_model,
                                         base_url=self.replicate_base_url or None, timeout_s=self.timeout_s,
                                         max_attempts=self.max_attempts)
