"""Batched CLIP encoding of image bytes and text, with decoding overlapped with compute.

CPU: a thread pool decodes and preprocesses the next batch while the model runs on this one (PIL and
torch both release the GIL); JPEGs decode at a reduced DCT scale when that still covers the model's input.
CUDA: JPEGs decode and preprocess on the GPU (`gpu_decode`, other formats on the CPU), the model runs under
bf16 autocast. Vectors come back float32 and L2-normalised.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Protocol

import numpy as np
import torch

from assets_pkg.catalog.probe import undecodable
from assets_pkg.embeddings.gpu_decode import GpuPreprocessor
from assets_pkg.embeddings.model import LoadedClip
from assets_pkg.pictures import decode_upright_rgb


@dataclass
class EncodedBatch:
    image_ids: list[str]
    vectors: np.ndarray  # (n, dim) float32, unit norm
    failed: list[tuple[str, str]] = field(default_factory=list)  # (image_id, reason)


class ImageEncoder(Protocol):
    """What the embeddings table's writer needs (`store.sync_embeddings`): `ClipEncoder` in this process,
    `ray_encode.RayImageEncoder` on a Ray actor pool."""

    model_key: str
    dim: int
    device: str
    batch_size: int

    def encode_images(self, items: Iterable[tuple[str, bytes]]) -> Iterator[EncodedBatch]: ...


def pick_device(requested: str = "auto") -> str:
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {requested!r} requested but CUDA is not available")
    return requested


class ClipEncoder:
    """Encodes (image_id, bytes) pairs in batches; the next batch is decoded while the model runs this one.

    CPU: `decode_workers` threads decode and preprocess image by image with PIL (open_clip's transform).
    CUDA: one thread reads the next batch's headers (and decodes what only the CPU can) while the GPU
    decodes JPEGs with nvJPEG and preprocesses them (`gpu_decode`); the model runs under bf16 autocast.
    """

    def __init__(self, clip: LoadedClip, device: str = "cpu", batch_size: int = 64, decode_workers: int = 2):
        self.clip = clip
        self.device = device
        self.batch_size = batch_size
        self._pool = ThreadPoolExecutor(max_workers=max(1, decode_workers), thread_name_prefix="decode")
        self._gpu = None
        if device.startswith("cuda"):
            try:
                self._gpu = GpuPreprocessor(clip.model.visual.preprocess_cfg, device, self._cpu_pixels)
            except ValueError:  # a preprocessing the GPU path does not reproduce: decode on the CPU
                self._gpu = None

    @property
    def model_key(self) -> str:
        return self.clip.model_key

    @property
    def dim(self) -> int:
        return self.clip.dim

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _cpu_pixels(self, data: bytes) -> torch.Tensor:
        # A JPEG decodes straight to the smallest DCT scale (1/2, 1/4, 1/8) that still covers the model's input:
        # less to decode and less to resize; vectors stay within 1e-4 cosine of a full-size decode.
        side = self.clip.image_size
        return self.clip.preprocess(decode_upright_rgb(data, draft_size=(side, side)))

    def _preprocess(self, item: tuple[str, bytes]) -> tuple[str, torch.Tensor | None, str | None]:
        image_id, data = item
        try:
            return image_id, self._cpu_pixels(data), None
        except Exception as err:  # any decode failure quarantines this image, never the batch
            return image_id, None, undecodable(data, err, "for embedding")

    def _submit(self, chunk: list[tuple[str, bytes]]):
        """Start preparing a batch in the pool; the returned function waits for it: (ids, pixels, failed)."""
        if self._gpu is not None:
            host = self._pool.submit(self._gpu.host_batch, [data for _, data in chunk])

            def gpu_ready():
                slots, pixels, failed = self._gpu.pixels(host.result())
                return [chunk[s][0] for s in slots], pixels, [(chunk[s][0], r) for s, r in failed.items()]
            return gpu_ready

        futures = [self._pool.submit(self._preprocess, item) for item in chunk]

        def cpu_ready():
            prepared = [f.result() for f in futures]
            ok = [(i, t) for i, t, _ in prepared if t is not None]
            pixels = torch.stack([t for _, t in ok]) if ok else None
            return [i for i, _ in ok], pixels, [(i, reason) for i, t, reason in prepared if t is None]
        return cpu_ready

    def _prepared_batches(self, items: Iterable[tuple[str, bytes]]) -> Iterator[tuple]:
        """Prepare batch k+1 in the pool while the caller encodes batch k."""
        pending = None  # if the input raises, the error reaches the caller; the pool finishes the batch and drops it
        for chunk in _batched(items, self.batch_size):
            submitted = self._submit(chunk)
            if pending is not None:
                yield pending()
            pending = submitted
        if pending is not None:
            yield pending()

    def encode_images(self, items: Iterable[tuple[str, bytes]]) -> Iterator[EncodedBatch]:
        for ids, pixels, failed in self._prepared_batches(items):
            if not ids:
                yield EncodedBatch([], np.zeros((0, self.dim), np.float32), failed)
                continue
            with torch.inference_mode(), self._autocast():
                features = self.clip.model.encode_image(pixels.to(self.device, non_blocking=True))
            yield EncodedBatch(ids, _unit_float32(features), failed)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        tokens = self.clip.tokenizer(texts).to(self.device)
        with torch.inference_mode(), self._autocast():
            features = self.clip.model.encode_text(tokens)
        return _unit_float32(features)

    def _autocast(self):
        if self.device.startswith("cuda"):
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return torch.autocast("cpu", enabled=False)


def _unit_float32(features: torch.Tensor) -> np.ndarray:
    features = features.float()
    features = features / features.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return features.cpu().numpy().astype(np.float32, copy=False)


def _batched(items: Iterable, size: int) -> Iterator[list]:
    """`itertools.batched` (Python 3.12+; the project supports 3.11)."""
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
