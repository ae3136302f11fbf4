"""Backgrounds for the demo photos: outdoor and indoor scenes, and a pond seen from above.

A scene paints a background and says where the ground starts (`horizon`, a y in pixels); animals
stand somewhere between the horizon and the bottom edge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from demo_catalog.primitives import Color, ellipse, jitter, pick, shade, vertical_gradient


@dataclass
class Scene:
    image: Image.Image
    horizon: int


def _sky(rng, w, h, horizon, top=(70, 130, 210), bottom=(190, 220, 245)) -> Image.Image:
    img = vertical_gradient(w, h, jitter(rng, top, 20), jitter(rng, bottom, 10))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(1, 4))):  # clouds: a few overlapping white puffs
        cx, cy = rng.uniform(0, w), rng.uniform(0.05, 0.6) * horizon
        size = rng.uniform(0.04, 0.08) * w
        for _ in range(5):
            ellipse(draw, cx + rng.uniform(-1.6, 1.6) * size, cy + rng.uniform(-0.4, 0.4) * size,
                    size * rng.uniform(0.8, 1.3), size * rng.uniform(0.5, 0.8), (250, 250, 252))
    return img


def _ground(img: Image.Image, horizon: int, top: Color, bottom: Color) -> ImageDraw.ImageDraw:
    w, h = img.size
    img.paste(vertical_gradient(w, h - horizon, top, bottom), (0, horizon))
    return ImageDraw.Draw(img)


def _meadow(rng, size) -> Scene:
    w, h = size
    horizon = int(h * rng.uniform(0.42, 0.55))
    img = _sky(rng, w, h, horizon)
    draw = ImageDraw.Draw(img)
    if rng.random() < 0.6:
        ellipse(draw, rng.uniform(0.1, 0.9) * w, 0.12 * h, 0.05 * w, 0.05 * w, (255, 236, 150))
    for _ in range(3):  # rolling hills behind the field
        ellipse(draw, rng.uniform(0, w), horizon + 0.02 * h, rng.uniform(0.25, 0.5) * w, 0.1 * h,
                jitter(rng, (90, 150, 80), 12))
    draw = _ground(img, horizon, jitter(rng, (120, 180, 80)), jitter(rng, (60, 130, 45)))
    for _ in range(int(w * 0.6)):  # grass blades, longer nearer the viewer
        x, y = rng.uniform(0, w), rng.uniform(horizon, h)
        length = 2 + 14 * (y - horizon) / (h - horizon)
        draw.line([(x, y), (x + rng.uniform(-3, 3), y - length)], fill=jitter(rng, (70, 140, 50), 25), width=1)
    for _ in range(int(rng.integers(5, 20))):  # a few wild flowers
        x, y = rng.uniform(0, w), rng.uniform(horizon + 0.1 * (h - horizon), h)
        r = 1.5 + 3 * (y - horizon) / (h - horizon)
        ellipse(draw, x, y, r, r, pick(rng, [(250, 250, 250), (250, 220, 60), (230, 90, 120)]))
    return Scene(img, horizon)


def _beach(rng, size) -> Scene:
    w, h = size
    horizon = int(h * rng.uniform(0.38, 0.48))
    img = _sky(rng, w, h, horizon, top=(60, 140, 220), bottom=(200, 230, 250))
    shore = horizon + int(h * rng.uniform(0.1, 0.16))
    draw = _ground(img, horizon, jitter(rng, (30, 90, 150)), jitter(rng, (70, 170, 190)))
    for _ in range(25):  # glints on the water
        x, y = rng.uniform(0, w), rng.uniform(horizon + 3, shore)
        draw.line([(x, y), (x + rng.uniform(6, 20), y)], fill=(210, 235, 245), width=1)
    sand = vertical_gradient(w, h - shore, jitter(rng, (235, 215, 165)), jitter(rng, (215, 185, 130)))
    img.paste(sand, (0, shore))
    # A wavy line of foam where the sea meets the sand.
    xs = np.linspace(0, w, 40)
    foam = [(float(x), shore + 3 * math.sin(x / 23 + rng.uniform(0, 6))) for x in xs]
    draw.line(foam, fill=(250, 250, 245), width=max(3, h // 90))
    for _ in range(int(rng.integers(4, 12))):  # shells and pebbles
        x, y = rng.uniform(0, w), rng.uniform(shore + 10, h)
        ellipse(draw, x, y, rng.uniform(2, 5), rng.uniform(1.5, 3.5), jitter(rng, (200, 170, 150), 30))
    return Scene(img, shore)


def _living_room(rng, size) -> Scene:
    w, h = size
    horizon = int(h * rng.uniform(0.5, 0.6))
    wall = jitter(rng, pick(rng, [(235, 220, 200), (200, 220, 215), (225, 205, 215), (215, 215, 230)]), 10)
    img = vertical_gradient(w, h, shade(wall, 1.04), shade(wall, 0.88))
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
    draw.rectangle((px, 0.14 * h, px + 0.12 * w, 0.3 * h), fill=jitter(rng, (120, 150, 120), 40),
                   outline=(110, 80, 50), width=max(3, w // 200))
    floor = jitter(rng, pick(rng, [(170, 120, 75), (150, 100, 60), (195, 150, 100)]), 10)
    draw = _ground(img, horizon, shade(floor, 0.85), floor)
    draw.rectangle((0, horizon - h // 60, w, horizon), fill=(245, 245, 240))  # skirting board
    y, step = horizon, 6.0
    while y < h:  # floor planks, wider apart nearer the viewer (cheap perspective)
        draw.line([(0, y), (w, y)], fill=shade(floor, 0.75), width=1)
        for _ in range(3):
            x = rng.uniform(0, w)
            draw.line([(x, y), (x, y + step)], fill=shade(floor, 0.75), width=1)
        y += step
        step *= 1.18
    rug = jitter(rng, pick(rng, [(170, 50, 60), (60, 90, 150), (200, 160, 60), (90, 130, 90)]), 15)
    rx, ry = rng.uniform(0.3, 0.7) * w, horizon + 0.55 * (h - horizon)
    ellipse(draw, rx, ry, 0.33 * w, 0.28 * (h - horizon), rug, outline=shade(rug, 0.7), width=max(4, w // 90))
    ellipse(draw, rx, ry, 0.22 * w, 0.17 * (h - horizon), None, outline=shade(rug, 1.3), width=max(2, w // 200))
    return Scene(img, horizon)


def _snow(rng, size) -> Scene:
    w, h = size
    horizon = int(h * rng.uniform(0.45, 0.55))
    img = vertical_gradient(w, h, jitter(rng, (165, 185, 210)), jitter(rng, (225, 232, 240)))
    draw = ImageDraw.Draw(img)
    for _ in range(3):  # mountains, snow-capped
        cx, peak = rng.uniform(0, w), horizon - rng.uniform(0.15, 0.3) * h
        half = rng.uniform(0.2, 0.35) * w
        draw.polygon([(cx - half, horizon), (cx, peak), (cx + half, horizon)], fill=jitter(rng, (130, 140, 160), 10))
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
        ellipse(draw, x, y, rng.uniform(10, 40), rng.uniform(2, 5), (210, 220, 235))
    for _ in range(int(w * 0.25)):  # falling snow
        x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.8, 2.2)
        ellipse(draw, x, y, r, r, (255, 255, 255))
    return Scene(img, horizon)


def _sunset_park(rng, size) -> Scene:
    w, h = size
    horizon = int(h * rng.uniform(0.5, 0.6))
    img = vertical_gradient(w, h, jitter(rng, (90, 70, 140)), jitter(rng, (250, 160, 90)))
    draw = ImageDraw.Draw(img)
    sx = rng.uniform(0.2, 0.8) * w
    for r, c in ((0.12, (255, 190, 120)), (0.08, (255, 215, 140)), (0.055, (255, 240, 190))):  # sun and glow
        ellipse(draw, sx, horizon - 0.02 * h, r * w, r * w, c)
    for _ in range(int(rng.integers(3, 7))):  # tree silhouettes against the low sun
        x = rng.uniform(0, w)
        th = rng.uniform(0.2, 0.35) * h
        draw.rectangle((x - 4, horizon - th * 0.5, x + 4, horizon + 2), fill=(50, 40, 45))
        for _ in range(4):
            ellipse(draw, x + rng.uniform(-0.3, 0.3) * th, horizon - th * rng.uniform(0.55, 0.95),
                    th * 0.3, th * 0.25, (55, 50, 55))
    draw = _ground(img, horizon, jitter(rng, (110, 110, 60)), jitter(rng, (60, 80, 40)))
    # A path that narrows towards the horizon.
    top_x = rng.uniform(0.3, 0.7) * w
    draw.polygon([(top_x - 0.02 * w, horizon), (top_x + 0.02 * w, horizon),
                  (top_x + 0.35 * w, h), (top_x - 0.25 * w, h)], fill=jitter(rng, (190, 150, 110)))
    for _ in range(int(w * 0.4)):
        x, y = rng.uniform(0, w), rng.uniform(horizon, h)
        draw.line([(x, y), (x + rng.uniform(-2, 2), y - 2 - 10 * (y - horizon) / (h - horizon))],
                  fill=jitter(rng, (80, 90, 45), 20), width=1)
    return Scene(img, horizon)


def _garden(rng, size) -> Scene:
    w, h = size
    horizon = int(h * rng.uniform(0.45, 0.55))
    img = _sky(rng, w, h, horizon)
    draw = ImageDraw.Draw(img)
    # A picket fence along the back of the lawn.
    fence = jitter(rng, pick(rng, [(245, 245, 240), (170, 120, 80)]), 8)
    top = horizon - 0.16 * h
    draw.rectangle((0, top + 0.04 * h, w, top + 0.06 * h), fill=shade(fence, 0.9))
    draw.rectangle((0, horizon - 0.05 * h, w, horizon - 0.03 * h), fill=shade(fence, 0.9))
    pw = 0.035 * w
    x = -rng.uniform(0, pw)
    while x < w:
        draw.polygon([(x, horizon), (x, top + 0.02 * h), (x + pw / 2, top), (x + pw, top + 0.02 * h),
                      (x + pw, horizon)], fill=fence, outline=shade(fence, 0.75))
        x += pw * 1.45
    draw = _ground(img, horizon, jitter(rng, (110, 175, 75)), jitter(rng, (70, 145, 55)))
    for _ in range(int(rng.integers(12, 30))):  # flower bed along the fence and dotted across the lawn
        x, y = rng.uniform(0, w), horizon + rng.uniform(0.0, 0.35) * (h - horizon)
        draw.line([(x, y), (x, y - 12)], fill=(50, 120, 40), width=2)
        petal = pick(rng, [(230, 60, 80), (250, 200, 40), (240, 240, 250), (170, 90, 200), (250, 140, 60)])
        for k in range(5):
            a = 2 * math.pi * k / 5
            ellipse(draw, x + 4 * math.cos(a), y - 12 + 4 * math.sin(a), 3.2, 3.2, petal)
        ellipse(draw, x, y - 12, 2.2, 2.2, (250, 220, 80))
    return Scene(img, horizon)


def _pond(rng, size) -> Scene:
    """Seen from above: water fills the frame, so `horizon` is 0 and fish go anywhere."""
    w, h = size
    img = vertical_gradient(w, h, jitter(rng, (40, 95, 90)), jitter(rng, (25, 60, 70)))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(6, 14))):  # pebbles on the pond floor
        ellipse(draw, rng.uniform(0, w), rng.uniform(0, h), rng.uniform(6, 18), rng.uniform(5, 12),
                jitter(rng, (70, 90, 85), 15))
    img = img.filter(ImageFilter.GaussianBlur(3))  # the floor is seen through water
    return Scene(img, 0)


def pond_surface(scene: Scene, rng) -> None:
    """Lily pads and ripples drawn over the fish, so the fish are *in* the water."""
    w, h = scene.image.size
    draw = ImageDraw.Draw(scene.image)
    for _ in range(int(rng.integers(3, 7))):
        x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.04, 0.08) * w
        start = rng.uniform(0, 360)
        draw.pieslice((x - r, y - r, x + r, y + r), start + 25, start + 360, fill=jitter(rng, (70, 140, 60), 15))
        if rng.random() < 0.4:
            ellipse(draw, x, y, r * 0.3, r * 0.3, (245, 200, 220))  # a water-lily flower
    for _ in range(int(rng.integers(3, 6))):
        x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(15, 50)
        for k in range(3):
            ellipse(draw, x, y, r * (1 + 0.45 * k), r * 0.45 * (1 + 0.45 * k), None,
                    outline=(120, 175, 170), width=1)


SCENES: dict[str, Callable[[np.random.Generator, tuple[int, int]], Scene]] = {
    "meadow": _meadow, "beach": _beach, "living_room": _living_room, "snow": _snow,
    "sunset_park": _sunset_park, "garden": _garden, "pond": _pond,
}
