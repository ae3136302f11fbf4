"""One demo photo: a scene that suits the subject, the subject placed in it, then a photographic finish."""

from __future__ import annotations

import zlib

import numpy as np
from PIL import Image, ImageFilter

from demo_catalog.animals import ANIMALS, goldfish
from demo_catalog.primitives import blank_layer, ellipse
from demo_catalog.scenes import SCENES, Scene, pond_surface


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
    scene = SCENES[scene_name](rng, size)
    if scene_name == "pond":
        _place_fish_in_pond(scene, rng)
    else:
        _place_animal(scene, ANIMALS[subject](rng), rng)
    return _photo_finish(scene.image, rng)


def _place_animal(scene: Scene, layer: Image.Image, rng) -> None:
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
    shadow, sd = blank_layer(int(2 * (rx + pad)), int(2 * (ry + pad)))
    ellipse(sd, rx + pad, ry + pad, rx, ry, (0, 0, 0, 90))
    shadow = shadow.filter(ImageFilter.GaussianBlur(blur))
    canvas.alpha_composite(shadow, _clamped_offset(shadow, canvas, x + lw / 2 - rx - pad, feet_y - 0.01 * h - ry - pad))
    canvas.alpha_composite(layer, (x, feet_y - lh))
    scene.image = canvas.convert("RGB")


def _clamped_offset(patch: Image.Image, canvas: Image.Image, x: float, y: float) -> tuple[int, int]:
    # alpha_composite refuses a negative destination (it does clip at the far edges itself).
    return max(0, int(x)), max(0, int(y))


def _place_fish_in_pond(scene: Scene, rng) -> None:
    w, h = scene.image.size
    canvas = scene.image.convert("RGBA")
    for _ in range(int(rng.integers(1, 4))):
        fish = goldfish(rng)
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
    pond_surface(scene, rng)


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


# Where each animal plausibly is: no horses in the living room, goldfish only in water.
_SCENES_FOR = {
    "dog": ("meadow", "beach", "living_room", "snow", "sunset_park", "garden"),
    "cat": ("living_room", "garden", "meadow", "snow", "sunset_park"),
    "parrot": ("living_room", "garden", "beach", "meadow"),
    "rabbit": ("meadow", "garden", "snow", "living_room", "sunset_park"),
    "goldfish": ("living_room", "pond", "garden"),
    "horse": ("meadow", "beach", "snow", "sunset_park"),
}
