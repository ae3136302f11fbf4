"""Validate one image's bytes with Pillow: allowed format, full decode, decompression-bomb limit."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image

ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF"})
# Cameras and phones write JPEGs with extra images appended (MPF); Pillow calls them MPO. The first
# image is a plain JPEG, so they are accepted and recorded as JPEG.
FORMAT_ALIASES = {"MPO": "JPEG"}
# Pillow's own default is ~89 Mpx with a warning and 2x that as an error; we make the limit an error.
MAX_PIXELS = 64_000_000
# EXIF orientations 5-8 rotate by 90 degrees: the displayed width and height swap.
_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}
_EXIF_ORIENTATION = 0x0112
# Formats Pillow cannot open but people do drop into photo folders: name them instead of
# "not a recognised image file", so the fix (convert to JPEG) is obvious. ISO-BMFF brand at byte 8.
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}


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
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        raise InvalidImage(_unsupported("HEIC"))
    fmt = "image"
    too_big = f"too many pixels (over {max_pixels:,}): possible decompression bomb; downscale the image"
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as img:
                fmt = FORMAT_ALIASES.get(img.format, img.format or "unknown")
                if fmt not in ALLOWED_FORMATS:
                    raise InvalidImage(_unsupported(fmt))
                width, height = img.size
                if width * height > max_pixels:
                    raise InvalidImage(f"too many pixels ({width}x{height}, over {max_pixels:,}): "
                                       "possible decompression bomb; downscale the image")
                if img.getexif().get(_EXIF_ORIENTATION, 1) in _SWAPPING_ORIENTATIONS:
                    width, height = height, width
                img.load()  # full decode: truncated and corrupt files fail here
        except InvalidImage:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning, MemoryError):
            # Image.open raises these itself for headers that claim huge sizes, before we see the size.
            raise InvalidImage(too_big) from None
        except Image.UnidentifiedImageError:
            raise InvalidImage("not a recognised image file") from None
        except Exception as err:  # noqa: BLE001 - a corrupt file can raise anything from inside a Pillow plugin
            raise InvalidImage(f"cannot decode {fmt}: {err or type(err).__name__}") from None
    return ImageFacts(content_hash(data), len(data), fmt, width, height)


def _unsupported(fmt: str) -> str:
    return f"unsupported format {fmt}; convert it to one of {', '.join(sorted(ALLOWED_FORMATS))}"
