"""Image bytes decoded as a person sees them, the one way every stage that looks at pixels reads a photo.

The embeddings, the contact sheet, the previews and the ad compositor all decode here, so a photo the
catalog accepts (CMYK, 16-bit greyscale, transparency, EXIF orientation, animation) looks the same in
each: what CLIP embedded is what the reviewer sees and what the ad is built from.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps

# What Pillow raises for bytes that are not a decodable image (unknown format, truncated, garbled, a bomb).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


class UndecodableImage(ValueError):
    """The bytes do not decode as an image; the message is Pillow's reason."""


def decode_upright_rgb(data: bytes, *, draft_size: tuple[int, int] | None = None) -> Image.Image:
    """The image as a person sees it: first frame, EXIF orientation applied, 8-bit RGB.

    `draft_size` lets a JPEG decode at 1/2, 1/4 or 1/8 scale (in the DCT, much cheaper) while staying at
    least that size; other formats ignore it. Without it, full resolution.

    A plain `convert("RGB")` is wrong for some modes the catalog accepts: 16-bit greyscale is
    clipped (almost everything turns white) and transparent pixels take whatever colour hides
    under them (often black). CMYK and the other modes convert correctly.
    """
    upright = _upright_8bit(data, draft_size)
    if upright.has_transparency_data:  # alpha channel, or a transparent palette entry or colour
        on_white = Image.new("RGBA", upright.size, (255, 255, 255, 255))
        upright = Image.alpha_composite(on_white, upright.convert("RGBA"))
    return upright.convert("RGB")


def decode_upright_rgba(data: bytes) -> Image.Image:
    """Like `decode_upright_rgb` but transparency is kept as alpha, for a picture laid over another."""
    return _upright_8bit(data, None).convert("RGBA")


def _upright_8bit(data: bytes, draft_size: tuple[int, int] | None) -> Image.Image:
    """First frame, EXIF orientation applied, 16-bit greyscale scaled to 8 bit; otherwise the stored mode."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            if draft_size:
                img.draft(img.mode, draft_size)
            img.seek(0)  # the first frame of an animated GIF or WebP
            upright = ImageOps.exif_transpose(img)  # a new, fully decoded image: decode errors surface here
    except _DECODE_ERRORS as err:
        raise UndecodableImage(str(err)) from err
    if upright.mode.startswith("I"):  # 16-bit greyscale PNG ("I;16", or "I" from older Pillow)
        wide = np.asarray(upright).astype(np.int64)  # "I;16B" comes big-endian; this makes it native
        upright = Image.fromarray((np.clip(wide, 0, 65535) >> 8).astype(np.uint8), "L")
    return upright
