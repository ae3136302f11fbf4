"""Every picture a person sees decodes the way the embeddings do (`assets_pkg.pictures`).

For each awkward kind the catalog accepts (from `bad_files.py`: CMYK, 16-bit greyscale, transparency,
EXIF orientation, animation) the contact-sheet tile, the compositor's ad (seed and brand image) and the
metadata preview show the photo upright, not washed out, transparency on white: the same pixels as
`decode_upright_rgb`, resized the same way. That reference meets the corpus's own pixel facts.
"""

from __future__ import annotations

import io

import pytest
from bad_files import (
    BLUE,
    RED,
    WHITE,
    Expected,
    Observed,
    animated_gif,
    animated_webp,
    cmyk_jpeg,
    exif_rotated,
    grey_alpha,
    palette_transparent,
    png_16bit,
    rgba,
)
from PIL import Image, ImageOps, ImageStat

from assets_pkg.campaigns.contact_sheet import THUMB, contact_sheet
from assets_pkg.campaigns.generators.base import GenerationError, GenerationRequest
from assets_pkg.campaigns.generators.compositor import _CARD_PADDING, _LOGO_CARD, _MARGIN, LocalCompositor
from assets_pkg.campaigns.previews import preview_jpeg
from assets_pkg.pictures import decode_upright_rgb

CASES = [cmyk_jpeg, png_16bit, palette_transparent, rgba, grey_alpha, exif_rotated, animated_gif, animated_webp]
SCALE = 8  # the ad canvas is the photo's size times this: no crop, so the corpus's pixel facts map 1:1
TILE = THUMB - 8  # the contact sheet's thumbnail side, 4 px of white around it


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


PLAIN_SEED = _png(Image.new("RGB", (400, 300), (40, 160, 90)))
PLAIN_BRAND = _png(Image.new("RGB", (100, 100), (30, 30, 30)))


@pytest.fixture(params=CASES, ids=lambda write: write.__name__)
def case(request, tmp_path) -> tuple[bytes, Expected]:
    expected = request.param(tmp_path)
    return (tmp_path / expected.path).read_bytes(), expected


def _assert_pixel_facts(image: Image.Image, expected: Expected, where: str) -> None:
    # The corpus's checks also compare embeddings; only its pixel facts apply to a picture.
    seen = Observed(row={}, image=image.convert("RGB"), vector=None, vector_at=None)
    failures = [msg for check in expected.checks if check.__qualname__.startswith("pixel.") and (msg := check(seen))]
    assert not failures, f"{where}: {failures}"


def _assert_looks_like(got: Image.Image, want: Image.Image, where: str, skip=None, tolerance: float = 8.0) -> None:
    """Mean colours of a 4x4 grid of regions agree; regions touching the `skip` box are not compared."""
    assert got.size == want.size, where
    got, want = got.convert("RGB"), want.convert("RGB")
    w, h = got.size
    failures = []
    for row in range(4):
        for col in range(4):
            box = (col * w // 4, row * h // 4, (col + 1) * w // 4, (row + 1) * h // 4)
            if skip and box[0] < skip[2] and skip[0] < box[2] and box[1] < skip[3] and skip[1] < box[3]:
                continue
            g, e = ImageStat.Stat(got.crop(box)).mean, ImageStat.Stat(want.crop(box)).mean
            if max(abs(a - b) for a, b in zip(g, e)) > tolerance:
                failures.append(f"region {box}: {tuple(round(v) for v in g)}, decoded photo {tuple(round(v) for v in e)}")
    assert not failures, f"{where}: {len(failures)} of the regions differ, e.g. {failures[:2]}"


def _assert_upright(image: Image.Image, red_y: float, blue_y: float, where: str) -> None:
    """The EXIF case seen upright: red above blue, the white stripe down the left (positions as fractions)."""
    image = image.convert("RGB")
    w, h = image.size
    for (fx, fy), colour in (((0.04, 0.5), WHITE), ((0.7, red_y), RED), ((0.7, blue_y), BLUE)):
        got = image.getpixel((int(fx * w), int(fy * h)))
        assert max(abs(a - b) for a, b in zip(got, colour)) <= 20, f"{where}: at {fx, fy} {got}, expected about {colour}"


def _logo_card(width: int, height: int) -> tuple[int, int, int, int]:
    """The compositor's logo card box (top right), as its layout constants place it."""
    unit = min(width, height)
    card, margin = round(unit * _LOGO_CARD), round(unit * _MARGIN)
    return width - margin - card, margin, width - margin, margin + card


def _ad(seed: bytes, brand: bytes, width: int, height: int) -> Image.Image:
    # No headline: no band over the photo, so the whole canvas but the logo card is the photo.
    request = GenerationRequest(seed_image=seed, brand_image=brand, prompt="an ad", headline="")
    return Image.open(io.BytesIO(LocalCompositor(width, height).generate(request).png)).convert("RGB")


def test_the_reference_decode_meets_the_corpus_facts(case):
    data, expected = case
    _assert_pixel_facts(decode_upright_rgb(data), expected, "decode_upright_rgb")


def test_contact_sheet_tile_shows_the_decoded_photo(case):
    data, expected = case
    sheet = Image.open(io.BytesIO(contact_sheet([data], ["#1 score 0.9\nphoto"])))
    tile = sheet.crop((4, 4, 4 + TILE, 4 + TILE))
    _assert_looks_like(tile, ImageOps.fit(decode_upright_rgb(data), (TILE, TILE)), f"contact sheet tile of {expected.path}")


def test_compositor_ad_shows_the_decoded_seed_photo(case):
    data, expected = case
    reference = decode_upright_rgb(data)
    width, height = reference.width * SCALE, reference.height * SCALE
    ad = _ad(data, PLAIN_BRAND, width, height)
    want = ImageOps.fit(reference, (width, height), method=Image.Resampling.LANCZOS)
    _assert_looks_like(ad, want, f"ad from {expected.path}", skip=_logo_card(width, height))
    _assert_pixel_facts(ad.resize(reference.size, Image.Resampling.BOX), expected, f"ad from {expected.path}, scaled back")


def test_compositor_lays_the_decoded_brand_image_on_its_card(case):
    data, expected = case
    ad = _ad(PLAIN_SEED, data, 1024, 1024)
    left, top, right, _ = _logo_card(1024, 1024)
    card, padding = right - left, round(1024 * _CARD_PADDING)
    # Laid on the white card, the brand image shows what the photo decoded onto white shows.
    want = ImageOps.contain(decode_upright_rgb(data), (card - 2 * padding,) * 2, method=Image.Resampling.LANCZOS)
    x, y = left + (card - want.width) // 2, top + (card - want.height) // 2
    got = ad.crop((x, y, x + want.width, y + want.height))
    _assert_looks_like(got, want, f"brand image {expected.path} on the logo card")


def test_preview_shows_the_decoded_photo(case):
    data, expected = case
    preview = Image.open(io.BytesIO(preview_jpeg(data)))
    assert preview.format == "JPEG"
    _assert_looks_like(preview, decode_upright_rgb(data), f"preview of {expected.path}")


def test_an_exif_rotated_photo_stands_upright_in_every_picture(tmp_path):
    data = (tmp_path / exif_rotated(tmp_path).path).read_bytes()
    # The tile is the centre square of the 64x96 upright photo: its rows 16 to 80.
    sheet = Image.open(io.BytesIO(contact_sheet([data], ["exif"])))
    _assert_upright(sheet.crop((4, 4, 4 + TILE, 4 + TILE)), 0.25, 0.75, "contact sheet tile")
    _assert_upright(_ad(data, PLAIN_BRAND, 64 * SCALE, 96 * SCALE), 0.15, 0.85, "ad")
    _assert_upright(Image.open(io.BytesIO(preview_jpeg(data))), 0.15, 0.85, "preview")


def test_compositor_names_the_picture_it_cannot_decode():
    with pytest.raises(GenerationError, match="cannot decode the seed image: "):
        _ad(b"<html>not a photo</html>", PLAIN_BRAND, 256, 256)
    with pytest.raises(GenerationError, match="cannot decode the brand image: "):
        _ad(PLAIN_SEED, PLAIN_SEED[: len(PLAIN_SEED) // 2], 256, 256)
