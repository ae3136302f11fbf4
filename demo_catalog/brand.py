"""The demo brand image: a logo badge with a transparent surround, like a real exported logo."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

from assets_pkg.atomic_files import write_atomically
from demo_catalog.encoding import encode_image
from demo_catalog.primitives import ellipse


def make_brand_image(path: Path, name: str = "Bricks", tagline: str = "pet food") -> Path:
    """A 512x512 RGBA logo: a rounded badge with a paw print, the brand name and the tagline.

    Rewrites `path` only when the bytes differ, so asking twice for the same logo keeps its mtime.
    """
    ss = 2  # drawn at twice the size and scaled down, which anti-aliases every edge
    side = 512 * ss
    badge = (40 * ss, 40 * ss, side - 40 * ss, side - 40 * ss)
    orange, cream, brown = (236, 112, 38), (255, 240, 214), (92, 46, 20)

    # A soft drop shadow gives the badge partially transparent edges, like a real exported logo.
    shadow = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    ImageDraw.Draw(shadow).rounded_rectangle(_shift(badge, 0, 10 * ss), radius=110 * ss, fill=(0, 0, 0, 110))
    img = shadow.filter(ImageFilter.GaussianBlur(12 * ss))

    draw = ImageDraw.Draw(img)
    draw.rounded_rectangle(badge, radius=110 * ss, fill=orange)
    draw.rounded_rectangle(_shift(badge, 0, 0, inset=22 * ss), radius=92 * ss, outline=cream, width=6 * ss)

    # Paw print: one pad and four toes.
    cx, cy = side // 2, 180 * ss
    ellipse(draw, cx, cy + 28 * ss, 52 * ss, 42 * ss, cream)
    for dx, dy, angle in ((-70, -30, -25), (-26, -70, -8), (26, -70, 8), (70, -30, 25)):
        ellipse(draw, cx + dx * ss, cy + dy * ss, 20 * ss, 27 * ss, cream, angle=angle)

    max_text_width = side - 2 * 90 * ss
    name_font = _fitting_font(draw, name, 150 * ss, max_text_width)
    draw.text((cx, 318 * ss), name, font=name_font, fill=(255, 255, 255), anchor="mm",
              stroke_width=3 * ss, stroke_fill=brown)
    tag_font = _fitting_font(draw, tagline.upper(), 44 * ss, max_text_width)
    draw.text((cx, 398 * ss), tagline.upper(), font=tag_font, fill=cream, anchor="mm")

    img = img.resize((512, 512), Image.Resampling.LANCZOS)
    path = Path(path)
    data = encode_image(img, "PNG")
    if not (path.exists() and path.read_bytes() == data):
        write_atomically(path, data)
    return path


def _shift(box, dx, dy, inset=0):
    x0, y0, x1, y1 = box
    return (x0 + dx + inset, y0 + dy + inset, x1 + dx - inset, y1 + dy - inset)


def _fitting_font(draw: ImageDraw.ImageDraw, text: str, size: int, max_width: int) -> ImageFont.FreeTypeFont:
    # load_default(size=) is Pillow's bundled font: no font file to ship or find on the system.
    while size > 8:
        font = ImageFont.load_default(size=size)
        left, _, right, _ = draw.textbbox((0, 0), text, font=font)
        if right - left <= max_width:
            return font
        size = int(size * 0.9)
    return ImageFont.load_default(size=size)
