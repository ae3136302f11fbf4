"""The CLIP encoder as a Dagster resource: configured by env vars, model built on first use."""

from __future__ import annotations

import dagster as dg
from pydantic import PrivateAttr

from assets_pkg.embeddings.encode import ClipEncoder, pick_device
from assets_pkg.embeddings.model import DEFAULT_MODEL, DEFAULT_PRETRAINED, ClipSpec, load_clip
from assets_pkg.embeddings.ray_encode import RayImageEncoder, RayOptions


class ClipModel(dg.ConfigurableResource):
    """open_clip model: `weights` is a pretrained tag, a local checkpoint file, or "random".

    `ray_address` moves image embedding onto Ray (`assets_pkg.embeddings.ray_encode`): empty = in this
    process; `local` = a Ray started for the step and shut down after; `auto`, `host:port` or
    `ray://host:port` = a running cluster. Text encoding always stays in this process.
    """

    model_name: str = DEFAULT_MODEL
    weights: str = DEFAULT_PRETRAINED
    device: str = "auto"  # auto: CUDA when present, else CPU (on Ray: GPU actors when the cluster has GPUs)
    batch_size: int = 64
    max_concurrent: int = 1  # embedding steps at once on this machine, across runs (see assets_pkg.slots)
    ray_address: str = ""  # empty: embed in-process
    ray_actors: int = 0  # Ray actor pool size; 0: one per GPU, else one per `ray_cpus_per_actor` CPUs of the cluster
    ray_cpus_per_actor: int = 1

    _encoder: ClipEncoder | None = PrivateAttr(default=None)

    @property
    def spec(self) -> ClipSpec:
        return ClipSpec(model_name=self.model_name, weights=self.weights)

    @property
    def on_ray(self) -> bool:
        return bool(self.ray_address.strip())

    def encoder(self) -> ClipEncoder:
        """Load the model once per process, on first use (never at import or definition time)."""
        if self._encoder is None:
            device = pick_device(self.device)
            self._encoder = ClipEncoder(load_clip(self.spec, device), device=device, batch_size=self.batch_size)
        return self._encoder

    def image_encoder(self) -> ClipEncoder | RayImageEncoder:
        """What the embeddings step encodes images with: the in-process encoder, or the Ray actor pool."""
        if not self.on_ray:
            return self.encoder()
        return RayImageEncoder(self.spec, RayOptions(
            address=self.ray_address.strip(), actors=self.ray_actors, cpus_per_actor=self.ray_cpus_per_actor,
            device=self.device, batch_size=self.batch_size))

    def teardown_after_execution(self, context) -> None:
        if self._encoder is not None:
            self._encoder.close()
