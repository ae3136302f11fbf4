"""Shared fixtures: a temporary data directory with real images, the tiny random-weight CLIP model,
real Delta/LanceDB/MLflow stores under tmp_path, and a temporary Dagster instance."""

from __future__ import annotations

import io
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from PIL import Image

from assets_pkg.campaigns.resources import CandidateDiversity, ImageGeneratorResource
from assets_pkg.embeddings.model import RANDOM, TINY_MODEL
from assets_pkg.embeddings.resources import ClipModel
from assets_pkg.index.diversity import TINY_MODEL_NEAR_DUPLICATE_COSINE
from assets_pkg.layout import DataLayout
from assets_pkg.resources import DataStore, MlflowTracking
from demo_catalog import make_brand_image

REPO = Path(__file__).resolve().parent.parent
SEGMENTS_YAML = """
brand: {name: Bricks, tagline: Real food for real pets}
segments:
  - name: Young urban professionals
    description: busy city dwellers who want an easy companion
    labels: [cat, dog]
  - name: Outdoor-loving dog owners
    description: active people who hike with their dog
    subject: dog
"""


def photo_bytes(seed: int, size=(96, 72), fmt="JPEG") -> bytes:
    """A small, distinct, photo-like image (smooth gradients plus noise) in the given format."""
    rng = np.random.default_rng(seed)
    h, w = size[1], size[0]
    yy, xx = np.mgrid[0:h, 0:w]
    base = rng.uniform(0, 255, 3)
    pixels = np.stack([(base[c] + 80 * np.sin(xx / (7 + c + seed % 5)) + 60 * np.cos(yy / (5 + c))) for c in range(3)], -1)
    pixels = np.clip(pixels + rng.normal(0, 12, pixels.shape), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, format=fmt)
    return out.getvalue()


def write_photo(path: Path, seed: int, fmt: str | None = None, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = fmt or ("PNG" if path.suffix.lower() == ".png" else "JPEG")
    path.write_bytes(photo_bytes(seed, fmt=fmt, **kwargs))
    return path


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data directory with 12 photos over 3 labelled sub-folders (JPEG and PNG), a brand image and 2 segments."""
    root = tmp_path / "data"
    for n, label in enumerate(["dog", "cat", "parrot"]):
        for i in range(4):
            suffix = ".png" if i % 2 else ".jpg"
            write_photo(root / "images" / label / f"{label}-{i}{suffix}", seed=10 * n + i)
    make_brand_image(root / "brand" / "brand.png")
    (root / "segments.yaml").write_text(SEGMENTS_YAML)
    return root


@pytest.fixture
def layout(data_dir: Path) -> DataLayout:
    return DataLayout.under(data_dir)


NO_QUALITY_BAR = {"min_subject_score": "-1", "min_seed_score": "-1", "min_brand_score": "-1"}


def tiny_resources(data_dir: str | Path, batch_size: int = 8, **generator_settings) -> dict:
    """The pipeline's resources on the tiny random-weight CLIP; tests' child processes use it too."""
    return {
        "data_store": DataStore(data_dir=str(data_dir)),
        "clip": ClipModel(model_name=TINY_MODEL, weights=RANDOM, device="cpu", batch_size=batch_size),
        # Random weights: no quality bar unless a test sets one (tests/test_ad_quality.py does).
        "image_generator": ImageGeneratorResource(**{**NO_QUALITY_BAR, **generator_settings}),
        "mlflow_tracking": MlflowTracking(ui_url="http://127.0.0.1:5000"),
        # The tiny model's cosines crowd near 1: its own near-duplicate threshold, as `adrag --offline` sets it.
        "candidate_diversity": CandidateDiversity(near_duplicate_cosine=str(TINY_MODEL_NEAR_DUPLICATE_COSINE)),
    }


@pytest.fixture
def resources(data_dir: Path) -> dict:
    return tiny_resources(data_dir)


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture
def clip_encoder():
    from assets_pkg.embeddings.encode import ClipEncoder
    from assets_pkg.embeddings.model import ClipSpec, load_clip

    encoder = ClipEncoder(load_clip(ClipSpec(TINY_MODEL, RANDOM)), batch_size=4)
    yield encoder
    encoder.close()
