"""The procedurally drawn demo catalog: complete, decodable, reproducible and safe to re-run."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from assets_pkg.atomic_files import TEMP_PREFIX
from demo_catalog import SUBJECTS, DemoCatalog, make_brand_image, make_demo_catalog

PER_SUBJECT = 3  # small for speed, odd so one format gets two files and the other one
SIZE = (320, 240)


def _snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under root, by relative path: (mtime in ns, bytes)."""
    return {p.relative_to(root).as_posix(): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(root.rglob("*")) if p.is_file()}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> DemoCatalog:
    # Drawn once for the module: most tests only read it.
    return make_demo_catalog(tmp_path_factory.mktemp("demo"), images_per_subject=PER_SUBJECT, size=SIZE)


def test_default_subjects_cover_the_pets_the_demo_segments_name():
    assert {"dog", "cat", "parrot", "rabbit", "goldfish", "horse"} <= set(SUBJECTS)


def test_every_subject_gets_its_images_in_a_labelled_subfolder(catalog):
    assert catalog.images_dir.name == "images"
    assert len(catalog.image_paths) == len(SUBJECTS) * PER_SUBJECT
    for subject in SUBJECTS:
        folder = catalog.images_dir / subject
        files = sorted(p for p in folder.iterdir() if p.is_file())
        assert len(files) == PER_SUBJECT
        assert all(p.name.startswith(f"{subject}-") for p in files)
    assert all(p.is_file() and p.parent.parent == catalog.images_dir for p in catalog.image_paths)


def test_each_subject_has_both_jpeg_and_png_that_decode_at_the_requested_size(catalog):
    for subject in SUBJECTS:
        files = list((catalog.images_dir / subject).iterdir())
        assert {p.suffix for p in files} == {".jpg", ".png"}
        for path in files:
            with Image.open(path) as img:
                assert img.format == ("JPEG" if path.suffix == ".jpg" else "PNG")
                img.load()  # a full decode, not just the header
                assert img.size == SIZE
                assert img.mode == "RGB"


def test_pictures_are_photo_like_not_flat(catalog):
    for path in catalog.image_paths:
        with Image.open(path) as img:
            pixels = np.asarray(img.convert("RGB"), dtype=np.float32)
        assert pixels.std() > 15  # a scene with contrast, not a single colour
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 2000  # gradients and grain


def test_no_two_images_are_the_same(catalog):
    hashes = [_sha(p) for p in catalog.image_paths]
    assert len(set(hashes)) == len(hashes)


def test_same_seed_gives_identical_bytes_in_another_folder(catalog, tmp_path):
    again = make_demo_catalog(tmp_path, images_per_subject=PER_SUBJECT, size=SIZE)
    first = _snapshot(catalog.images_dir.parent)
    second = _snapshot(tmp_path)
    assert first.keys() == second.keys()
    assert all(first[name][1] == second[name][1] for name in first)
    assert again.image_paths == [tmp_path / p.relative_to(catalog.images_dir.parent) for p in catalog.image_paths]


def test_another_seed_draws_other_pictures(catalog, tmp_path):
    other = make_demo_catalog(tmp_path, images_per_subject=PER_SUBJECT, size=SIZE, seed=1)
    assert {_sha(p) for p in other.image_paths}.isdisjoint({_sha(p) for p in catalog.image_paths})


def test_rerun_in_the_same_folder_changes_nothing(tmp_path):
    make_demo_catalog(tmp_path, images_per_subject=2, subjects=("dog", "goldfish"), size=SIZE)
    before = _snapshot(tmp_path)
    make_demo_catalog(tmp_path, images_per_subject=2, subjects=("dog", "goldfish"), size=SIZE)
    assert _snapshot(tmp_path) == before  # same files, same bytes, same mtimes


def test_rerun_keeps_a_file_someone_replaced_and_fills_in_a_missing_one(tmp_path):
    first = make_demo_catalog(tmp_path, images_per_subject=2, subjects=("cat",), size=SIZE)
    replaced, deleted = first.image_paths
    replaced.write_bytes(b"my own photo")
    original = deleted.read_bytes()
    deleted.unlink()
    make_demo_catalog(tmp_path, images_per_subject=2, subjects=("cat",), size=SIZE)
    assert replaced.read_bytes() == b"my own photo"
    assert deleted.read_bytes() == original
    assert not list(tmp_path.rglob(f"{TEMP_PREFIX}*"))  # no temporary files left behind


def test_unknown_subject_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match="unicorn"):
        make_demo_catalog(tmp_path, subjects=("dog", "unicorn"))
    assert not any(tmp_path.iterdir())


def test_brand_image_is_an_rgba_png_badge_with_transparent_surroundings(catalog):
    assert catalog.brand_image == catalog.images_dir.parent / "brand" / "brand.png"
    with Image.open(catalog.brand_image) as img:
        assert img.format == "PNG"
        assert img.mode == "RGBA"
        assert img.size == (512, 512)
        alpha = np.asarray(img.getchannel("A"))
    assert (alpha == 0).any()  # transparent corners around the badge
    assert (alpha == 255).mean() > 0.5  # and a solid badge most of the frame


def test_brand_image_is_reproducible_and_follows_its_text(tmp_path):
    a = make_brand_image(tmp_path / "a.png")
    b = make_brand_image(tmp_path / "b.png")
    other = make_brand_image(tmp_path / "c.png", name="Crumbs", tagline="cat treats")
    assert a.read_bytes() == b.read_bytes()
    assert other.read_bytes() != a.read_bytes()

    mtime = a.stat().st_mtime_ns
    make_brand_image(a)
    assert a.stat().st_mtime_ns == mtime  # same logo again: the file is not rewritten
