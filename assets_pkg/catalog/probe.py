"""Validate one image's bytes with Pillow: allowed format, full decode, decompression-bomb limit."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image

ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF"})
# Pillow's own default is ~89 Mpx with a warning and 2x that as an error; we make the limit an error.
MAX_PIXELS = 64_000_000
# EXIF orientations 5-8 rotate by 90 degrees: the displayed width and height swap.
_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}
_EXIF_ORIENTATION = 0x0112


class InvalidImage(ValueError):
    """The bytes are not an image this pipeline accepts; the message is the quarantine reason."""


@dataclass(frozen=True)
class ImageFacts:
    image_id: str  # sha256 of the bytes
    size_bytes: int
    format: str
    width: int  # as displayed, EXIF orientation applied
    height: int


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def probe_image(data: bytes, max_pixels: int = MAX_PIXELS) -> ImageFacts:
    """Facts about a valid image, or `InvalidImage` with a reason a person can act on."""
    if not data:
        raise InvalidImage("empty file")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as img:
                fmt = img.format or "unknown"
                if fmt not in ALLOWED_FORMATS:
                    raise InvalidImage(f"unsupported format {fmt}; allowed: {', '.join(sorted(ALLOWED_FORMATS))}")
                width, height = img.size
                if width * height > max_pixels:
                    raise InvalidImage(f"too many pixels ({width}x{height} > {max_pixels}): possible decompression bomb")
                orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
                img.load()  # full decode: truncated and corrupt files fail here
        except InvalidImage:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise InvalidImage(f"decompression bomb: {err}") from None
        except Image.UnidentifiedImageError:
            raise InvalidImage("not a recognised image file") from None
        except (OSError, SyntaxError, ValueError, EOFError) as err:
            raise InvalidImage(f"cannot decode {fmt if 'fmt' in locals() else 'image'}: {err}") from None
    if orientation in _SWAPPING_ORIENTATIONS:
        width, height = height, width
    return ImageFacts(content_hash(data), len(data), fmt, width, height)
