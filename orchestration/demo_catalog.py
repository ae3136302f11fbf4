"""A self-contained demo image catalog, drawn procedurally so the demo runs offline.

The pipeline wants "a brand's folder of real photos". For a demo with no downloads we paint simple
illustrated photos instead: an animal drawn from ellipses and polygons, placed in a varied scene,
softened and given film grain so the files behave like photos (realistic JPEG sizes, no flat
colour). Every picture is a pure function of (seed, subject, index, size), so the catalog is
byte-for-byte reproducible and a re-run leaves existing files untouched.

Layout written under `data_dir` (the sub-folder name is the label the catalog scan picks up):

    images/<subject>/<subject>-01.jpg, <subject>-02.png, ...   (formats alternate)
    brand/brand.png                                             (RGBA logo badge)
"""

from __future__ import annotations

import io
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

SUBJECTS = ("dog", "cat", "parrot", "rabbit", "goldfish", "horse")

Color = tuple[int, int, int]


@dataclass(frozen=True)
class DemoCatalog:
    images_dir: Path
    brand_image: Path
    image_paths: list[Path]


def make_demo_catalog(data_dir: Path, images_per_subject: int = 12, subjects: Sequence[str] = SUBJECTS,
                      seed: int = 0, size: tuple[int, int] = (640, 480)) -> DemoCatalog:
    """Write the demo photos and the brand image under `data_dir`; return where they are.

    Formats alternate JPEG/PNG by index, so with two or more images every subject has both.
    A file that already exists is left exactly as it is: a re-run is cheap, keeps every mtime (so
    the catalog scan's (size, mtime) shortcut holds) and never clobbers a photo or logo someone
    put in its place. Delete the folder to draw it afresh, e.g. with another seed or size.
    """
    unknown = [s for s in subjects if s not in _ANIMALS]
    if unknown:
        raise ValueError(f"no drawing for subjects {unknown}; known: {sorted(_ANIMALS)}")
    if images_per_subject < 1:
        raise ValueError("images_per_subject must be at least 1")
    if seed < 0:
        raise ValueError("seed must be a non-negative integer")
    width, height = size
    if width < 64 or height < 64:
        raise ValueError(f"size {size} is too small to draw in; use at least 64x64")

    data_dir = Path(data_dir)
    images_dir = data_dir / "images"
    paths = []
    for subject in subjects:
        for index in range(images_per_subject):
            ext, fmt = (".jpg", "JPEG") if index % 2 == 0 else (".png", "PNG")
            path = images_dir / subject / f"{subject}-{index + 1:02d}{ext}"
            if not path.exists():
                picture = draw_demo_photo(subject, index, seed=seed, size=(width, height))
                _write_atomically(path, _encode(picture, fmt))
            paths.append(path)
    brand = data_dir / "brand" / "brand.png"
    if not brand.exists():
        make_brand_image(brand)
    return DemoCatalog(images_dir=images_dir, brand_image=brand, image_paths=paths)


def draw_demo_photo(subject: str, index: int, seed: int = 0, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """One illustrated photo of `subject` as an RGB image; the same arguments give the same pixels."""
    # crc32, not hash(): Python salts str hashes per process, which would break determinism.
    subject_key = zlib.crc32(subject.encode())
    scenes = _SCENES_FOR[subject]
    # Cycling through the subject's scenes guarantees variety even in a set of two or three; the
    # seed only picks where the cycle starts.
    start = int(np.random.default_rng([seed, subject_key]).integers(len(scenes)))
    scene_name = scenes[(index + start) % len(scenes)]
    rng = np.random.default_rng([seed, subject_key, index])
    scene = _SCENES[scene_name](rng, size)
    if scene_name == "pond":
        _place_fish_in_pond(scene, rng)
    else:
        _place_animal(scene, _ANIMALS[subject](rng), rng)
    return _photo_finish(scene.image, rng)


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
    _ellipse(draw, cx, cy + 28 * ss, 52 * ss, 42 * ss, cream)
    for dx, dy, angle in ((-70, -30, -25), (-26, -70, -8), (26, -70, 8), (70, -30, 25)):
        _ellipse(draw, cx + dx * ss, cy + dy * ss, 20 * ss, 27 * ss, cream, angle=angle)

    max_text_width = side - 2 * 90 * ss
    name_font = _fitting_font(draw, name, 150 * ss, max_text_width)
    draw.text((cx, 318 * ss), name, font=name_font, fill=(255, 255, 255), anchor="mm",
              stroke_width=3 * ss, stroke_fill=brown)
    tag_font = _fitting_font(draw, tagline.upper(), 44 * ss, max_text_width)
    draw.text((cx, 398 * ss), tagline.upper(), font=tag_font, fill=cream, anchor="mm")

    img = img.resize((512, 512), Image.Resampling.LANCZOS)
    path = Path(path)
    data = _encode(img, "PNG")
    if not (path.exists() and path.read_bytes() == data):
        _write_atomically(path, data)
    return path


# --- files -------------------------------------------------------------------------------------

def _encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.save(buf, "JPEG", quality=90)
    else:
        # Level 1 is five times faster than the default 6 and, on grainy photos, barely bigger.
        img.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename, so a scanner running alongside never sees half a file. The dot prefix
    # keeps the temporary name out of folder scans that skip hidden files.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


# --- drawing helpers ---------------------------------------------------------------------------

def _ellipse(draw: ImageDraw.ImageDraw, cx: float, cy: float, rx: float, ry: float, fill,
             angle: float = 0.0, outline=None, width: int = 1) -> None:
    """An ellipse centred at (cx, cy), rotated by `angle` degrees (clockwise on screen)."""
    if angle == 0:
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=fill, outline=outline, width=width)
        return
    t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    a = math.radians(angle)
    x, y = rx * np.cos(t), ry * np.sin(t)
    xs = cx + x * math.cos(a) - y * math.sin(a)
    ys = cy + x * math.sin(a) + y * math.cos(a)
    draw.polygon(list(zip(xs.tolist(), ys.tolist())), fill=fill, outline=outline, width=width)


def _bezier(points: Sequence[tuple[float, float]], n: int = 32) -> list[tuple[float, float]]:
    """Points along the Bezier curve with the given control points (any degree)."""
    p = np.asarray(points, dtype=float)
    k = len(p) - 1
    t = np.linspace(0, 1, n)[:, None]
    coeff = [math.comb(k, i) * t ** i * (1 - t) ** (k - i) for i in range(k + 1)]
    out = sum(c * p[i] for i, c in enumerate(coeff))
    return [tuple(q) for q in out.tolist()]


def _taper(draw: ImageDraw.ImageDraw, pts: Sequence[tuple[float, float]], r0: float, r1: float, fill) -> None:
    """A stroke along `pts` whose radius goes from r0 to r1: tails, ears, manes, stems."""
    n = len(pts)
    for i, (x, y) in enumerate(pts):
        r = r0 + (r1 - r0) * i / max(n - 1, 1)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
    # Circles alone leave a scalloped edge where samples are sparse; a polyline fills the gaps.
    for i in range(n - 1):
        r = r0 + (r1 - r0) * i / max(n - 1, 1)
        draw.line([pts[i], pts[i + 1]], fill=fill, width=max(1, int(2 * r)))


def _shade(c: Color, f: float) -> Color:
    return tuple(int(min(255, max(0, v * f))) for v in c)


def _mix(a: Color, b: Color, t: float) -> Color:
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))


def _jitter(rng: np.random.Generator, c: Color, amount: int = 14) -> Color:
    return tuple(min(255, max(0, v + int(rng.integers(-amount, amount + 1)))) for v in c)


def _pick(rng: np.random.Generator, options: Sequence):
    return options[int(rng.integers(len(options)))]


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


def _vertical_gradient(w: int, h: int, top: Color, bottom: Color) -> Image.Image:
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    rows = np.asarray(top, np.float32) * (1 - t) + np.asarray(bottom, np.float32) * t
    return Image.fromarray(np.broadcast_to(rows, (h, w, 3)).astype(np.uint8))


def _layer(w: int, h: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    img = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    return img, ImageDraw.Draw(img)


# --- scenes ------------------------------------------------------------------------------------
# A scene paints a background and says where the ground starts (`horizon`, a y in pixels);
# animals stand somewhere between the horizon and the bottom edge.

@dataclass
class _Scene:
    image: Image.Image
    horizon: int


def _sky(rng, w, h, horizon, top=(70, 130, 210), bottom=(190, 220, 245)) -> Image.Image:
    img = _vertical_gradient(w, h, _jitter(rng, top, 20), _jitter(rng, bottom, 10))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(1, 4))):  # clouds: a few overlapping white puffs
        cx, cy = rng.uniform(0, w), rng.uniform(0.05, 0.6) * horizon
        size = rng.uniform(0.04, 0.08) * w
        for _ in range(5):
            _ellipse(draw, cx + rng.uniform(-1.6, 1.6) * size, cy + rng.uniform(-0.4, 0.4) * size,
                     size * rng.uniform(0.8, 1.3), size * rng.uniform(0.5, 0.8), (250, 250, 252))
    return img


def _ground(img: Image.Image, horizon: int, top: Color, bottom: Color) -> ImageDraw.ImageDraw:
    w, h = img.size
    img.paste(_vertical_gradient(w, h - horizon, top, bottom), (0, horizon))
    return ImageDraw.Draw(img)


def _meadow(rng, size) -> _Scene:
    w, h = size
    horizon = int(h * rng.uniform(0.42, 0.55))
    img = _sky(rng, w, h, horizon)
    draw = ImageDraw.Draw(img)
    if rng.random() < 0.6:
        _ellipse(draw, rng.uniform(0.1, 0.9) * w, 0.12 * h, 0.05 * w, 0.05 * w, (255, 236, 150))
    for _ in range(3):  # rolling hills behind the field
        _ellipse(draw, rng.uniform(0, w), horizon + 0.02 * h, rng.uniform(0.25, 0.5) * w, 0.1 * h,
                 _jitter(rng, (90, 150, 80), 12))
    draw = _ground(img, horizon, _jitter(rng, (120, 180, 80)), _jitter(rng, (60, 130, 45)))
    for _ in range(int(w * 0.6)):  # grass blades, longer nearer the viewer
        x, y = rng.uniform(0, w), rng.uniform(horizon, h)
        length = 2 + 14 * (y - horizon) / (h - horizon)
        draw.line([(x, y), (x + rng.uniform(-3, 3), y - length)], fill=_jitter(rng, (70, 140, 50), 25), width=1)
    for _ in range(int(rng.integers(5, 20))):  # a few wild flowers
        x, y = rng.uniform(0, w), rng.uniform(horizon + 0.1 * (h - horizon), h)
        r = 1.5 + 3 * (y - horizon) / (h - horizon)
        _ellipse(draw, x, y, r, r, _pick(rng, [(250, 250, 250), (250, 220, 60), (230, 90, 120)]))
    return _Scene(img, horizon)


def _beach(rng, size) -> _Scene:
    w, h = size
    horizon = int(h * rng.uniform(0.38, 0.48))
    img = _sky(rng, w, h, horizon, top=(60, 140, 220), bottom=(200, 230, 250))
    shore = horizon + int(h * rng.uniform(0.1, 0.16))
    draw = _ground(img, horizon, _jitter(rng, (30, 90, 150)), _jitter(rng, (70, 170, 190)))
    for _ in range(25):  # glints on the water
        x, y = rng.uniform(0, w), rng.uniform(horizon + 3, shore)
        draw.line([(x, y), (x + rng.uniform(6, 20), y)], fill=(210, 235, 245), width=1)
    sand = _vertical_gradient(w, h - shore, _jitter(rng, (235, 215, 165)), _jitter(rng, (215, 185, 130)))
    img.paste(sand, (0, shore))
    # A wavy line of foam where the sea meets the sand.
    xs = np.linspace(0, w, 40)
    foam = [(float(x), shore + 3 * math.sin(x / 23 + rng.uniform(0, 6))) for x in xs]
    draw.line(foam, fill=(250, 250, 245), width=max(3, h // 90))
    for _ in range(int(rng.integers(4, 12))):  # shells and pebbles
        x, y = rng.uniform(0, w), rng.uniform(shore + 10, h)
        _ellipse(draw, x, y, rng.uniform(2, 5), rng.uniform(1.5, 3.5), _jitter(rng, (200, 170, 150), 30))
    return _Scene(img, shore)


def _living_room(rng, size) -> _Scene:
    w, h = size
    horizon = int(h * rng.uniform(0.5, 0.6))
    wall = _jitter(rng, _pick(rng, [(235, 220, 200), (200, 220, 215), (225, 205, 215), (215, 215, 230)]), 10)
    img = _vertical_gradient(w, h, _shade(wall, 1.04), _shade(wall, 0.88))
    draw = ImageDraw.Draw(img)
    # A window with sky, so the room reads as a room and not a flat backdrop.
    wx = rng.uniform(0.05, 0.6) * w
    ww, wh = 0.28 * w, 0.3 * h
    wy = 0.1 * h
    draw.rectangle((wx, wy, wx + ww, wy + wh), fill=(170, 210, 240), outline=(250, 250, 250), width=max(4, w // 100))
    draw.line([(wx + ww / 2, wy), (wx + ww / 2, wy + wh)], fill=(250, 250, 250), width=max(3, w // 160))
    draw.line([(wx, wy + wh / 2), (wx + ww, wy + wh / 2)], fill=(250, 250, 250), width=max(3, w // 160))
    # A framed picture on the other side of the wall.
    px = (wx + ww + 0.08 * w) if wx < 0.4 * w else rng.uniform(0.05, 0.15) * w
    draw.rectangle((px, 0.14 * h, px + 0.12 * w, 0.3 * h), fill=_jitter(rng, (120, 150, 120), 40),
                   outline=(110, 80, 50), width=max(3, w // 200))
    floor = _jitter(rng, _pick(rng, [(170, 120, 75), (150, 100, 60), (195, 150, 100)]), 10)
    draw = _ground(img, horizon, _shade(floor, 0.85), floor)
    draw.rectangle((0, horizon - h // 60, w, horizon), fill=(245, 245, 240))  # skirting board
    y, step = horizon, 6.0
    while y < h:  # floor planks, wider apart nearer the viewer (cheap perspective)
        draw.line([(0, y), (w, y)], fill=_shade(floor, 0.75), width=1)
        for _ in range(3):
            x = rng.uniform(0, w)
            draw.line([(x, y), (x, y + step)], fill=_shade(floor, 0.75), width=1)
        y += step
        step *= 1.18
    rug = _jitter(rng, _pick(rng, [(170, 50, 60), (60, 90, 150), (200, 160, 60), (90, 130, 90)]), 15)
    rx, ry = rng.uniform(0.3, 0.7) * w, horizon + 0.55 * (h - horizon)
    _ellipse(draw, rx, ry, 0.33 * w, 0.28 * (h - horizon), rug, outline=_shade(rug, 0.7), width=max(4, w // 90))
    _ellipse(draw, rx, ry, 0.22 * w, 0.17 * (h - horizon), None, outline=_shade(rug, 1.3), width=max(2, w // 200))
    return _Scene(img, horizon)


def _snow(rng, size) -> _Scene:
    w, h = size
    horizon = int(h * rng.uniform(0.45, 0.55))
    img = _vertical_gradient(w, h, _jitter(rng, (165, 185, 210)), _jitter(rng, (225, 232, 240)))
    draw = ImageDraw.Draw(img)
    for _ in range(3):  # mountains, snow-capped
        cx, peak = rng.uniform(0, w), horizon - rng.uniform(0.15, 0.3) * h
        half = rng.uniform(0.2, 0.35) * w
        draw.polygon([(cx - half, horizon), (cx, peak), (cx + half, horizon)], fill=_jitter(rng, (130, 140, 160), 10))
        cap = 0.3
        draw.polygon([(cx - half * cap, peak + (horizon - peak) * cap), (cx, peak),
                      (cx + half * cap, peak + (horizon - peak) * cap)], fill=(245, 248, 252))
    for _ in range(int(rng.integers(4, 9))):  # pines along the horizon, snow on their branches
        x, base = rng.uniform(0, w), horizon + rng.uniform(0, 0.05) * h
        th = rng.uniform(0.12, 0.22) * h
        draw.rectangle((x - 3, base - th * 0.15, x + 3, base), fill=(80, 60, 45))
        for k in range(3):
            top = base - th * (0.35 + 0.3 * k) - th * 0.3
            half = th * (0.32 - 0.08 * k)
            bottom = base - th * (0.15 + 0.3 * k)
            draw.polygon([(x - half, bottom), (x, top), (x + half, bottom)], fill=(40, 85, 60))
            draw.line([(x - half * 0.7, bottom - 2), (x + half * 0.7, bottom - 2)], fill=(240, 245, 250), width=2)
    draw = _ground(img, horizon, (225, 232, 242), (250, 252, 255))
    for _ in range(int(w * 0.15)):  # soft drifts
        x, y = rng.uniform(0, w), rng.uniform(horizon, h)
        _ellipse(draw, x, y, rng.uniform(10, 40), rng.uniform(2, 5), (210, 220, 235))
    for _ in range(int(w * 0.25)):  # falling snow
        x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.8, 2.2)
        _ellipse(draw, x, y, r, r, (255, 255, 255))
    return _Scene(img, horizon)


def _sunset_park(rng, size) -> _Scene:
    w, h = size
    horizon = int(h * rng.uniform(0.5, 0.6))
    img = _vertical_gradient(w, h, _jitter(rng, (90, 70, 140)), _jitter(rng, (250, 160, 90)))
    draw = ImageDraw.Draw(img)
    sx = rng.uniform(0.2, 0.8) * w
    for r, c in ((0.12, (255, 190, 120)), (0.08, (255, 215, 140)), (0.055, (255, 240, 190))):  # sun and glow
        _ellipse(draw, sx, horizon - 0.02 * h, r * w, r * w, c)
    for _ in range(int(rng.integers(3, 7))):  # tree silhouettes against the low sun
        x = rng.uniform(0, w)
        th = rng.uniform(0.2, 0.35) * h
        draw.rectangle((x - 4, horizon - th * 0.5, x + 4, horizon + 2), fill=(50, 40, 45))
        for _ in range(4):
            _ellipse(draw, x + rng.uniform(-0.3, 0.3) * th, horizon - th * rng.uniform(0.55, 0.95),
                     th * 0.3, th * 0.25, (55, 50, 55))
    draw = _ground(img, horizon, _jitter(rng, (110, 110, 60)), _jitter(rng, (60, 80, 40)))
    # A path that narrows towards the horizon.
    top_x = rng.uniform(0.3, 0.7) * w
    draw.polygon([(top_x - 0.02 * w, horizon), (top_x + 0.02 * w, horizon),
                  (top_x + 0.35 * w, h), (top_x - 0.25 * w, h)], fill=_jitter(rng, (190, 150, 110)))
    for _ in range(int(w * 0.4)):
        x, y = rng.uniform(0, w), rng.uniform(horizon, h)
        draw.line([(x, y), (x + rng.uniform(-2, 2), y - 2 - 10 * (y - horizon) / (h - horizon))],
                  fill=_jitter(rng, (80, 90, 45), 20), width=1)
    return _Scene(img, horizon)


def _garden(rng, size) -> _Scene:
    w, h = size
    horizon = int(h * rng.uniform(0.45, 0.55))
    img = _sky(rng, w, h, horizon)
    draw = ImageDraw.Draw(img)
    # A picket fence along the back of the lawn.
    fence = _jitter(rng, _pick(rng, [(245, 245, 240), (170, 120, 80)]), 8)
    top = horizon - 0.16 * h
    draw.rectangle((0, top + 0.04 * h, w, top + 0.06 * h), fill=_shade(fence, 0.9))
    draw.rectangle((0, horizon - 0.05 * h, w, horizon - 0.03 * h), fill=_shade(fence, 0.9))
    pw = 0.035 * w
    x = -rng.uniform(0, pw)
    while x < w:
        draw.polygon([(x, horizon), (x, top + 0.02 * h), (x + pw / 2, top), (x + pw, top + 0.02 * h),
                      (x + pw, horizon)], fill=fence, outline=_shade(fence, 0.75))
        x += pw * 1.45
    draw = _ground(img, horizon, _jitter(rng, (110, 175, 75)), _jitter(rng, (70, 145, 55)))
    for _ in range(int(rng.integers(12, 30))):  # flower bed along the fence and dotted across the lawn
        x, y = rng.uniform(0, w), horizon + rng.uniform(0.0, 0.35) * (h - horizon)
        draw.line([(x, y), (x, y - 12)], fill=(50, 120, 40), width=2)
        petal = _pick(rng, [(230, 60, 80), (250, 200, 40), (240, 240, 250), (170, 90, 200), (250, 140, 60)])
        for k in range(5):
            a = 2 * math.pi * k / 5
            _ellipse(draw, x + 4 * math.cos(a), y - 12 + 4 * math.sin(a), 3.2, 3.2, petal)
        _ellipse(draw, x, y - 12, 2.2, 2.2, (250, 220, 80))
    return _Scene(img, horizon)


def _pond(rng, size) -> _Scene:
    """Seen from above: water fills the frame, so `horizon` is 0 and fish go anywhere."""
    w, h = size
    img = _vertical_gradient(w, h, _jitter(rng, (40, 95, 90)), _jitter(rng, (25, 60, 70)))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(6, 14))):  # pebbles on the pond floor
        _ellipse(draw, rng.uniform(0, w), rng.uniform(0, h), rng.uniform(6, 18), rng.uniform(5, 12),
                 _jitter(rng, (70, 90, 85), 15))
    img = img.filter(ImageFilter.GaussianBlur(3))  # the floor is seen through water
    return _Scene(img, 0)


def _pond_surface(scene: _Scene, rng) -> None:
    """Lily pads and ripples drawn over the fish, so the fish are *in* the water."""
    w, h = scene.image.size
    draw = ImageDraw.Draw(scene.image)
    for _ in range(int(rng.integers(3, 7))):
        x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.04, 0.08) * w
        start = rng.uniform(0, 360)
        draw.pieslice((x - r, y - r, x + r, y + r), start + 25, start + 360, fill=_jitter(rng, (70, 140, 60), 15))
        if rng.random() < 0.4:
            _ellipse(draw, x, y, r * 0.3, r * 0.3, (245, 200, 220))  # a water-lily flower
    for _ in range(int(rng.integers(3, 6))):
        x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(15, 50)
        for k in range(3):
            _ellipse(draw, x, y, r * (1 + 0.45 * k), r * 0.45 * (1 + 0.45 * k), None,
                     outline=(120, 175, 170), width=1)


# --- animals -----------------------------------------------------------------------------------
# Each returns an RGBA layer with the animal facing right, its feet on the layer's bottom edge
# region; placement flips, tilts and scales it. Shapes are drawn back to front.

def _dog(rng) -> Image.Image:
    img, d = _layer(640, 480)
    coat = _jitter(rng, _pick(rng, [(150, 100, 55), (215, 170, 95), (50, 42, 38), (238, 232, 220), (125, 120, 118)]))
    ear = _shade(coat, 0.6) if sum(coat) > 150 else _mix(coat, (120, 80, 50), 0.3)
    far = _shade(coat, 0.8)
    ink = _shade(coat, 0.55)
    stride = rng.uniform(-25, 25)
    wag = rng.uniform(-40, 40)

    _taper(d, _bezier([(165, 245), (110, 220), (95 + wag / 2, 150), (105 + wag, 95 + wag / 3)]), 14, 7, coat)
    for hx, fx in ((225, 225 - stride), (415, 415 + stride)):  # far legs, in shade
        d.line([(hx, 290), (fx, 440)], fill=far, width=36)
        _ellipse(d, fx + 10, 448, 26, 12, far)
    _ellipse(d, 300, 270, 150, 72, coat, outline=ink, width=3)
    if sum(coat) > 600 or rng.random() < 0.2:  # patches, mostly on pale coats
        for _ in range(int(rng.integers(2, 5))):
            _ellipse(d, rng.uniform(200, 400), rng.uniform(230, 300), rng.uniform(20, 40), rng.uniform(15, 30),
                     _shade(ear, 1.1))
    for hx, fx in ((195, 195 + stride), (385, 385 - stride)):  # near legs
        d.line([(hx, 290), (fx, 440)], fill=coat, width=40)
        _ellipse(d, fx + 12, 448, 28, 13, coat, outline=ink, width=2)
    d.line([(395, 255), (440, 170)], fill=coat, width=86)  # neck
    _ellipse(d, 455, 160, 60, 56, coat)
    _ellipse(d, 515, 188, 48, 30, _mix(coat, (240, 225, 200), 0.35))  # muzzle
    if rng.random() < 0.5:  # tongue out: a happy dog
        _ellipse(d, 520, 222, 13, 19, (230, 100, 120))
    d.arc((480, 180, 545, 220), 20, 120, fill=ink, width=3)
    _ellipse(d, 557, 178, 14, 11, (25, 20, 20))  # nose
    _ellipse(d, 478, 142, 9, 10, (30, 22, 18))
    _ellipse(d, 481, 139, 3, 3, (255, 255, 255))
    _ellipse(d, 428, 170, 24, 58, ear, angle=rng.uniform(10, 30), outline=_shade(ear, 0.75), width=2)  # floppy ear
    collar = _pick(rng, [(200, 30, 40), (30, 90, 200), (40, 150, 70), (240, 170, 20)])
    d.line([(390, 190), (462, 226)], fill=collar, width=16)
    _ellipse(d, 428, 222, 9, 9, (240, 200, 60))  # tag
    return img


def _cat(rng) -> Image.Image:
    img, d = _layer(480, 520)
    kind = _pick(rng, ["orange", "grey", "black", "white", "tuxedo"])
    coat = _jitter(rng, {"orange": (225, 135, 55), "grey": (135, 135, 145), "black": (42, 40, 45),
                         "white": (240, 236, 228), "tuxedo": (38, 36, 40)}[kind], 10)
    chest = (245, 242, 235) if kind in ("tuxedo", "orange") else coat
    ink = _shade(coat, 0.6) if kind not in ("black", "tuxedo") else (90, 90, 100)
    stripes = kind in ("orange", "grey")
    iris = _pick(rng, [(120, 190, 60), (230, 190, 40), (90, 160, 220)])
    whisker = (250, 250, 250) if kind in ("black", "tuxedo", "grey") else (60, 55, 50)

    _taper(d, _bezier([(300, 480), (420, 480), (430, 390), (380 + rng.uniform(-20, 30), 300)]), 17, 11, coat)
    for cx in (150, 330):  # haunches
        _ellipse(d, cx, 440, 58, 55, coat, outline=ink, width=3)
    _ellipse(d, 240, 385, 112, 112, coat, outline=ink, width=3)
    _ellipse(d, 240, 300, 82, 82, coat)
    _ellipse(d, 240, 345, 48, 75, chest)
    if stripes:
        for k in range(3):
            d.arc((120 + 6 * k, 300 + 30 * k, 210, 420 + 20 * k), 130, 210, fill=ink, width=7)
            d.arc((270, 300 + 30 * k, 360 - 6 * k, 420 + 20 * k), 330, 50, fill=ink, width=7)
    for cx in (203, 277):  # front legs and paws
        _ellipse(d, cx, 430, 27, 62, coat, outline=ink, width=3)
        _ellipse(d, cx, 488, 31, 14, chest if kind == "tuxedo" else coat, outline=ink, width=3)
    tilt = rng.uniform(-8, 8)
    for side in (-1, 1):  # pointed ears, pink inside
        bx = 240 + side * 62
        d.polygon([(bx - side * 20, 140), (bx + side * 10 + side * tilt, 40), (bx + side * 38, 150)], fill=coat,
                  outline=ink, width=3)
        d.polygon([(bx - side * 2, 132), (bx + side * 10 + side * tilt, 65), (bx + side * 26, 138)],
                  fill=(240, 160, 170))
    _ellipse(d, 240, 190, 97, 82, coat, outline=ink, width=3)
    if stripes:
        for dx in (-14, 0, 14):  # the tabby "M" on the forehead
            d.line([(240 + dx, 118), (240 + dx * 0.7, 150)], fill=ink, width=6)
    if kind == "tuxedo":
        _ellipse(d, 240, 235, 45, 32, chest)
    for ex in (203, 277):  # eyes with slit pupils
        _ellipse(d, ex, 182, 21, 15, iris, outline=(30, 30, 30), width=2)
        _ellipse(d, ex, 182, 5, 13, (15, 15, 15))
        _ellipse(d, ex + 6, 177, 3, 3, (255, 255, 255))
    d.polygon([(228, 212), (252, 212), (240, 226)], fill=(235, 130, 150))
    d.line([(240, 226), (240, 236)], fill=(60, 40, 40), width=3)
    d.arc((222, 226, 240, 246), 0, 150, fill=(60, 40, 40), width=3)
    d.arc((240, 226, 258, 246), 30, 180, fill=(60, 40, 40), width=3)
    for side in (-1, 1):  # whiskers
        for k, dy in enumerate((-14, 0, 14)):
            d.line([(240 + side * 24, 228 + k * 4), (240 + side * 120, 222 + dy * 1.6)], fill=whisker, width=2)
    return img


def _parrot(rng) -> Image.Image:
    img, d = _layer(420, 520)
    palette = _pick(rng, [
        {"body": (215, 30, 35), "head": (215, 30, 35), "wing": (250, 200, 40), "tip": (30, 80, 200),
         "tail": (200, 30, 40), "belly": (215, 30, 35), "beak": (235, 225, 200)},  # scarlet macaw
        {"body": (30, 110, 210), "head": (40, 160, 90), "wing": (30, 100, 200), "tip": (20, 50, 140),
         "tail": (30, 90, 190), "belly": (250, 200, 40), "beak": (40, 40, 45)},  # blue-and-gold macaw
        {"body": (60, 170, 60), "head": (250, 210, 40), "wing": (50, 150, 55), "tip": (220, 40, 40),
         "tail": (80, 170, 60), "belly": (110, 200, 80), "beak": (230, 200, 170)},  # amazon
    ])
    p = {k: _jitter(rng, v, 10) for k, v in palette.items()}
    wood = _jitter(rng, (120, 80, 45), 10)
    lean = rng.uniform(8, 22)

    # A T-shaped perch stand, so the bird is grounded wherever it is placed.
    _ellipse(d, 210, 500, 80, 14, _shade(wood, 0.8))
    d.line([(210, 330), (210, 496)], fill=wood, width=14)
    tail_end = (165 + rng.uniform(-15, 15), 485)
    _taper(d, _bezier([(205, 290), (190, 400), tail_end]), 26, 10, p["tail"])
    _taper(d, _bezier([(215, 300), (205, 400), (tail_end[0] + 22, 472)]), 18, 7, p["tip"])
    d.line([(80, 332), (340, 332)], fill=wood, width=18)
    _ellipse(d, 220, 235, 55, 98, p["body"], angle=lean)
    _ellipse(d, 238, 250, 35, 75, p["belly"], angle=lean)
    for fx in (208, 236):  # feet gripping the perch
        _ellipse(d, fx, 330, 12, 14, (110, 110, 115))
    _ellipse(d, 195, 245, 40, 86, p["wing"], angle=lean, outline=_shade(p["wing"], 0.7), width=3)
    d.polygon([(160, 270), (230, 290), (205, 345), (170, 340)], fill=p["tip"])  # flight feathers
    for k in range(3):
        d.line([(170 + 12 * k, 285), (180 + 10 * k, 338)], fill=_shade(p["tip"], 0.7), width=2)
    _ellipse(d, 250, 140, 50, 48, p["head"])
    _ellipse(d, 262, 142, 22, 18, (245, 245, 240))  # bare face patch around the eye
    _ellipse(d, 264, 137, 8, 8, (245, 200, 40))
    _ellipse(d, 264, 137, 5, 5, (15, 15, 15))
    # Hooked beak: the upper mandible curls down over the lower one.
    upper = _bezier([(284, 118), (335, 115), (335, 170), (308, 185)], 16) + [(300, 165), (288, 160)]
    d.polygon(upper, fill=p["beak"], outline=_shade(p["beak"], 0.6), width=2)
    d.polygon([(286, 160), (306, 168), (296, 184), (282, 176)], fill=(40, 40, 45))
    return img


def _rabbit(rng) -> Image.Image:
    img, d = _layer(560, 520)
    fur = _jitter(rng, _pick(rng, [(242, 240, 236), (150, 145, 140), (170, 125, 85), (200, 180, 150)]), 8)
    ink = _shade(fur, 0.65)
    inner = (240, 170, 180)
    lop = rng.random() < 0.25
    back = rng.uniform(-25, -5)

    _ellipse(d, 360, 120, 26, 92, _shade(fur, 0.85), angle=back - 15)  # far ear
    _ellipse(d, 240, 380, 140, 110, fur, outline=ink, width=3)
    _ellipse(d, 105, 355, 33, 33, (250, 250, 250), outline=(215, 215, 215), width=2)  # cotton tail
    _ellipse(d, 340, 372, 82, 96, fur)
    _ellipse(d, 262, 478, 88, 20, fur, outline=ink, width=3)  # long hind foot
    for px in (372, 402):
        _ellipse(d, px, 468, 20, 30, fur, outline=ink, width=3)
    _ellipse(d, 408, 238, 80, 68, fur, outline=ink, width=3)
    _ellipse(d, 462, 262, 30, 24, _mix(fur, (255, 255, 255), 0.4))  # cheek and muzzle
    if lop:  # a lop-eared rabbit: the near ear hangs down the side of the head
        _ellipse(d, 350, 260, 26, 88, fur, angle=25, outline=ink, width=3)
        _ellipse(d, 350, 260, 13, 66, inner, angle=25)
    else:
        _ellipse(d, 395, 110, 28, 98, fur, angle=back, outline=ink, width=3)
        _ellipse(d, 395, 112, 14, 76, inner, angle=back)
    _ellipse(d, 440, 215, 12, 13, (35, 25, 25))
    _ellipse(d, 444, 211, 4, 4, (255, 255, 255))
    _ellipse(d, 486, 252, 8, 7, (230, 130, 150))  # nose
    d.line([(486, 259), (486, 270)], fill=(90, 60, 60), width=2)
    for dy in (-14, 0, 14):
        d.line([(478, 262), (548, 258 + dy * 1.5)], fill=_shade(fur, 0.45), width=2)
    return img


def _goldfish(rng) -> Image.Image:
    """Just the fish, facing right; the bowl or the pond is drawn around it."""
    img, d = _layer(320, 220)
    body = _jitter(rng, _pick(rng, [(245, 130, 30), (230, 75, 30), (250, 180, 40), (248, 240, 230)]), 8)
    fin = _mix(body, (255, 230, 200), 0.35) + (215,)
    ink = _shade(body, 0.7)
    spread = rng.uniform(20, 40)
    _ellipse(d, 65, 110 - spread, 58, 24, fin, angle=-spread)  # two-lobed tail fan
    _ellipse(d, 65, 110 + spread, 58, 24, fin, angle=spread)
    d.polygon([(135, 62), (180, 18), (225, 66)], fill=fin)  # dorsal fin
    d.polygon([(150, 150), (175, 195), (195, 150)], fill=fin)
    _ellipse(d, 175, 110, 88, 56, body, outline=ink, width=2)
    _ellipse(d, 185, 130, 60, 26, _mix(body, (255, 245, 210), 0.4))  # pale belly
    if body[2] > 200:  # the white-and-orange variety gets orange patches
        for _ in range(3):
            _ellipse(d, rng.uniform(120, 220), rng.uniform(85, 125), 22, 16, (245, 120, 30))
    for row in range(2):  # scales
        for col in range(4):
            x, y = 125 + col * 24 + row * 12, 90 + row * 20
            d.arc((x - 10, y - 10, x + 10, y + 10), 270, 90, fill=ink, width=2)
    d.arc((212, 75, 252, 145), 120, 240, fill=ink, width=3)  # gill
    _ellipse(d, 222, 135, 22, 10, fin, angle=30)  # pectoral fin
    _ellipse(d, 234, 95, 12, 12, (255, 255, 255))
    _ellipse(d, 237, 95, 7, 7, (10, 10, 10))
    _ellipse(d, 262, 116, 5, 6, _shade(body, 0.6))  # mouth
    return img


def _fishbowl(rng) -> Image.Image:
    img, d = _layer(520, 520)
    cx, cy, r = 260, 295, 205
    rim_y, water_top = 120, 150
    rim_rx = math.sqrt(r * r - (cy - rim_y) ** 2)  # the opening sits where the sphere is that wide
    glass = Image.new("RGBA", img.size, (0, 0, 0, 0))
    gd = ImageDraw.Draw(glass)
    _ellipse(gd, cx, cy, r, r, (200, 230, 245, 70))
    gd.rectangle((0, 0, 520, rim_y), fill=(0, 0, 0, 0))
    water = Image.new("RGBA", img.size, (0, 0, 0, 0))
    wd = ImageDraw.Draw(water)
    _ellipse(wd, cx, cy, r, r, _jitter(rng, (70, 150, 210), 10) + (170,))
    wd.rectangle((0, 0, 520, water_top), fill=(0, 0, 0, 0))  # above the water line is only glass
    for _ in range(70):  # gravel at the bottom, kept inside the bowl
        a = rng.uniform(-0.75 * math.pi, -0.25 * math.pi)
        t = rng.uniform(0.75, 0.97)
        x, y = cx + t * r * math.cos(a), cy - t * r * math.sin(a)
        _ellipse(wd, x, y, 8, 6, _pick(rng, [(230, 90, 90), (90, 180, 230), (240, 220, 120), (240, 240, 240)]) + (255,))
    for k in range(int(rng.integers(1, 3))):  # a water plant
        x0 = cx + rng.uniform(-90, 90)
        _taper(wd, _bezier([(x0, 470), (x0 + 40, 400), (x0 - 30, 330), (x0 + 10, 260)]), 7, 3, (50, 150, 70, 255))
    img = Image.alpha_composite(glass, water)
    for _ in range(int(rng.integers(1, 3))):
        fish = _goldfish(rng)
        if rng.random() < 0.5:
            fish = fish.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        fw = int(rng.uniform(190, 250))
        fish = fish.resize((fw, fw * fish.height // fish.width), Image.Resampling.LANCZOS)
        img.alpha_composite(fish, (int(cx - fw / 2 + rng.uniform(-60, 60)), int(rng.uniform(190, 310))))
    d = ImageDraw.Draw(img)
    for k in range(int(rng.integers(3, 7))):  # bubbles rising
        x, y = cx + rng.uniform(-60, 60), rng.uniform(water_top + 10, 300)
        _ellipse(d, x, y, 5, 5, None, outline=(235, 245, 255, 220), width=2)
    d.arc((cx - r + 30, cy - r + 30, cx + r - 30, cy + r - 30), 200, 250, fill=(255, 255, 255, 200), width=10)
    _ellipse(d, cx, water_top, math.sqrt(r * r - (cy - water_top) ** 2), 14, None,
             outline=(225, 245, 255, 230), width=3)  # water surface
    _ellipse(d, cx, rim_y, rim_rx, 16, None, outline=(235, 245, 250, 255), width=6)  # rim
    return img


def _horse(rng) -> Image.Image:
    img, d = _layer(720, 560)
    kind = _pick(rng, ["bay", "chestnut", "grey", "black", "palomino"])
    coat = _jitter(rng, {"bay": (120, 70, 40), "chestnut": (165, 88, 45), "grey": (215, 215, 215),
                         "black": (38, 32, 32), "palomino": (215, 175, 100)}[kind], 8)
    mane = {"bay": (30, 22, 20), "chestnut": (140, 70, 35), "grey": (120, 120, 125),
            "black": (20, 18, 18), "palomino": (245, 240, 225)}[kind]
    far = _shade(coat, 0.78)
    ink = _shade(coat, 0.6) if kind != "black" else (80, 75, 75)
    socks = rng.random() < 0.35
    head_y = rng.uniform(-25, 35)  # head raised or lowered a little
    step = rng.uniform(0, 1)

    def leg(hip, knee, hoof, color):
        d.line([hip, knee], fill=color, width=34)
        d.line([knee, hoof], fill=color, width=24)
        _ellipse(d, knee[0], knee[1], 15, 15, color)
        lower = (250, 250, 245) if socks and color == coat else color
        d.line([(hoof[0], hoof[1] - 35), hoof], fill=lower, width=24)
        d.polygon([(hoof[0] - 14, hoof[1]), (hoof[0] + 14, hoof[1]), (hoof[0] + 17, hoof[1] + 18),
                   (hoof[0] - 15, hoof[1] + 18)], fill=(45, 38, 35))

    # Tail first: it hangs behind the rump.
    _taper(d, _bezier([(168, 215), (110, 260), (125, 380), (95 + rng.uniform(-20, 20), 470)]), 22, 12, mane)
    leg((235, 300), (225, 420), (235, 522), far)  # far hind
    leg((455, 300), (470 + 30 * step, 420 - 20 * step), (470 + 50 * step, 522 - 40 * step), far)  # far fore
    _ellipse(d, 330, 250, 175, 82, coat, outline=ink, width=3)
    _ellipse(d, 215, 265, 62, 72, coat)  # hindquarter
    _ellipse(d, 450, 262, 52, 70, coat)  # shoulder
    leg((205, 300), (195, 420), (210, 522), coat)  # near hind
    leg((440, 300), (445, 420), (445, 522), coat)  # near fore
    # Neck up to the poll, then the long head angled down to the muzzle.
    poll = (560, 70 + head_y)
    d.polygon([(400, 200), (poll[0] - 20, poll[1] - 5), (poll[0] + 25, poll[1] + 25), (505, 290)], fill=coat)
    head_c = (poll[0] + 40, poll[1] + 55)
    _ellipse(d, head_c[0], head_c[1], 80, 32, coat, angle=55)
    muzzle = (poll[0] + 80, poll[1] + 110)
    _ellipse(d, muzzle[0], muzzle[1], 30, 26, _shade(coat, 0.85) if kind != "grey" else (170, 165, 165))
    _ellipse(d, muzzle[0] + 12, muzzle[1] - 2, 5, 7, (30, 25, 25))  # nostril
    if rng.random() < 0.4:  # a white blaze down the face
        _ellipse(d, head_c[0] + 8, head_c[1] + 8, 50, 8, (250, 250, 245), angle=55)
    d.polygon([(poll[0] - 8, poll[1] + 5), (poll[0] - 2, poll[1] - 40), (poll[0] + 14, poll[1] + 5)],
              fill=coat, outline=ink)  # ear
    _ellipse(d, poll[0] + 18, poll[1] + 28, 8, 7, (20, 15, 15))
    _ellipse(d, poll[0] + 20, poll[1] + 26, 2.5, 2.5, (255, 255, 255))
    # Mane: a jagged strip along the top of the neck, from the poll back to the withers.
    top = _bezier([(poll[0] - 10, poll[1]), (470, 110), (395, 195)], 14)
    jag = [(x - 16 - 10 * (i % 2), y - 8 - 8 * (i % 2)) for i, (x, y) in enumerate(top)]
    d.polygon(top + jag[::-1], fill=mane)
    d.polygon([(poll[0] + 2, poll[1] + 4), (poll[0] + 30, poll[1] + 15), (poll[0] + 8, poll[1] + 30)], fill=mane)
    return img


# --- composing ---------------------------------------------------------------------------------

def _place_animal(scene: _Scene, layer: Image.Image, rng) -> None:
    img = scene.image
    w, h = img.size
    if rng.random() < 0.5:
        layer = layer.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    layer = layer.crop(layer.getbbox())
    tilt = rng.uniform(-6, 6)

    # Nearer the viewer (lower in the frame) means bigger: a cheap sense of depth.
    depth = rng.uniform(0.0, 1.0)
    feet_y = scene.horizon + (0.4 + 0.55 * depth) * (h - scene.horizon)
    fraction = rng.uniform(0.5, 0.68) * (0.85 + 0.2 * depth)
    scale = fraction * min(w / layer.width, h / layer.height)
    lw, lh = max(1, int(layer.width * scale)), max(1, int(layer.height * scale))
    layer = layer.resize((lw, lh), Image.Resampling.LANCZOS)
    # Tilt after scaling down: rotating the small layer is several times cheaper than the big one.
    layer = layer.rotate(tilt, resample=Image.Resampling.BICUBIC, expand=True)
    layer = layer.crop(layer.getbbox())
    lw, lh = layer.size
    feet_y = int(min(max(feet_y, lh + 0.03 * h), h - 0.02 * h))
    margin = 0.04 * w
    x = int(rng.uniform(margin, max(margin, w - lw - margin)))

    canvas = img.convert("RGBA")
    # A soft contact shadow, blurred on a small patch rather than the whole frame (speed).
    blur = max(2, w // 120)
    rx, ry = lw * 0.45, max(4.0, lh * 0.05)
    pad = 3 * blur
    shadow, sd = _layer(int(2 * (rx + pad)), int(2 * (ry + pad)))
    _ellipse(sd, rx + pad, ry + pad, rx, ry, (0, 0, 0, 90))
    shadow = shadow.filter(ImageFilter.GaussianBlur(blur))
    canvas.alpha_composite(shadow, _clamped_offset(shadow, canvas, x + lw / 2 - rx - pad, feet_y - 0.01 * h - ry - pad))
    canvas.alpha_composite(layer, (x, feet_y - lh))
    scene.image = canvas.convert("RGB")


def _clamped_offset(patch: Image.Image, canvas: Image.Image, x: float, y: float) -> tuple[int, int]:
    # alpha_composite refuses a negative destination (it does clip at the far edges itself).
    return max(0, int(x)), max(0, int(y))


def _place_fish_in_pond(scene: _Scene, rng) -> None:
    w, h = scene.image.size
    canvas = scene.image.convert("RGBA")
    for _ in range(int(rng.integers(1, 4))):
        fish = _goldfish(rng)
        if rng.random() < 0.5:
            fish = fish.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        fw = int(rng.uniform(0.3, 0.45) * w)
        fish = fish.resize((fw, fw * fish.height // fish.width), Image.Resampling.LANCZOS)
        fish = fish.rotate(rng.uniform(-40, 40), resample=Image.Resampling.BICUBIC, expand=True)
        x, y = int(rng.uniform(0, w - fish.width)), int(rng.uniform(0, max(1, h - fish.height)))
        # The fish's shadow on the pond floor, offset and blurred, sells the depth of the water.
        alpha = fish.getchannel("A").point(lambda a: a * 90 // 255)
        shadow = Image.new("RGBA", fish.size, (0, 0, 0, 0))
        shadow.putalpha(alpha)
        canvas.alpha_composite(shadow.filter(ImageFilter.GaussianBlur(6)), _clamped_offset(fish, canvas, x + 14, y + 10))
        canvas.alpha_composite(fish, (x, y))
    scene.image = canvas.convert("RGB")
    _pond_surface(scene, rng)


def _photo_finish(img: Image.Image, rng) -> Image.Image:
    """Make a clean drawing behave like a photo: soft focus, a vignette, exposure and grain."""
    img = img.filter(ImageFilter.SMOOTH)  # cheaper than a Gaussian and just as soft at this radius
    a = np.asarray(img, dtype=np.float32)
    h, w = a.shape[:2]
    ys = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    xs = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    vignette = 1.0 - 0.22 * (xs * xs + ys * ys) / 2
    exposure = rng.uniform(0.92, 1.08)
    warmth = np.asarray([1 + rng.uniform(-0.04, 0.04), 1.0, 1 + rng.uniform(-0.04, 0.04)], np.float32)
    grain = rng.standard_normal((h, w, 1), dtype=np.float32)
    grain *= 3.5
    # In-place arithmetic: this runs on every pixel of every photo, so temporaries add up.
    a *= vignette[..., None] * (exposure * warmth)
    a += grain
    np.clip(a, 0, 255, out=a)
    return Image.fromarray(a.astype(np.uint8))


_ANIMALS: dict[str, Callable[[np.random.Generator], Image.Image]] = {
    "dog": _dog, "cat": _cat, "parrot": _parrot, "rabbit": _rabbit, "goldfish": _fishbowl, "horse": _horse,
}

_SCENES: dict[str, Callable[[np.random.Generator, tuple[int, int]], _Scene]] = {
    "meadow": _meadow, "beach": _beach, "living_room": _living_room, "snow": _snow,
    "sunset_park": _sunset_park, "garden": _garden, "pond": _pond,
}

# Where each animal plausibly is: no horses in the living room, goldfish only in water.
_SCENES_FOR = {
    "dog": ("meadow", "beach", "living_room", "snow", "sunset_park", "garden"),
    "cat": ("living_room", "garden", "meadow", "snow", "sunset_park"),
    "parrot": ("living_room", "garden", "beach", "meadow"),
    "rabbit": ("meadow", "garden", "snow", "living_room", "sunset_park"),
    "goldfish": ("living_room", "pond", "garden"),
    "horse": ("meadow", "beach", "snow", "sunset_park"),
}
