"""The CLIP encoder as a Dagster resource: configured by env vars, model built on first use."""

from __future__ import annotations

import dagster as dg
from pydantic import PrivateAttr

from assets_pkg.embeddings.encode import ClipEncoder, pick_device
from assets_pkg.embeddings.model import DEFAULT_MODEL, DEFAULT_PRETRAINED, ClipSpec, load_clip


class ClipModel(dg.ConfigurableResource):
    """open_clip model: `weights` is a pretrained tag, a local checkpoint file, or "random"."""

    model_name: str = DEFAULT_MODEL
    weights: str = DEFAULT_PRETRAINED
    device: str = "auto"  # auto: CUDA when present, else CPU
    batch_size: int = 64
    max_concurrent: int = 1  # embedding steps at once on this machine, across runs (see assets_pkg.slots)

    _encoder: ClipEncoder | None = PrivateAttr(default=None)

    @property
    def spec(self) -> ClipSpec:
        return ClipSpec(model_name=self.model_name, weights=self.weights)

    def encoder(self) -> ClipEncoder:
        """Load the model once per process, on first use (never at import or definition time)."""
        if self._encoder is None:
            device = pick_device(self.device)
            self._encoder = ClipEncoder(load_clip(self.spec, device), device=device, batch_size=self.batch_size)
        return self._encoder

    def teardown_after_execution(self, context) -> None:
        if self._encoder is not None:
            self._encoder.close()
