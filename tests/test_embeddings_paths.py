"""The encoder's decode paths: the batched, prefetching pipeline against a naive per-image reference,
the tensor (GPU) preprocessing against open_clip's PIL transform, and failures on the way."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from conftest import photo_bytes
from PIL import Image

from assets_pkg.embeddings.encode import ClipEncoder
from assets_pkg.embeddings.gpu_decode import GpuPreprocessor, _upright
from assets_pkg.pictures import decode_upright_rgb


def naive_reference(clip, images: list[bytes]) -> np.ndarray:
    """One image at a time: PIL decode, open_clip preprocess, fp32 model."""
    vectors = []
    with torch.no_grad():
        for data in images:
            v = clip.model.encode_image(clip.preprocess(decode_upright_rgb(data)).unsqueeze(0))[0]
            vectors.append((v / v.norm()).numpy())
    return np.stack(vectors)


def embed(encoder: ClipEncoder, images: list[bytes]) -> np.ndarray:
    batches = list(encoder.encode_images((str(i), data) for i, data in enumerate(images)))
    assert not any(b.failed for b in batches)
    return np.concatenate([b.vectors for b in batches])


def exif_rotated(data: bytes, orientation: int, fmt: str = "JPEG") -> bytes:
    """The same picture as a camera stores it: pixels turned the other way, the orientation tag set."""
    upright = Image.open(io.BytesIO(data))
    undo = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270,
            2: Image.Transpose.FLIP_LEFT_RIGHT, 4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE, 7: Image.Transpose.TRANSVERSE}[orientation]
    stored = upright.transpose(undo)
    exif = stored.getexif()
    exif[0x0112] = orientation
    out = io.BytesIO()
    stored.save(out, format=fmt, exif=exif, quality=95)
    return out.getvalue()


def mixed_images() -> list[bytes]:
    jpeg = photo_bytes(1, size=(160, 120))
    grey = io.BytesIO()
    Image.open(io.BytesIO(photo_bytes(2, size=(120, 160)))).convert("L").save(grey, format="JPEG")
    cmyk = io.BytesIO()
    Image.open(io.BytesIO(photo_bytes(3, size=(140, 100)))).convert("CMYK").save(cmyk, format="JPEG")
    return [jpeg, photo_bytes(4, size=(160, 120), fmt="PNG"), exif_rotated(photo_bytes(5, size=(120, 90)), 6),
            exif_rotated(photo_bytes(6, size=(100, 130)), 8), grey.getvalue(), cmyk.getvalue(),
            photo_bytes(7, size=(90, 90), fmt="WEBP"), photo_bytes(8, size=(160, 120))]


def test_pipeline_equals_the_naive_per_image_loop(clip_encoder):
    images = [photo_bytes(i, size=(120 + 8 * i, 90)) for i in range(11)] + mixed_images()
    encoder = ClipEncoder(clip_encoder.clip, batch_size=4, decode_workers=2)
    cosines = np.sum(embed(encoder, images) * naive_reference(clip_encoder.clip, images), axis=1)
    assert cosines.min() > 1 - 1e-4


@pytest.mark.parametrize("orientation", range(1, 9))
def test_tensor_orientation_matches_pil_exif_transpose(orientation):
    pixels = np.random.default_rng(orientation).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    pil = Image.fromarray(pixels)
    exif = pil.getexif()
    exif[0x0112] = orientation
    out = io.BytesIO()
    pil.save(out, format="PNG", exif=exif)
    expected = np.asarray(decode_upright_rgb(out.getvalue()))
    got = _upright(torch.from_numpy(pixels).permute(2, 0, 1), orientation).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(got, expected)


def tensor_path_cosines(clip, device: str, images: list[bytes]) -> np.ndarray:
    gpu = GpuPreprocessor(clip.model.visual.preprocess_cfg, device, lambda data: clip.preprocess(decode_upright_rgb(data)))
    slots, pixels, failed = gpu.pixels(gpu.host_batch(images))
    assert slots == list(range(len(images))) and not failed
    with torch.inference_mode():
        ours = clip.model.to(device).encode_image(pixels).float().cpu()
    clip.model.to("cpu")
    ours = (ours / ours.norm(dim=-1, keepdim=True)).numpy()
    return np.sum(ours * naive_reference(clip, images), axis=1)


def test_tensor_preprocessing_on_cpu_matches_the_pil_transform(clip_encoder):
    """The GPU path's code, run on CPU (libjpeg instead of nvJPEG): same pixels up to resampling rounding."""
    clip = clip_encoder.clip
    images = mixed_images()
    assert tensor_path_cosines(clip, "cpu", images).min() >= 0.999
    gpu = GpuPreprocessor(clip.model.visual.preprocess_cfg, "cpu", lambda data: clip.preprocess(decode_upright_rgb(data)))
    host = gpu.host_batch(images)
    assert host.jpeg_slots == [0, 2, 3, 7] and sorted(host.ready) == [1, 4, 5, 6]  # grey and CMYK JPEGs go to PIL
    reference = torch.stack([clip.preprocess(decode_upright_rgb(images[s])) for s in host.jpeg_slots])
    _, pixels, _ = gpu.pixels(host)
    assert (pixels[host.jpeg_slots] - reference).abs().mean() < 0.05  # normalised units; one 8-bit step is ~0.015


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_path_matches_the_cpu_reference(clip_encoder):
    """nvJPEG + tensor preprocessing + bf16 against PIL + fp32: cosine >= 0.99 per image, fallbacks included."""
    clip = clip_encoder.clip
    images = mixed_images() + [photo_bytes(i, size=(800, 600)) for i in range(4)]
    assert tensor_path_cosines(clip, "cuda", images).min() >= 0.99
    reference = naive_reference(clip, images)
    clip.model.to("cuda")
    try:
        encoder = ClipEncoder(clip, device="cuda", batch_size=5)
        batches = list(encoder.encode_images([(str(i), d) for i, d in enumerate(images)] + [("bad", b"garbage")]))
    finally:
        clip.model.to("cpu")
    assert [i for b in batches for i in b.image_ids] == [str(i) for i in range(len(images))]
    assert [i for b in batches for i, _ in b.failed] == ["bad"]
    assert np.sum(np.concatenate([b.vectors for b in batches]) * reference, axis=1).min() >= 0.99


def test_failed_decodes_are_reported_in_their_batch(clip_encoder):
    encoder = ClipEncoder(clip_encoder.clip, batch_size=3)
    items = [("a", photo_bytes(1)), ("bad1", b"not an image"), ("b", photo_bytes(2)),
             ("bad2", b"\xff\xd8\xff" + b"\0" * 50), ("bad3", b""), ("bad4", b"\x89PNG")]
    batches = list(encoder.encode_images(items))
    assert [b.image_ids for b in batches] == [["a", "b"], []]
    assert [[i for i, _ in b.failed] for b in batches] == [["bad1"], ["bad2", "bad3", "bad4"]]
    assert batches[1].vectors.shape == (0, encoder.dim)
    assert all("cannot decode" in reason for b in batches for _, reason in b.failed)


def test_an_input_that_raises_midway_reaches_the_caller_and_the_encoder_stays_usable(clip_encoder):
    encoder = ClipEncoder(clip_encoder.clip, batch_size=2)

    def items():
        for i in range(5):
            yield str(i), photo_bytes(i)
        raise OSError("mirror read failed")

    seen = []
    with pytest.raises(OSError, match="mirror read failed"):
        for batch in encoder.encode_images(items()):
            seen.extend(batch.image_ids)
    assert seen == ["0", "1"]  # batches finished before the error came back; the rest was never half-written
    assert embed(encoder, [photo_bytes(9)]).shape == (1, encoder.dim)


def test_a_caller_that_stops_early_leaves_the_encoder_usable(clip_encoder):
    encoder = ClipEncoder(clip_encoder.clip, batch_size=2)
    stream = encoder.encode_images((str(i), photo_bytes(i)) for i in range(10))
    assert next(stream).image_ids == ["0", "1"]
    stream.close()
    np.testing.assert_allclose(embed(encoder, [photo_bytes(3)]), naive_reference(encoder.clip, [photo_bytes(3)]), atol=1e-5)


def test_large_jpegs_decode_at_a_reduced_dct_scale_with_the_same_embedding(clip_encoder):
    """The encoder lets a JPEG decode at 1/2..1/8 scale, never below the model's input size."""
    side = clip_encoder.clip.image_size
    images = [photo_bytes(i, size=(640, 480)) for i in range(3)] + [exif_rotated(photo_bytes(4, size=(640, 480)), 6)]
    drafted = decode_upright_rgb(images[3], draft_size=(side, side))
    assert drafted.size == (160, 120)  # upright, at 1/4 scale: 1/8 would be 60 px, under 64
    assert decode_upright_rgb(images[3]).size == (640, 480)
    cosines = np.sum(embed(clip_encoder, images) * naive_reference(clip_encoder.clip, images), axis=1)
    assert cosines.min() >= 0.999
