"""Validate one image's bytes with Pillow: allowed format, full decode, decompression-bomb limit.

A reason for refusing bytes is one line that names the format (from Pillow, else from the file's
signature, else "unknown format") and the problem: "cannot decode JPEG: image file is truncated".
"""

from __future__ import annotations

import hashlib
import io
import re
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
# File signatures, for naming the format when Pillow fails before it says (a header claiming a huge size).
_SIGNATURES = [(b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
               (b"BM", "BMP"), (b"II*\0", "TIFF"), (b"MM\0*", "TIFF")]
_PIXELS_IN_PILLOW_MESSAGE = re.compile(r"\((\d+) pixels\)")


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
    """Facts about a valid image, or `InvalidImage` with a one-line reason a person can act on."""
    if not data:
        raise InvalidImage("empty file (0 bytes): no image in it")
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        raise InvalidImage(_unsupported("HEIC"))
    fmt = image_format(data)

    def too_big(pixels: str) -> InvalidImage:
        return InvalidImage(f"{fmt} with too many pixels ({pixels}over {max_pixels:,}): possible decompression "
                            "bomb; downscale the image")

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as img:
                fmt = FORMAT_ALIASES.get(img.format, img.format or fmt)
                if fmt not in ALLOWED_FORMATS:
                    raise InvalidImage(_unsupported(fmt))
                width, height = img.size
                if width * height > max_pixels:
                    raise too_big(f"{width}x{height}, ")
                if img.getexif().get(_EXIF_ORIENTATION, 1) in _SWAPPING_ORIENTATIONS:
                    width, height = height, width
                img.load()  # full decode: truncated and corrupt files fail here
        except InvalidImage:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning, MemoryError) as err:
            # Image.open raises these itself for headers that claim huge sizes, before we see the size.
            claimed = _PIXELS_IN_PILLOW_MESSAGE.search(str(err))
            raise too_big(f"{int(claimed.group(1)):,} claimed, " if claimed else "") from None
        except Image.UnidentifiedImageError:
            raise InvalidImage(f"not a recognised image file: {fmt}, not one of {', '.join(sorted(ALLOWED_FORMATS))} "
                               f"(the bytes start with {_first_bytes(data)})") from None
        except Exception as err:  # noqa: BLE001 - a corrupt file can raise anything from inside a Pillow plugin
            raise InvalidImage(undecodable(data, err, fmt=fmt)) from None
    return ImageFacts(content_hash(data), len(data), fmt, width, height)


def image_format(data: bytes) -> str:
    """The format the bytes' signature names (JPEG, PNG, GIF, WEBP, BMP, TIFF, HEIC), else "unknown format"."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return "HEIC"
    return next((fmt for signature, fmt in _SIGNATURES if data.startswith(signature)), "unknown format")


def undecodable(data: bytes, err: BaseException, purpose: str = "", fmt: str | None = None) -> str:
    """"cannot decode JPEG[ purpose]: the error", on one line, for bytes a decoder refused."""
    message = " ".join(str(err).split()) or type(err).__name__
    return f"cannot decode {fmt or image_format(data)}{' ' + purpose if purpose else ''}: {message}"


def _first_bytes(data: bytes, n: int = 12) -> str:
    head = data[:n]
    text = head.decode("ascii", errors="replace")
    if all(c.isprintable() or c in "\t\r\n" for c in text) and "\ufffd" not in text:
        return repr(text)
    return "0x" + head.hex()


def _unsupported(fmt: str) -> str:
    return f"unsupported format {fmt}; convert it to one of {', '.join(sorted(ALLOWED_FORMATS))}"
