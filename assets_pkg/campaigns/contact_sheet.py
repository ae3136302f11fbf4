"""A contact sheet of the retrieved candidates: thumbnails side by side with rank, score and path."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps

from assets_pkg.atomic_files import write_atomically
from assets_pkg.catalog.mirror import read_image_bytes
from assets_pkg.index.lance_index import Hit
from assets_pkg.pictures import decode_upright_rgb

THUMB = 320
CAPTION = 56


def write_contact_sheet(mirror_table: Path, hits: list[Hit], segment_dir: Path) -> Path:
    """The sheet of `hits` (numbered from 1, with score and path) as `<segment_dir>/candidates.png`."""
    images = read_image_bytes(mirror_table, [h.image_id for h in hits])
    sheet = contact_sheet([images[h.image_id] for h in hits],
                          [f"#{rank} score {h.score:.3f}\n{h.path}" for rank, h in enumerate(hits, start=1)])
    path = segment_dir / "candidates.png"
    write_atomically(path, sheet)
    return path


def contact_sheet(images: list[bytes], captions: list[str]) -> bytes:
    sheet = Image.new("RGB", (THUMB * max(1, len(images)), THUMB + CAPTION), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=16)
    for i, (data, caption) in enumerate(zip(images, captions)):
        thumb = ImageOps.fit(decode_upright_rgb(data), (THUMB - 8, THUMB - 8))
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
