"""The drawing vocabulary the scenes, the animals and the logo are made of: shapes, strokes, colours."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

Color = tuple[int, int, int]


def ellipse(draw: ImageDraw.ImageDraw, cx: float, cy: float, rx: float, ry: float, fill,
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


def bezier(points: Sequence[tuple[float, float]], n: int = 32) -> list[tuple[float, float]]:
    """Points along the Bezier curve with the given control points (any degree)."""
    p = np.asarray(points, dtype=float)
    k = len(p) - 1
    t = np.linspace(0, 1, n)[:, None]
    coeff = [math.comb(k, i) * t ** i * (1 - t) ** (k - i) for i in range(k + 1)]
    out = sum(c * p[i] for i, c in enumerate(coeff))
    return [tuple(q) for q in out.tolist()]


def taper(draw: ImageDraw.ImageDraw, pts: Sequence[tuple[float, float]], r0: float, r1: float, fill) -> None:
    """A stroke along `pts` whose radius goes from r0 to r1: tails, ears, manes, stems."""
    n = len(pts)
    for i, (x, y) in enumerate(pts):
        r = r0 + (r1 - r0) * i / max(n - 1, 1)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
    # Circles alone leave a scalloped edge where samples are sparse; a polyline fills the gaps.
    for i in range(n - 1):
        r = r0 + (r1 - r0) * i / max(n - 1, 1)
        draw.line([pts[i], pts[i + 1]], fill=fill, width=max(1, int(2 * r)))


def shade(c: Color, f: float) -> Color:
    return tuple(int(min(255, max(0, v * f))) for v in c)


def mix(a: Color, b: Color, t: float) -> Color:
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))


def jitter(rng: np.random.Generator, c: Color, amount: int = 14) -> Color:
    return tuple(min(255, max(0, v + int(rng.integers(-amount, amount + 1)))) for v in c)


def pick(rng: np.random.Generator, options: Sequence):
    return options[int(rng.integers(len(options)))]


def vertical_gradient(w: int, h: int, top: Color, bottom: Color) -> Image.Image:
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    rows = np.asarray(top, np.float32) * (1 - t) + np.asarray(bottom, np.float32) * t
    return Image.fromarray(np.broadcast_to(rows, (h, w, 3)).astype(np.uint8))


def blank_layer(w: int, h: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    img = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    return img, ImageDraw.Draw(img)
