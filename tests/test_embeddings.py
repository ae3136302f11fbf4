"""open_clip loading (random, checkpoint, named weights offline), encoding, the embeddings table."""

from __future__ import annotations

import io
import time

import numpy as np
import pyarrow.compute as pc
import pytest
import torch
from conftest import photo_bytes, write_photo
from PIL import Image

from assets_pkg.catalog.mirror import sync_mirror
from assets_pkg.catalog.scan import scan_folder
from assets_pkg.delta_tables import read_table
from assets_pkg.embeddings.encode import ClipEncoder
from assets_pkg.embeddings.model import RANDOM, TINY_MODEL, ClipSpec, WeightsUnavailable, load_clip
from assets_pkg.embeddings.store import sync_embeddings
from assets_pkg.layout import EMBEDDINGS_SCHEMA


def embed(encoder: ClipEncoder, images: list[bytes]) -> np.ndarray:
    batches = list(encoder.encode_images((str(i), data) for i, data in enumerate(images)))
    return np.concatenate([b.vectors for b in batches])


def test_random_weights_are_reproducible_unit_float32(clip_encoder):
    images = [photo_bytes(i) for i in range(10)]
    first = embed(clip_encoder, images)
    assert first.shape == (10, 64) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    other = ClipEncoder(load_clip(ClipSpec(TINY_MODEL, RANDOM)), batch_size=3)
    np.testing.assert_allclose(embed(other, images), first, atol=1e-5)
    assert not np.allclose(first[0], first[1]), "different images, different vectors"


def test_overlapped_batches_match_one_at_a_time(clip_encoder):
    images = [photo_bytes(i) for i in range(9)]
    single = ClipEncoder(clip_encoder.clip, batch_size=1, decode_workers=1)
    np.testing.assert_allclose(embed(clip_encoder, images), embed(single, images), atol=1e-5)


def test_exif_rotated_image_embeds_as_displayed(clip_encoder):
    upright = Image.open(io.BytesIO(photo_bytes(3, size=(60, 90))))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a camera writes, with orientation 6
    exif = stored.getexif()
    exif[0x0112] = 6
    out_rotated, out_upright = io.BytesIO(), io.BytesIO()
    stored.save(out_rotated, format="PNG", exif=exif)
    upright.save(out_upright, format="PNG")
    vectors = embed(clip_encoder, [out_rotated.getvalue(), out_upright.getvalue()])
    assert float(vectors[0] @ vectors[1]) > 0.999


def test_undecodable_bytes_are_reported_not_raised(clip_encoder):
    [batch] = list(clip_encoder.encode_images([("good", photo_bytes(1)), ("bad", b"garbage")]))
    assert batch.image_ids == ["good"]
    [(image_id, reason)] = batch.failed
    assert image_id == "bad" and reason.startswith("cannot decode unknown format for embedding: cannot identify image")


def test_local_checkpoint_loads_with_a_content_model_key(tmp_path, clip_encoder):
    checkpoint = tmp_path / "tiny.pt"
    torch.save(clip_encoder.clip.model.state_dict(), checkpoint)
    loaded = load_clip(ClipSpec(TINY_MODEL, str(checkpoint)))
    assert loaded.model_key.startswith(f"{TINY_MODEL}/ckpt-") and "random" not in loaded.model_key
    images = [photo_bytes(i) for i in range(3)]
    np.testing.assert_allclose(embed(ClipEncoder(loaded), images), embed(clip_encoder, images), atol=1e-5)
    with pytest.raises(WeightsUnavailable, match="does not exist"):
        load_clip(ClipSpec(TINY_MODEL, str(tmp_path / "missing.safetensors")))


def test_named_weights_fail_at_once_offline_with_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # nothing cached
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    started = time.perf_counter()
    with pytest.raises(WeightsUnavailable) as err:
        load_clip(ClipSpec("ViT-B-32", "laion2b_s34b_b79k"))
    assert time.perf_counter() - started < 15
    assert "ADRAG_CLIP_WEIGHTS=/path/to/" in str(err.value) and "cannot be reached" in str(err.value)
    with pytest.raises(ValueError, match="no pretrained tag"):
        load_clip(ClipSpec("ViT-B-32", "no-such-tag"))


def test_sync_embeddings_adds_only_missing_and_deletes_vanished(tmp_path, clip_encoder):
    images, mirror, table = tmp_path / "images", tmp_path / "mirror", tmp_path / "embeddings"
    for i in range(5):
        write_photo(images / f"{i}.jpg", seed=i)
    sync_mirror(mirror, scan_folder(images).manifest, images)
    first = sync_embeddings(table, mirror, clip_encoder)
    assert (first.embedded, first.removed, first.unchanged) == (5, 0, 0)
    assert sync_embeddings(table, mirror, clip_encoder).embedded == 0

    (images / "0.jpg").unlink()
    write_photo(images / "5.jpg", seed=5)
    sync_mirror(mirror, scan_folder(images).manifest, images)
    second = sync_embeddings(table, mirror, clip_encoder)
    assert (second.embedded, second.removed, second.unchanged) == (1, 1, 4)
    rows = read_table(table, EMBEDDINGS_SCHEMA)
    assert rows.num_rows == 5 and len(set(rows["image_id"].to_pylist())) == 5
    assert pc.all(pc.equal(rows["model_key"], clip_encoder.model_key)).as_py()
