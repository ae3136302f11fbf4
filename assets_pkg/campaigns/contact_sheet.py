"""A contact sheet of the retrieved candidates: thumbnails side by side with rank, score and path."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw, ImageFont, ImageOps

THUMB = 320
CAPTION = 56


def contact_sheet(images: list[bytes], captions: list[str]) -> bytes:
    sheet = Image.new("RGB", (THUMB * max(1, len(images)), THUMB + CAPTION), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=16)
    for i, (data, caption) in enumerate(zip(images, captions)):
        with Image.open(io.BytesIO(data)) as img:
            thumb = ImageOps.fit(ImageOps.exif_transpose(img).convert("RGB"), (THUMB - 8, THUMB - 8))
        sheet.paste(thumb, (i * THUMB + 4, 4))
        for line_no, line in enumerate(caption.splitlines()[:2]):
            draw.text((i * THUMB + 8, THUMB + 4 + 22 * line_no), _fit(draw, line, font), fill="black", font=font)
    out = io.BytesIO()
    sheet.save(out, format="PNG")
    return out.getvalue()


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int = THUMB - 12) -> str:
    while text and draw.textlength(text, font=font) > width:
        text = text[:-2] + "…"
    return text
