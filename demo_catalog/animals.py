"""The demo subjects, each drawn from a few random choices (coat, pose, markings).

Each drawing returns an RGBA layer with the animal facing right, its feet on the layer's bottom
edge region; placement flips, tilts and scales it. Shapes are drawn back to front.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

from demo_catalog.primitives import bezier, blank_layer, ellipse, jitter, mix, pick, shade, taper


def _dog(rng) -> Image.Image:
    img, d = blank_layer(640, 480)
    coat = jitter(rng, pick(rng, [(150, 100, 55), (215, 170, 95), (50, 42, 38), (238, 232, 220), (125, 120, 118)]))
    ear = shade(coat, 0.6) if sum(coat) > 150 else mix(coat, (120, 80, 50), 0.3)
    far = shade(coat, 0.8)
    ink = shade(coat, 0.55)
    stride = rng.uniform(-25, 25)
    wag = rng.uniform(-40, 40)

    taper(d, bezier([(165, 245), (110, 220), (95 + wag / 2, 150), (105 + wag, 95 + wag / 3)]), 14, 7, coat)
    for hx, fx in ((225, 225 - stride), (415, 415 + stride)):  # far legs, in shade
        d.line([(hx, 290), (fx, 440)], fill=far, width=36)
        ellipse(d, fx + 10, 448, 26, 12, far)
    ellipse(d, 300, 270, 150, 72, coat, outline=ink, width=3)
    if sum(coat) > 600 or rng.random() < 0.2:  # patches, mostly on pale coats
        for _ in range(int(rng.integers(2, 5))):
            ellipse(d, rng.uniform(200, 400), rng.uniform(230, 300), rng.uniform(20, 40), rng.uniform(15, 30),
                    shade(ear, 1.1))
    for hx, fx in ((195, 195 + stride), (385, 385 - stride)):  # near legs
        d.line([(hx, 290), (fx, 440)], fill=coat, width=40)
        ellipse(d, fx + 12, 448, 28, 13, coat, outline=ink, width=2)
    d.line([(395, 255), (440, 170)], fill=coat, width=86)  # neck
    ellipse(d, 455, 160, 60, 56, coat)
    ellipse(d, 515, 188, 48, 30, mix(coat, (240, 225, 200), 0.35))  # muzzle
    if rng.random() < 0.5:  # tongue out: a happy dog
        ellipse(d, 520, 222, 13, 19, (230, 100, 120))
    d.arc((480, 180, 545, 220), 20, 120, fill=ink, width=3)
    ellipse(d, 557, 178, 14, 11, (25, 20, 20))  # nose
    ellipse(d, 478, 142, 9, 10, (30, 22, 18))
    ellipse(d, 481, 139, 3, 3, (255, 255, 255))
    ellipse(d, 428, 170, 24, 58, ear, angle=rng.uniform(10, 30), outline=shade(ear, 0.75), width=2)  # floppy ear
    collar = pick(rng, [(200, 30, 40), (30, 90, 200), (40, 150, 70), (240, 170, 20)])
    d.line([(390, 190), (462, 226)], fill=collar, width=16)
    ellipse(d, 428, 222, 9, 9, (240, 200, 60))  # tag
    return img


def _cat(rng) -> Image.Image:
    img, d = blank_layer(480, 520)
    kind = pick(rng, ["orange", "grey", "black", "white", "tuxedo"])
    coat = jitter(rng, {"orange": (225, 135, 55), "grey": (135, 135, 145), "black": (42, 40, 45),
                        "white": (240, 236, 228), "tuxedo": (38, 36, 40)}[kind], 10)
    chest = (245, 242, 235) if kind in ("tuxedo", "orange") else coat
    ink = shade(coat, 0.6) if kind not in ("black", "tuxedo") else (90, 90, 100)
    stripes = kind in ("orange", "grey")
    iris = pick(rng, [(120, 190, 60), (230, 190, 40), (90, 160, 220)])
    whisker = (250, 250, 250) if kind in ("black", "tuxedo", "grey") else (60, 55, 50)

    taper(d, bezier([(300, 480), (420, 480), (430, 390), (380 + rng.uniform(-20, 30), 300)]), 17, 11, coat)
    for cx in (150, 330):  # haunches
        ellipse(d, cx, 440, 58, 55, coat, outline=ink, width=3)
    ellipse(d, 240, 385, 112, 112, coat, outline=ink, width=3)
    ellipse(d, 240, 300, 82, 82, coat)
    ellipse(d, 240, 345, 48, 75, chest)
    if stripes:
        for k in range(3):
            d.arc((120 + 6 * k, 300 + 30 * k, 210, 420 + 20 * k), 130, 210, fill=ink, width=7)
            d.arc((270, 300 + 30 * k, 360 - 6 * k, 420 + 20 * k), 330, 50, fill=ink, width=7)
    for cx in (203, 277):  # front legs and paws
        ellipse(d, cx, 430, 27, 62, coat, outline=ink, width=3)
        ellipse(d, cx, 488, 31, 14, chest if kind == "tuxedo" else coat, outline=ink, width=3)
    tilt = rng.uniform(-8, 8)
    for side in (-1, 1):  # pointed ears, pink inside
        bx = 240 + side * 62
        d.polygon([(bx - side * 20, 140), (bx + side * 10 + side * tilt, 40), (bx + side * 38, 150)], fill=coat,
                  outline=ink, width=3)
        d.polygon([(bx - side * 2, 132), (bx + side * 10 + side * tilt, 65), (bx + side * 26, 138)],
                  fill=(240, 160, 170))
    ellipse(d, 240, 190, 97, 82, coat, outline=ink, width=3)
    if stripes:
        for dx in (-14, 0, 14):  # the tabby "M" on the forehead
            d.line([(240 + dx, 118), (240 + dx * 0.7, 150)], fill=ink, width=6)
    if kind == "tuxedo":
        ellipse(d, 240, 235, 45, 32, chest)
    for ex in (203, 277):  # eyes with slit pupils
        ellipse(d, ex, 182, 21, 15, iris, outline=(30, 30, 30), width=2)
        ellipse(d, ex, 182, 5, 13, (15, 15, 15))
        ellipse(d, ex + 6, 177, 3, 3, (255, 255, 255))
    d.polygon([(228, 212), (252, 212), (240, 226)], fill=(235, 130, 150))
    d.line([(240, 226), (240, 236)], fill=(60, 40, 40), width=3)
    d.arc((222, 226, 240, 246), 0, 150, fill=(60, 40, 40), width=3)
    d.arc((240, 226, 258, 246), 30, 180, fill=(60, 40, 40), width=3)
    for side in (-1, 1):  # whiskers
        for k, dy in enumerate((-14, 0, 14)):
            d.line([(240 + side * 24, 228 + k * 4), (240 + side * 120, 222 + dy * 1.6)], fill=whisker, width=2)
    return img


def _parrot(rng) -> Image.Image:
    img, d = blank_layer(420, 520)
    palette = pick(rng, [
        {"body": (215, 30, 35), "head": (215, 30, 35), "wing": (250, 200, 40), "tip": (30, 80, 200),
         "tail": (200, 30, 40), "belly": (215, 30, 35), "beak": (235, 225, 200)},  # scarlet macaw
        {"body": (30, 110, 210), "head": (40, 160, 90), "wing": (30, 100, 200), "tip": (20, 50, 140),
         "tail": (30, 90, 190), "belly": (250, 200, 40), "beak": (40, 40, 45)},  # blue-and-gold macaw
        {"body": (60, 170, 60), "head": (250, 210, 40), "wing": (50, 150, 55), "tip": (220, 40, 40),
         "tail": (80, 170, 60), "belly": (110, 200, 80), "beak": (230, 200, 170)},  # amazon
    ])
    p = {k: jitter(rng, v, 10) for k, v in palette.items()}
    wood = jitter(rng, (120, 80, 45), 10)
    lean = rng.uniform(8, 22)

    # A T-shaped perch stand, so the bird is grounded wherever it is placed.
    ellipse(d, 210, 500, 80, 14, shade(wood, 0.8))
    d.line([(210, 330), (210, 496)], fill=wood, width=14)
    tail_end = (165 + rng.uniform(-15, 15), 485)
    taper(d, bezier([(205, 290), (190, 400), tail_end]), 26, 10, p["tail"])
    taper(d, bezier([(215, 300), (205, 400), (tail_end[0] + 22, 472)]), 18, 7, p["tip"])
    d.line([(80, 332), (340, 332)], fill=wood, width=18)
    ellipse(d, 220, 235, 55, 98, p["body"], angle=lean)
    ellipse(d, 238, 250, 35, 75, p["belly"], angle=lean)
    for fx in (208, 236):  # feet gripping the perch
        ellipse(d, fx, 330, 12, 14, (110, 110, 115))
    ellipse(d, 195, 245, 40, 86, p["wing"], angle=lean, outline=shade(p["wing"], 0.7), width=3)
    d.polygon([(160, 270), (230, 290), (205, 345), (170, 340)], fill=p["tip"])  # flight feathers
    for k in range(3):
        d.line([(170 + 12 * k, 285), (180 + 10 * k, 338)], fill=shade(p["tip"], 0.7), width=2)
    ellipse(d, 250, 140, 50, 48, p["head"])
    ellipse(d, 262, 142, 22, 18, (245, 245, 240))  # bare face patch around the eye
    ellipse(d, 264, 137, 8, 8, (245, 200, 40))
    ellipse(d, 264, 137, 5, 5, (15, 15, 15))
    # Hooked beak: the upper mandible curls down over the lower one.
    upper = bezier([(284, 118), (335, 115), (335, 170), (308, 185)], 16) + [(300, 165), (288, 160)]
    d.polygon(upper, fill=p["beak"], outline=shade(p["beak"], 0.6), width=2)
    d.polygon([(286, 160), (306, 168), (296, 184), (282, 176)], fill=(40, 40, 45))
    return img


def _rabbit(rng) -> Image.Image:
    img, d = blank_layer(560, 520)
    fur = jitter(rng, pick(rng, [(242, 240, 236), (150, 145, 140), (170, 125, 85), (200, 180, 150)]), 8)
    ink = shade(fur, 0.65)
    inner = (240, 170, 180)
    lop = rng.random() < 0.25
    back = rng.uniform(-25, -5)

    ellipse(d, 360, 120, 26, 92, shade(fur, 0.85), angle=back - 15)  # far ear
    ellipse(d, 240, 380, 140, 110, fur, outline=ink, width=3)
    ellipse(d, 105, 355, 33, 33, (250, 250, 250), outline=(215, 215, 215), width=2)  # cotton tail
    ellipse(d, 340, 372, 82, 96, fur)
    ellipse(d, 262, 478, 88, 20, fur, outline=ink, width=3)  # long hind foot
    for px in (372, 402):
        ellipse(d, px, 468, 20, 30, fur, outline=ink, width=3)
    ellipse(d, 408, 238, 80, 68, fur, outline=ink, width=3)
    ellipse(d, 462, 262, 30, 24, mix(fur, (255, 255, 255), 0.4))  # cheek and muzzle
    if lop:  # a lop-eared rabbit: the near ear hangs down the side of the head
        ellipse(d, 350, 260, 26, 88, fur, angle=25, outline=ink, width=3)
        ellipse(d, 350, 260, 13, 66, inner, angle=25)
    else:
        ellipse(d, 395, 110, 28, 98, fur, angle=back, outline=ink, width=3)
        ellipse(d, 395, 112, 14, 76, inner, angle=back)
    ellipse(d, 440, 215, 12, 13, (35, 25, 25))
    ellipse(d, 444, 211, 4, 4, (255, 255, 255))
    ellipse(d, 486, 252, 8, 7, (230, 130, 150))  # nose
    d.line([(486, 259), (486, 270)], fill=(90, 60, 60), width=2)
    for dy in (-14, 0, 14):
        d.line([(478, 262), (548, 258 + dy * 1.5)], fill=shade(fur, 0.45), width=2)
    return img


def goldfish(rng) -> Image.Image:
    """Just the fish, facing right; the bowl or the pond is drawn around it."""
    img, d = blank_layer(320, 220)
    body = jitter(rng, pick(rng, [(245, 130, 30), (230, 75, 30), (250, 180, 40), (248, 240, 230)]), 8)
    fin = mix(body, (255, 230, 200), 0.35) + (215,)
    ink = shade(body, 0.7)
    spread = rng.uniform(20, 40)
    ellipse(d, 65, 110 - spread, 58, 24, fin, angle=-spread)  # two-lobed tail fan
    ellipse(d, 65, 110 + spread, 58, 24, fin, angle=spread)
    d.polygon([(135, 62), (180, 18), (225, 66)], fill=fin)  # dorsal fin
    d.polygon([(150, 150), (175, 195), (195, 150)], fill=fin)
    ellipse(d, 175, 110, 88, 56, body, outline=ink, width=2)
    ellipse(d, 185, 130, 60, 26, mix(body, (255, 245, 210), 0.4))  # pale belly
    if body[2] > 200:  # the white-and-orange variety gets orange patches
        for _ in range(3):
            ellipse(d, rng.uniform(120, 220), rng.uniform(85, 125), 22, 16, (245, 120, 30))
    for row in range(2):  # scales
        for col in range(4):
            x, y = 125 + col * 24 + row * 12, 90 + row * 20
            d.arc((x - 10, y - 10, x + 10, y + 10), 270, 90, fill=ink, width=2)
    d.arc((212, 75, 252, 145), 120, 240, fill=ink, width=3)  # gill
    ellipse(d, 222, 135, 22, 10, fin, angle=30)  # pectoral fin
    ellipse(d, 234, 95, 12, 12, (255, 255, 255))
    ellipse(d, 237, 95, 7, 7, (10, 10, 10))
    ellipse(d, 262, 116, 5, 6, shade(body, 0.6))  # mouth
    return img


def _fishbowl(rng) -> Image.Image:
    img, d = blank_layer(520, 520)
    cx, cy, r = 260, 295, 205
    rim_y, water_top = 120, 150
    rim_rx = math.sqrt(r * r - (cy - rim_y) ** 2)  # the opening sits where the sphere is that wide
    glass = Image.new("RGBA", img.size, (0, 0, 0, 0))
    gd = ImageDraw.Draw(glass)
    ellipse(gd, cx, cy, r, r, (200, 230, 245, 70))
    gd.rectangle((0, 0, 520, rim_y), fill=(0, 0, 0, 0))
    water = Image.new("RGBA", img.size, (0, 0, 0, 0))
    wd = ImageDraw.Draw(water)
    ellipse(wd, cx, cy, r, r, jitter(rng, (70, 150, 210), 10) + (170,))
    wd.rectangle((0, 0, 520, water_top), fill=(0, 0, 0, 0))  # above the water line is only glass
    for _ in range(70):  # gravel at the bottom, kept inside the bowl
        a = rng.uniform(-0.75 * math.pi, -0.25 * math.pi)
        t = rng.uniform(0.75, 0.97)
        x, y = cx + t * r * math.cos(a), cy - t * r * math.sin(a)
        ellipse(wd, x, y, 8, 6, pick(rng, [(230, 90, 90), (90, 180, 230), (240, 220, 120), (240, 240, 240)]) + (255,))
    for k in range(int(rng.integers(1, 3))):  # a water plant
        x0 = cx + rng.uniform(-90, 90)
        taper(wd, bezier([(x0, 470), (x0 + 40, 400), (x0 - 30, 330), (x0 + 10, 260)]), 7, 3, (50, 150, 70, 255))
    img = Image.alpha_composite(glass, water)
    for _ in range(int(rng.integers(1, 3))):
        fish = goldfish(rng)
        if rng.random() < 0.5:
            fish = fish.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        fw = int(rng.uniform(190, 250))
        fish = fish.resize((fw, fw * fish.height // fish.width), Image.Resampling.LANCZOS)
        img.alpha_composite(fish, (int(cx - fw / 2 + rng.uniform(-60, 60)), int(rng.uniform(190, 310))))
    d = ImageDraw.Draw(img)
    for k in range(int(rng.integers(3, 7))):  # bubbles rising
        x, y = cx + rng.uniform(-60, 60), rng.uniform(water_top + 10, 300)
        ellipse(d, x, y, 5, 5, None, outline=(235, 245, 255, 220), width=2)
    d.arc((cx - r + 30, cy - r + 30, cx + r - 30, cy + r - 30), 200, 250, fill=(255, 255, 255, 200), width=10)
    ellipse(d, cx, water_top, math.sqrt(r * r - (cy - water_top) ** 2), 14, None,
            outline=(225, 245, 255, 230), width=3)  # water surface
    ellipse(d, cx, rim_y, rim_rx, 16, None, outline=(235, 245, 250, 255), width=6)  # rim
    return img


def _horse(rng) -> Image.Image:
    img, d = blank_layer(720, 560)
    kind = pick(rng, ["bay", "chestnut", "grey", "black", "palomino"])
    coat = jitter(rng, {"bay": (120, 70, 40), "chestnut": (165, 88, 45), "grey": (215, 215, 215),
                        "black": (38, 32, 32), "palomino": (215, 175, 100)}[kind], 8)
    mane = {"bay": (30, 22, 20), "chestnut": (140, 70, 35), "grey": (120, 120, 125),
            "black": (20, 18, 18), "palomino": (245, 240, 225)}[kind]
    far = shade(coat, 0.78)
    ink = shade(coat, 0.6) if kind != "black" else (80, 75, 75)
    socks = rng.random() < 0.35
    head_y = rng.uniform(-25, 35)  # head raised or lowered a little
    step = rng.uniform(0, 1)

    def leg(hip, knee, hoof, color):
        d.line([hip, knee], fill=color, width=34)
        d.line([knee, hoof], fill=color, width=24)
        ellipse(d, knee[0], knee[1], 15, 15, color)
        lower = (250, 250, 245) if socks and color == coat else color
        d.line([(hoof[0], hoof[1] - 35), hoof], fill=lower, width=24)
        d.polygon([(hoof[0] - 14, hoof[1]), (hoof[0] + 14, hoof[1]), (hoof[0] + 17, hoof[1] + 18),
                   (hoof[0] - 15, hoof[1] + 18)], fill=(45, 38, 35))

    # Tail first: it hangs behind the rump.
    taper(d, bezier([(168, 215), (110, 260), (125, 380), (95 + rng.uniform(-20, 20), 470)]), 22, 12, mane)
    leg((235, 300), (225, 420), (235, 522), far)  # far hind
    leg((455, 300), (470 + 30 * step, 420 - 20 * step), (470 + 50 * step, 522 - 40 * step), far)  # far fore
    ellipse(d, 330, 250, 175, 82, coat, outline=ink, width=3)
    ellipse(d, 215, 265, 62, 72, coat)  # hindquarter
    ellipse(d, 450, 262, 52, 70, coat)  # shoulder
    leg((205, 300), (195, 420), (210, 522), coat)  # near hind
    leg((440, 300), (445, 420), (445, 522), coat)  # near fore
    # Neck up to the poll, then the long head angled down to the muzzle.
    poll = (560, 70 + head_y)
    d.polygon([(400, 200), (poll[0] - 20, poll[1] - 5), (poll[0] + 25, poll[1] + 25), (505, 290)], fill=coat)
    head_c = (poll[0] + 40, poll[1] + 55)
    ellipse(d, head_c[0], head_c[1], 80, 32, coat, angle=55)
    muzzle = (poll[0] + 80, poll[1] + 110)
    ellipse(d, muzzle[0], muzzle[1], 30, 26, shade(coat, 0.85) if kind != "grey" else (170, 165, 165))
    ellipse(d, muzzle[0] + 12, muzzle[1] - 2, 5, 7, (30, 25, 25))  # nostril
    if rng.random() < 0.4:  # a white blaze down the face
        ellipse(d, head_c[0] + 8, head_c[1] + 8, 50, 8, (250, 250, 245), angle=55)
    d.polygon([(poll[0] - 8, poll[1] + 5), (poll[0] - 2, poll[1] - 40), (poll[0] + 14, poll[1] + 5)],
              fill=coat, outline=ink)  # ear
    ellipse(d, poll[0] + 18, poll[1] + 28, 8, 7, (20, 15, 15))
    ellipse(d, poll[0] + 20, poll[1] + 26, 2.5, 2.5, (255, 255, 255))
    # Mane: a jagged strip along the top of the neck, from the poll back to the withers.
    top = bezier([(poll[0] - 10, poll[1]), (470, 110), (395, 195)], 14)
    jag = [(x - 16 - 10 * (i % 2), y - 8 - 8 * (i % 2)) for i, (x, y) in enumerate(top)]
    d.polygon(top + jag[::-1], fill=mane)
    d.polygon([(poll[0] + 2, poll[1] + 4), (poll[0] + 30, poll[1] + 15), (poll[0] + 8, poll[1] + 30)], fill=mane)
    return img


ANIMALS: dict[str, Callable[[np.random.Generator], Image.Image]] = {
    "dog": _dog, "cat": _cat, "parrot": _parrot, "rabbit": _rabbit, "goldfish": _fishbowl, "horse": _horse,
}
