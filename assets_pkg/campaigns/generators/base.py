"""The generator interface every ad-image backend implements, and the PNG normalisation they share."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Callable, Protocol

from PIL import Image


@dataclass(frozen=True)
class GenerationRequest:
    seed_image: bytes  # the chosen photo, any Pillow-readable format (JPEG/PNG/WEBP/GIF)
    brand_image: bytes  # the brand image (PNG, may have alpha)
    prompt: str  # the full instruction for a generative model
    headline: str  # short ad text (e.g. "Made for city life") the compositor writes on the ad


@dataclass(frozen=True)
class GeneratedImage:
    png: bytes  # always PNG bytes
    cost_usd: float
    details: dict = field(default_factory=dict)  # JSON-serialisable facts, never a secret


class GenerationError(RuntimeError):
    """Generation failed; the message says what failed and never contains an API token.

    A remote generator also says what became of the paid job, so the caller knows whether to keep its id:
    `prediction_id` is the job this failure belongs to (None when none was made), and `resumable` is True when
    that job is paid for and its output can still be collected later, by passing the id back as
    resume_prediction_id (the output download failed, the output was not an image, the deadline passed while
    it ran). False when there is nothing left to collect: no job, or it failed, was canceled or was refused.
    """

    prediction_id: str | None = None  # class defaults: a subclass that sets neither still answers both
    resumable: bool = False

    def __init__(self, message: str, *, prediction_id: str | None = None, resumable: bool = False):
        super().__init__(message)
        self.prediction_id = prediction_id
        self.resumable = resumable


class TransientGenerationError(GenerationError):
    """The service was busy, down or slow past our bounds: the same request may well succeed later."""


class ImageGenerator(Protocol):
    generator_id: str  # e.g. "local-compositor/v2", "replicate/flux-kontext-apps/multi-image-kontext-max"
    cost_per_image_usd: float  # what one new image costs (0 for a local one): the quality fallback's budget unit

    def parameters(self) -> dict:
        """JSON-serialisable settings that change the output; part of the cache key, so no secrets."""
        ...

    def generate(
        self,
        request: GenerationRequest,
        on_created: Callable[[str], None] | None = None,
        resume_prediction_id: str | None = None,
    ) -> GeneratedImage:
        """One image. A remote generator calls on_created(job_id) once it has started paid work, and takes
        that id back as resume_prediction_id to finish the job after a crash or a resumable GenerationError;
        a local one ignores both."""
        ...


def to_png(data: bytes) -> bytes:
    """The image as PNG bytes; raises ValueError when the bytes do not decode as an image.

    PNG input comes back unchanged so a generator's output is stored byte for byte as served.
    """
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # full decode: a truncated file fails here, not later in a reader
            if img.format == "PNG":
                return data
            # Keep transparency when there is some; CMYK, palette and the like become RGB(A).
            has_alpha = img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
            converted = img.convert("RGBA" if has_alpha else "RGB")
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as err:
        raise ValueError(f"not a decodable image: {err}") from None
    out = io.BytesIO()
    converted.save(out, format="PNG")
    return out.getvalue()
