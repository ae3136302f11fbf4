"""Batched CLIP encoding of image bytes and text, with decoding overlapped with compute.

CPU: a thread pool decodes and preprocesses the next batch while the model runs on this one (PIL and
torch both release the GIL). CUDA: the model runs under bf16 autocast; vectors come back float32.
Every vector is L2-normalised.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np
import torch
from PIL import Image, ImageOps

from assets_pkg.embeddings.model import LoadedClip


@dataclass
class EncodedBatch:
    image_ids: list[str]
    vectors: np.ndarray  # (n, dim) float32, unit norm
    failed: list[tuple[str, str]] = field(default_factory=list)  # (image_id, reason)


def pick_device(requested: str = "auto") -> str:
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {requested!r} requested but CUDA is not available")
    return requested


def decode_upright_rgb(data: bytes) -> Image.Image:
    """The image as a person sees it: first frame, EXIF orientation applied, 8-bit RGB.

    A plain `convert("RGB")` is wrong for some modes the catalog accepts: 16-bit greyscale is
    clipped (almost everything turns white) and transparent pixels take whatever colour hides
    under them (often black). CMYK and the other modes convert correctly.
    """
    with Image.open(io.BytesIO(data)) as img:
        img.seek(0)  # the first frame of an animated GIF or WebP
        upright = ImageOps.exif_transpose(img)
    if upright.mode.startswith("I"):  # 16-bit greyscale PNG ("I;16", or "I" from older Pillow)
        wide = np.asarray(upright).astype(np.int64)  # "I;16B" comes big-endian; this makes it native
        upright = Image.fromarray((np.clip(wide, 0, 65535) >> 8).astype(np.uint8), "L")
    if upright.has_transparency_data:  # alpha channel, or a transparent palette entry or colour
        on_white = Image.new("RGBA", upright.size, (255, 255, 255, 255))
        upright = Image.alpha_composite(on_white, upright.convert("RGBA"))
    return upright.convert("RGB")


class ClipEncoder:
    def __init__(self, clip: LoadedClip, device: str = "cpu", batch_size: int = 64, decode_workers: int = 2):
        self.clip = clip
        self.device = device
        self.batch_size = batch_size
        self._pool = ThreadPoolExecutor(max_workers=max(1, decode_workers), thread_name_prefix="decode")

    @property
    def model_key(self) -> str:
        return self.clip.model_key

    @property
    def dim(self) -> int:
        return self.clip.dim

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _preprocess(self, item: tuple[str, bytes]) -> tuple[str, torch.Tensor | None, str | None]:
        image_id, data = item
        try:
            return image_id, self.clip.preprocess(decode_upright_rgb(data)), None
        except Exception as err:  # any decode failure quarantines this image, never the batch
            return image_id, None, f"cannot decode for embedding: {type(err).__name__}: {err}"

    def _prepared_batches(self, items: Iterable[tuple[str, bytes]]) -> Iterator[list]:
        """Decode batch k+1 in the pool while the caller encodes batch k."""
        pending = None
        for chunk in _chunks(items, self.batch_size):
            submitted = [self._pool.submit(self._preprocess, item) for item in chunk]
            if pending is not None:
                yield [f.result() for f in pending]
            pending = submitted
        if pending is not None:
            yield [f.result() for f in pending]

    def encode_images(self, items: Iterable[tuple[str, bytes]]) -> Iterator[EncodedBatch]:
        for prepared in self._prepared_batches(items):
            ok = [(i, t) for i, t, _ in prepared if t is not None]
            failed = [(i, reason) for i, t, reason in prepared if t is None]
            if not ok:
                yield EncodedBatch([], np.zeros((0, self.dim), np.float32), failed)
                continue
            pixels = torch.stack([t for _, t in ok]).to(self.device, non_blocking=True)
            with torch.inference_mode(), self._autocast():
                features = self.clip.model.encode_image(pixels)
            yield EncodedBatch([i for i, _ in ok], _unit_float32(features), failed)

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


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
