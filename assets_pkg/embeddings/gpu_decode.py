"""CLIP pixels from image bytes on the GPU: batched nvJPEG decoding, EXIF orientation, resize, crop, normalise.

Two steps, so a thread can do the first for batch k+1 while the GPU runs batch k:
  `host_batch(datas)`: CPU only and cheap. Reads each image's header (PIL, no pixel decoding): RGB JPEGs
      are queued for the GPU with their EXIF orientation; anything else (PNG, WebP, GIF, CMYK or
      greyscale JPEG, ...) is decoded and preprocessed right there by the CPU fallback.
  `pixels(host)`: decodes the queued JPEGs in one `torchvision.io.decode_jpeg` call on the device,
      turns them upright, then resizes (shortest side, antialiased), centre-crops and normalises with
      the model's `preprocess_cfg`, exactly the steps of open_clip's PIL transform.
The device is a parameter: on CPU the same code runs on libjpeg, which is how it is tested without a GPU.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Callable

import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from assets_pkg.catalog.probe import undecodable

EXIF_ORIENTATION = 0x0112


@dataclass
class HostBatch:
    size: int  # images in the batch; slots are 0..size-1 in input order
    jpegs: list[torch.Tensor] = field(default_factory=list)  # encoded bytes as 1-D uint8 CPU tensors
    jpeg_slots: list[int] = field(default_factory=list)
    orientations: list[int] = field(default_factory=list)  # EXIF orientation of each queued JPEG, 1 = upright
    ready: dict[int, torch.Tensor] = field(default_factory=dict)  # slot -> CPU-preprocessed (3, H, W) pixels
    failed: dict[int, str] = field(default_factory=dict)  # slot -> reason


class GpuPreprocessor:
    """`cpu_fallback(bytes) -> (3, H, W) float tensor` decodes and preprocesses what the GPU does not (and raises
    on undecodable bytes); raises ValueError for a preprocessing it does not reproduce (the caller then stays on CPU)."""

    def __init__(self, preprocess_cfg: dict, device: str, cpu_fallback: Callable[[bytes], torch.Tensor]):
        size = preprocess_cfg["size"]
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.resize_mode = preprocess_cfg.get("resize_mode", "shortest")
        if self.resize_mode not in ("shortest", "squash") or (self.resize_mode == "shortest" and self.size[0] != self.size[1]):
            raise ValueError(f"GPU preprocessing does not reproduce resize_mode {self.resize_mode!r} at size {self.size}")
        bilinear = preprocess_cfg.get("interpolation") == "bilinear"  # open_clip: anything else is bicubic
        self.interpolation = InterpolationMode.BILINEAR if bilinear else InterpolationMode.BICUBIC
        self.mean = torch.tensor(preprocess_cfg["mean"], device=device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(preprocess_cfg["std"], device=device).view(1, 3, 1, 1) * 255
        self.device = device
        self.cpu_fallback = cpu_fallback

    def host_batch(self, datas: list[bytes]) -> HostBatch:
        host = HostBatch(size=len(datas))
        for slot, data in enumerate(datas):
            orientation = _jpeg_orientation(data)
            if orientation is not None:
                host.jpegs.append(torch.frombuffer(bytearray(data), dtype=torch.uint8))
                host.jpeg_slots.append(slot)
                host.orientations.append(orientation)
            else:
                self._fall_back(host, slot, data)
        return host

    def pixels(self, host: HostBatch) -> tuple[list[int], torch.Tensor, dict[int, str]]:
        """(slots that decoded, their (n, 3, H, W) float32 pixels on the device, failed slot -> reason)."""
        upright = {slot: _upright(image, orientation)
                   for slot, image, orientation in zip(host.jpeg_slots, self._decode(host), host.orientations)
                   if image is not None}
        by_shape: dict[tuple, list[int]] = {}
        for slot, image in upright.items():
            by_shape.setdefault(tuple(image.shape), []).append(slot)
        out = {slot: pixels.to(self.device) for slot, pixels in host.ready.items()}
        for slots in by_shape.values():  # same-size images are resized in one call
            out.update(zip(slots, self._preprocess(torch.stack([upright[s] for s in slots]))))
        slots = sorted(out)
        pixels = torch.stack([out[s] for s in slots]) if slots else torch.empty(0, 3, *self.size, device=self.device)
        return slots, pixels, host.failed

    def _decode(self, host: HostBatch) -> list[torch.Tensor | None]:
        if not host.jpegs:
            return []
        try:
            return decode_jpeg(host.jpegs, mode=ImageReadMode.RGB, device=self.device)
        except RuntimeError:  # one stream nvJPEG rejects fails the whole call: retry one by one
            decoded = []
            for slot, jpeg in zip(host.jpeg_slots, host.jpegs):
                try:
                    decoded.append(decode_jpeg(jpeg, mode=ImageReadMode.RGB, device=self.device))
                except RuntimeError:
                    decoded.append(None)
                    self._fall_back(host, slot, jpeg.numpy().tobytes())
            return decoded

    def _fall_back(self, host: HostBatch, slot: int, data: bytes) -> None:
        try:
            host.ready[slot] = self.cpu_fallback(data)
        except Exception as err:  # any decode failure quarantines this image, never the batch
            host.failed[slot] = undecodable(data, err, "for embedding")

    def _preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """(n, 3, H, W) uint8 -> (n, 3, S, S) normalised float32, as open_clip's Resize, CenterCrop, ToTensor, Normalize."""
        x = images.float()
        if self.resize_mode == "squash":
            x = F.resize(x, list(self.size), interpolation=self.interpolation, antialias=True)
        else:
            x = F.center_crop(F.resize(x, [self.size[0]], interpolation=self.interpolation, antialias=True), list(self.size))
        x = x.round_().clamp_(0, 255)  # PIL resizes to 8-bit pixels
        return (x - self.mean) / self.std


def _jpeg_orientation(data: bytes) -> int | None:
    """The EXIF orientation of a 3-channel JPEG, read from its header; None for anything the GPU should not decode."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format != "JPEG" or img.mode != "RGB":
                return None
            return int(img.getexif().get(EXIF_ORIENTATION, 1))
    except Exception:
        return None  # the CPU fallback reports why


def _upright(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """Apply an EXIF orientation to a (3, H, W) tensor, as PIL's ImageOps.exif_transpose does."""
    if orientation == 2:
        return image.flip(-1)
    if orientation == 3:
        return image.flip(-2, -1)
    if orientation == 4:
        return image.flip(-2)
    if orientation == 5:
        return image.transpose(-2, -1)
    if orientation == 6:
        return image.rot90(-1, (-2, -1))  # 90 degrees clockwise
    if orientation == 7:
        return image.transpose(-2, -1).flip(-2, -1)
    if orientation == 8:
        return image.rot90(1, (-2, -1))
    return image
