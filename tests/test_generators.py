"""The ad-image generators: the local compositor's layout, and the Replicate generator over real HTTP."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image, ImageStat
from replicate_standin import ReplicateStandIn

from assets_pkg.campaigns.generators.base import GeneratedImage, GenerationError, GenerationRequest
from assets_pkg.campaigns.generators.compositor import LocalCompositor
from assets_pkg.campaigns.generators.replicate_kontext import ReplicateKontextGenerator

TOKEN = "r8_test-token-must-never-leak-0123456789"
MODEL = "flux-kontext-apps/multi-image-kontext-max"
SEED_COLOUR = (40, 160, 90)  # green photo
BRAND_COLOUR = (220, 30, 30)  # red logo


def _image_bytes(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


@pytest.fixture
def seed_jpeg() -> bytes:
    return _image_bytes(Image.new("RGB", (800, 600), SEED_COLOUR), "JPEG")


@pytest.fixture
def brand_png() -> bytes:
    # A red square on a transparent background: the transparent border must show the white card.
    brand = Image.new("RGBA", (200, 200), (0, 0, 0, 0))
    brand.paste(BRAND_COLOUR + (255,), (40, 40, 160, 160))
    return _image_bytes(brand, "PNG")


@pytest.fixture
def request_(seed_jpeg: bytes, brand_png: bytes) -> GenerationRequest:
    return GenerationRequest(
        seed_image=seed_jpeg,
        brand_image=brand_png,
        prompt="Put the brand logo from image 2 on the dog's bandana in image 1",
        headline="Made for city life",
    )


def _open(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    return image.convert("RGB")


def _mean(image: Image.Image, box: tuple[int, int, int, int]) -> tuple[float, ...]:
    return tuple(ImageStat.Stat(image.crop(box)).mean)


def _close(a, b, tolerance: float = 6.0) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b))


# -- local compositor ------------------------------------------------------------------------------


def test_compositor_makes_a_png_of_the_configured_size(request_):
    result = LocalCompositor(width=640, height=480).generate(request_)
    assert _open(result.png).size == (640, 480)
    assert result.cost_usd == 0.0


def test_compositor_is_deterministic(request_):
    assert LocalCompositor().generate(request_).png == LocalCompositor().generate(request_).png


def test_compositor_shows_the_seed_photo_brand_and_headline(request_):
    image = _open(LocalCompositor(width=1024, height=1024).generate(request_).png)

    # Left middle: nothing is drawn over the photo there.
    assert _close(_mean(image, (50, 350, 400, 650)), SEED_COLOUR)
    # Logo card, top right (41 px margin, 225 px card at 1024): red logo in its middle, white card
    # where the logo is transparent (alpha respected, not pasted as black).
    card_centre = _mean(image, (850, 133, 890, 173))
    assert _close(card_centre, BRAND_COLOUR, tolerance=10)
    assert _close(image.getpixel((1024 - 41 - 30, 41 + 30)), (255, 255, 255), tolerance=2)
    # Headline band at the bottom: the photo darkened, with white text pixels in it.
    band = image.crop((0, 924, 1024, 1024))
    darkened = band.getpixel((5, 95))
    assert all(d < s for d, s in zip(darkened, SEED_COLOUR))
    assert band.convert("L").getextrema()[1] > 240  # white text


def test_compositor_output_depends_on_seed_and_headline(request_, brand_png):
    other_seed = _image_bytes(Image.new("RGB", (300, 300), (10, 20, 200)), "PNG")
    base = LocalCompositor().generate(request_).png
    with_other_seed = LocalCompositor().generate(
        GenerationRequest(other_seed, brand_png, request_.prompt, request_.headline)
    ).png
    with_other_headline = LocalCompositor().generate(
        GenerationRequest(request_.seed_image, brand_png, request_.prompt, "Built for the trail, every weekend")
    ).png
    assert len({base, with_other_seed, with_other_headline}) == 3
    assert _close(_mean(_open(with_other_seed), (50, 350, 400, 650)), (10, 20, 200))


def test_compositor_applies_exif_orientation(brand_png):
    # Stored landscape (left red, right blue) with "rotate 90 CW" in EXIF: displayed upright it is portrait,
    # red on top. Cover-fitted into a wide canvas, the top edge must be red, not half red and half blue.
    stored = Image.new("RGB", (400, 200), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 200, 200))
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    stored.save(out, format="JPEG", exif=exif.tobytes())
    request = GenerationRequest(out.getvalue(), brand_png, "prompt", "")
    image = _open(LocalCompositor(width=400, height=200).generate(request).png)
    assert _close(_mean(image, (0, 0, 150, 40)), (255, 0, 0), tolerance=20)


def test_compositor_rejects_bytes_that_are_not_an_image(brand_png):
    with pytest.raises(GenerationError, match="seed image"):
        LocalCompositor().generate(GenerationRequest(b"not an image", brand_png, "p", "h"))


def test_compositor_wraps_a_long_headline_inside_the_canvas(request_):
    long_headline = "Adventure-ready gear for every trail, every weekend, and every muddy paw along the way"
    request = GenerationRequest(request_.seed_image, request_.brand_image, request_.prompt, long_headline)
    image = _open(LocalCompositor(width=512, height=512).generate(request).png)
    # The band grows upwards for wrapped lines; the photo's top-left stays untouched.
    assert _close(_mean(image, (10, 10, 200, 100)), SEED_COLOUR)
    # Text never touches the canvas's left and right edges.
    edges = image.crop((0, 300, 4, 512)).convert("L")
    assert edges.getextrema()[1] < 200


# -- Replicate FLUX Kontext, through the real client against the local stand-in ----------------------


def _generator(api: ReplicateStandIn, **overrides) -> ReplicateKontextGenerator:
    return ReplicateKontextGenerator(api_token=TOKEN, base_url=api.base_url, poll_interval_s=0.01, **overrides)


def _data_url_bytes(url: str) -> tuple[str, bytes]:
    header, encoded = url.split(",", 1)
    return header, base64.b64decode(encoded)


def test_replicate_generator_returns_the_served_png(request_, seed_jpeg, brand_png):
    with ReplicateStandIn(polls_before_done=2) as api:
        result = _generator(api, seed=7).generate(request_)

    assert isinstance(result, GeneratedImage)
    assert len(api.created) == 1
    prediction_id = result.details["prediction_id"]
    assert result.png == api.served[prediction_id]
    assert result.cost_usd == pytest.approx(0.08)
    assert result.details["output_url"] == f"{api.base_url}/files/{prediction_id}.png"
    assert result.details["predict_time"] == pytest.approx(0.01)
    assert api.polls == 3  # two "processing" answers, then "succeeded"

    created = api.created[0]
    assert created["path"] == f"/v1/models/{MODEL}/predictions"
    inputs = created["input"]
    assert inputs["prompt"] == request_.prompt
    assert _data_url_bytes(inputs["input_image_1"]) == ("data:image/jpeg;base64", seed_jpeg)
    assert _data_url_bytes(inputs["input_image_2"]) == ("data:image/png;base64", brand_png)
    assert (inputs["aspect_ratio"], inputs["output_format"], inputs["safety_tolerance"], inputs["seed"]) == (
        "1:1",
        "png",
        2,
        7,
    )

    assert api.auth_headers and all(header == f"Bearer {TOKEN}" for header in api.auth_headers)
    assert api.download_auth_headers == [None]  # the CDN download never carries the token


def test_replicate_output_depends_on_the_inputs(request_, brand_png):
    other = GenerationRequest(_image_bytes(Image.new("RGB", (64, 64), (0, 0, 255)), "PNG"), brand_png, "p", "h")
    with ReplicateStandIn(polls_before_done=0) as api:
        generator = _generator(api)
        first, second = generator.generate(request_), generator.generate(other)
        first_again = generator.generate(request_)
    assert first.png != second.png
    # No seed configured: one derived from the request is sent, the same for the same request, so a lost
    # create can be recognised in the list of predictions and a re-run draws the same image.
    seeds = [created["input"]["seed"] for created in api.created]
    assert seeds[0] == seeds[2] == first.details["seed"] == first_again.details["seed"]
    assert seeds[0] != seeds[1] and all(0 <= seed < 2**31 for seed in seeds)


def test_replicate_failure_raises_with_the_error_and_no_token(request_):
    with ReplicateStandIn(outcome="failed", error_message="E005: flagged as sensitive") as api:
        with pytest.raises(GenerationError) as caught:
            _generator(api).generate(request_)
    message = str(caught.value)
    assert "E005: flagged as sensitive" in message
    assert "p0001" in message  # the prediction id, to look it up on Replicate
    assert TOKEN not in message


def test_replicate_canceled_prediction_raises(request_):
    with ReplicateStandIn(outcome="canceled") as api:
        with pytest.raises(GenerationError, match="canceled"):
            _generator(api).generate(request_)


def test_replicate_timeout_cancels_and_raises(request_):
    with ReplicateStandIn(polls_before_done=10_000) as api:
        with pytest.raises(GenerationError, match=r"timed out after 0\.2s") as caught:
            _generator(api, timeout_s=0.2).generate(request_)
    assert api.canceled == ["p0001"]
    assert TOKEN not in str(caught.value)


def test_replicate_rejected_input_raises_the_api_error(request_):
    empty_prompt = GenerationRequest(request_.seed_image, request_.brand_image, "", request_.headline)
    with ReplicateStandIn() as api:
        with pytest.raises(GenerationError, match="HTTP 422.*prompt is required") as caught:
            _generator(api).generate(empty_prompt)
    assert api.created == []
    assert TOKEN not in str(caught.value)


def test_replicate_error_echoing_the_token_is_scrubbed(request_):
    with ReplicateStandIn(outcome="failed", error_message=f"bad token {TOKEN}") as api:
        with pytest.raises(GenerationError) as caught:
            _generator(api).generate(request_)
    assert TOKEN not in str(caught.value)
    assert "bad token ***" in str(caught.value)


def test_replicate_parameters_and_id_hold_no_secret():
    generator = ReplicateKontextGenerator(api_token=TOKEN, base_url="http://example.invalid", seed=3)
    assert generator.generator_id == f"replicate/{MODEL}"
    assert generator.parameters() == {
        "model": MODEL,
        "aspect_ratio": "1:1",
        "output_format": "png",
        "safety_tolerance": 2,
        "seed": 3,
    }
    for text in (generator.generator_id, repr(generator.parameters()), repr(generator)):
        assert TOKEN not in text


def test_compositor_parameters():
    compositor = LocalCompositor(width=800, height=600)
    assert compositor.generator_id == "local-compositor/v2"
    assert compositor.parameters() == {"width": 800, "height": 600, "layout": 2}
