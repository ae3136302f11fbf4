"""A local, free, deterministic ad layout: the seed photo, the brand logo on a card, and a headline band.

It needs no network and no model, so it is the default generator and the one the tests run end to end.
"""

from __future__ import annotations

import io
from typing import Callable

from PIL import Image, ImageDraw, ImageFont, ImageOps

from assets_pkg.pictures import UndecodableImage, decode_upright_rgb, decode_upright_rgba

from .base import GeneratedImage, GenerationError, GenerationRequest

LAYOUT_VERSION = 2  # bump when the output changes (part of the cache key via parameters()); 2: pictures decoded as the embeddings decode them

# Proportions of the canvas's shorter side, so the layout looks the same at any size.
_MARGIN = 0.04
_LOGO_CARD = 0.22
_CARD_PADDING = 0.02
_CARD_RADIUS = 0.03
_FONT_MAX = 0.075
_FONT_MIN = 0.035
_BAND_PADDING = 0.035
_BAND_ALPHA = 170  # dark enough for white text on any photo, light enough to see the photo through
_MAX_LINES = 3


class LocalCompositor:
    generator_id = f"local-compositor/v{LAYOUT_VERSION}"
    cost_per_image_usd = 0.0

    def __init__(self, width: int = 1024, height: int = 1024):
        if width < 64 or height < 64:
            raise ValueError(f"canvas {width}x{height} is too small for the layout (min 64x64)")
        self.width = width
        self.height = height

    def parameters(self) -> dict:
        return {"width": self.width, "height": self.height, "layout": LAYOUT_VERSION}

    def generate(
        self,
        request: GenerationRequest,
        on_created: Callable[[str], None] | None = None,  # no paid remote job here: never called
        resume_prediction_id: str | None = None,  # nothing to resume: ignored
    ) -> GeneratedImage:
        # Decoded as the embeddings saw them: upright, first frame, 16-bit scaled; the seed's transparency on
        # white, the brand's kept as alpha so the card shows through it.
        seed = _decode(decode_upright_rgb, request.seed_image, "seed image")
        brand = _decode(decode_upright_rgba, request.brand_image, "brand image")

        canvas = ImageOps.fit(seed, (self.width, self.height), method=Image.Resampling.LANCZOS).convert("RGBA")
        unit = min(self.width, self.height)
        if request.headline.strip():
            canvas = _draw_headline_band(canvas, request.headline.strip(), unit)
        _paste_logo_card(canvas, brand, unit)

        out = io.BytesIO()
        # No metadata and fixed settings: the same request gives byte-identical PNGs (the cache relies on it).
        canvas.convert("RGB").save(out, format="PNG")
        return GeneratedImage(png=out.getvalue(), cost_usd=0.0, details={"layout": LAYOUT_VERSION})


def _decode(decode: Callable[[bytes], Image.Image], data: bytes, what: str) -> Image.Image:
    try:
        return decode(data)
    except UndecodableImage as err:
        raise GenerationError(f"cannot decode the {what}: {err}") from None


def _paste_logo_card(canvas: Image.Image, brand: Image.Image, unit: int) -> None:
    """A rounded white card in the top-right corner with the brand image contained in it."""
    card = round(unit * _LOGO_CARD)
    margin = round(unit * _MARGIN)
    padding = round(unit * _CARD_PADDING)
    left, top = canvas.width - margin - card, margin

    draw = ImageDraw.Draw(canvas)
    draw.rounded_rectangle(
        (left, top, left + card - 1, top + card - 1), radius=round(unit * _CARD_RADIUS), fill=(255, 255, 255, 255)
    )
    logo = ImageOps.contain(brand, (card - 2 * padding, card - 2 * padding), method=Image.Resampling.LANCZOS)
    # Centre the logo on the card; its alpha channel is the paste mask so transparent parts show the card.
    x = left + (card - logo.width) // 2
    y = top + (card - logo.height) // 2
    canvas.alpha_composite(logo, (x, y))


def _draw_headline_band(canvas: Image.Image, headline: str, unit: int) -> Image.Image:
    """A semi-opaque dark bar across the bottom with the headline in large white centred text."""
    padding = round(unit * _BAND_PADDING)
    text_width = canvas.width - 2 * padding
    font, lines = _fit_text(headline, text_width, unit)
    line_height = round(font.size * 1.25)
    band_height = len(lines) * line_height + 2 * padding

    overlay = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    band_top = canvas.height - band_height
    draw.rectangle((0, band_top, canvas.width, canvas.height), fill=(0, 0, 0, _BAND_ALPHA))
    for i, line in enumerate(lines):
        y = band_top + padding + i * line_height + line_height // 2
        draw.text((canvas.width // 2, y), line, font=font, fill=(255, 255, 255, 255), anchor="mm")
    return Image.alpha_composite(canvas, overlay)


def _fit_text(text: str, max_width: int, unit: int) -> tuple[ImageFont.FreeTypeFont, list[str]]:
    """The largest font size at which the text wraps into at most _MAX_LINES lines that each fit."""
    size = round(unit * _FONT_MAX)
    smallest = max(round(unit * _FONT_MIN), 8)
    while True:
        font = ImageFont.load_default(size=size)
        lines = _wrap(text, font, max_width)
        fits = len(lines) <= _MAX_LINES and all(font.getlength(line) <= max_width for line in lines)
        if fits or size <= smallest:
            break
        size -= 2
    if len(lines) > _MAX_LINES:
        # Still too long at the smallest size: say so visibly rather than overflow the band.
        lines = lines[: _MAX_LINES - 1] + [lines[_MAX_LINES - 1] + "..."]
    return font, lines


def _wrap(text: str, font: ImageFont.FreeTypeFont, max_width: int) -> list[str]:
    """Greedy word wrap by measured width; a single word wider than the line gets a line of its own."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if current and font.getlength(candidate) > max_width:
            lines.append(current)
            current = word
        else:
            current = candidate
    if current:
        lines.append(current)
    return lines
