"""Diverse top 3 (assets_pkg/index/diversity.py): near-duplicates never take a place, and the rest are
chosen by maximal marginal relevance; what was dropped is said in the candidates row and metadata.

The near-duplicates are real: one photo re-saved as PNG (the same pixels, other bytes), halved,
recompressed at JPEG quality 40 and cropped by 1% a side, indexed through the real pipeline with the
tiny random-weight model. That model's cosines crowd near 1, so the tests measure, before asserting
anything is dropped, that each copy is above the threshold and each distinct photo below it.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from conftest import tiny_resources
from deltalake import write_deltalake
from PIL import Image
from test_pipeline import refresh

from assets_pkg.campaigns.assets import candidates_metadata
from assets_pkg.campaigns.operations import Campaigns, make_candidates
from assets_pkg.campaigns.retrieval import retrieve_candidates
from assets_pkg.campaigns.store import read_candidates, replace_candidates
from assets_pkg.index.diversity import TINY_MODEL_NEAR_DUPLICATE_COSINE, Diversity, pick_diverse
from assets_pkg.index.lance_index import Hit, open_reader
from assets_pkg.index.queries import QueryImage
from assets_pkg.layout import CANDIDATES_SCHEMA, DataLayout
from demo_catalog import make_brand_image
from demo_catalog.photo import draw_demo_photo

THRESHOLD = TINY_MODEL_NEAR_DUPLICATE_COSINE
COPIES = ["dog/original-copy.png", "dog/original-half.jpg", "dog/original-q40.jpg", "dog/original-crop.jpg"]
DISTINCT = [f"dog/dog-{i}.jpg" for i in range(1, 6)]
SEGMENTS = """
brand: {name: Bricks, tagline: Real food for real pets}
segments:
  - name: Park dogs
    description: dog owners who walk in the park
    subject: dog
    labels: [dog]
    reference_image: dog/original.jpg
    reference_weight: 1.0
  - name: Lost reference
    description: a segment whose reference photo is gone
    subject: dog
    reference_image: refs/gone.jpg
  - name: Broken reference
    description: a segment whose reference photo is not an image
    subject: dog
    reference_image: refs/notes.jpg
"""


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def near_duplicates_dir(tmp_path: Path) -> Path:
    """A photo and four near-identical copies of it, five other dog photos and two cats."""
    root = tmp_path / "data"
    images = root / "images"
    (images / "dog").mkdir(parents=True)
    (images / "cat").mkdir()
    original = draw_demo_photo("dog", 0)
    w, h = original.size
    files = {
        "dog/original.jpg": jpeg(original),
        "dog/original-copy.png": png(original),
        "dog/original-half.jpg": jpeg(original.resize((w // 2, h // 2), Image.LANCZOS)),
        "dog/original-q40.jpg": jpeg(original, quality=40),
        "dog/original-crop.jpg": jpeg(original.crop((w // 100, h // 100, w - w // 100, h - h // 100))),
        **{path: jpeg(draw_demo_photo("dog", i)) for i, path in enumerate(DISTINCT, start=1)},
        **{f"cat/cat-{i}.jpg": jpeg(draw_demo_photo("cat", i)) for i in range(2)},
    }
    for path, data in files.items():
        (images / path).write_bytes(data)
    (root / "refs").mkdir()
    (root / "refs" / "notes.jpg").write_text("not a photo")
    make_brand_image(root / "brand" / "brand.png")
    (root / "segments.yaml").write_text(SEGMENTS)
    return root


@pytest.fixture
def indexed(near_duplicates_dir, instance):
    resources = tiny_resources(near_duplicates_dir)
    refresh(resources, instance)
    return resources


def stored_vectors(reader) -> dict[str, np.ndarray]:
    rows = reader.table.search().select(["path", "vector"]).limit(None).to_arrow().to_pylist()
    return {r["path"]: np.asarray(r["vector"], np.float32) for r in rows}


def test_copies_of_a_photo_never_take_a_place_and_are_reported_with_the_photo_they_duplicate(indexed, layout_of):
    layout = layout_of(indexed)
    encoder = indexed["clip"].encoder()
    reader = open_reader(layout.lance_dir, encoder.model_key)
    vectors = stored_vectors(reader)
    original = vectors["dog/original.jpg"]
    # What the tiny model makes of them, checked before relying on it.
    for path in COPIES:
        assert float(vectors[path] @ original) > THRESHOLD, (path, float(vectors[path] @ original))
    for path in DISTINCT:
        assert float(vectors[path] @ original) < THRESHOLD, (path, float(vectors[path] @ original))

    reference = QueryImage((layout.images_dir / "dog/original.jpg").read_bytes(), "dog/original.jpg")

    def top3(diversity: Diversity):
        return retrieve_candidates(reader, encoder, "dog", ("dog",), reference, reference_weight=1.0,
                                   diversity=diversity)

    # Without diversity the top 3 of "this photo" are three copies of it: the problem.
    plain = top3(Diversity(mmr_lambda=1.0, near_duplicate_cosine=1.0))
    assert {h.path for h in plain.hits} <= {"dog/original.jpg", *COPIES} and not plain.near_duplicates

    found = top3(Diversity(near_duplicate_cosine=THRESHOLD))
    assert found.pool == 10, "one query fetched the whole dog pool (10 < pool 20)"
    paths = [h.path for h in found.hits]
    first = found.hits[0]
    assert len(paths) == 3 and first.path in {"dog/original.jpg", *COPIES}
    assert set(paths[1:]) <= set(DISTINCT), "the other two places go to other photos"
    group = {"dog/original.jpg", *COPIES} - {first.path}
    assert {d.hit.path for d in found.near_duplicates} == group
    for dropped in found.near_duplicates:
        assert dropped.duplicate_of.path == first.path
        assert dropped.similarity == pytest.approx(float(vectors[dropped.hit.path] @ vectors[first.path]), abs=1e-5)
        assert dropped.similarity > THRESHOLD and dropped.hit.score <= first.score
    scores = [h.score for h in found.hits]
    assert scores == sorted(scores, reverse=True)

    # The rule holds whatever lambda says, and lambda 1 is then the top 3 of the distinct photos.
    by_score = top3(Diversity(mmr_lambda=1.0, near_duplicate_cosine=THRESHOLD))
    assert {d.hit.path for d in by_score.near_duplicates} == group
    distinct = sorted(DISTINCT, key=lambda p: -float(vectors[p] @ original))
    assert [h.path for h in by_score.hits][1:] == distinct[:2]


def test_candidates_row_and_metadata_say_what_was_dropped_and_a_missing_reference_names_its_segment(indexed, layout_of):
    layout = layout_of(indexed)
    campaigns = Campaigns(layout, indexed["mlflow_tracking"].store(layout), indexed["clip"].encoder,
                          diversity=indexed["candidate_diversity"].diversity)
    assert campaigns.diversity.near_duplicate_cosine == THRESHOLD

    metadata = candidates_metadata(campaigns, "park-dogs", None)
    row = read_candidates(layout.candidates_table, "park-dogs")
    assert row["query"] == '"a photo of a dog" 0 + image dog/original.jpg 1 | labels: dog'
    chosen = {c["path"] for c in row["candidates"]}
    dropped = row["near_duplicates"]
    assert len(row["candidates"]) == 3 and len(dropped) == 4
    assert {d["path"] for d in dropped} | (chosen & {"dog/original.jpg", *COPIES}) == {"dog/original.jpg", *COPIES}
    for d in dropped:
        assert d["duplicate_of_path"] in chosen and d["similarity"] > THRESHOLD and d["score"] > 0
    listing = metadata["near_duplicates_dropped"].value
    assert all(f"`{d['path']}` score {d['score']:.3f}: near-duplicate of `{d['duplicate_of_path']}`" in listing
               for d in dropped)
    assert metadata["near_duplicate_count"] == 4
    assert metadata["near_duplicate_cosine"] == THRESHOLD and metadata["mmr_lambda"] == 0.7

    with pytest.raises(FileNotFoundError, match="segment 'lost-reference': reference_image 'refs/gone.jpg'"):
        make_candidates(campaigns, "lost-reference")
    with pytest.raises(ValueError, match="^segment 'broken-reference': reference_image: cannot decode query image "
                                         "refs/notes.jpg: cannot identify image file$"):
        make_candidates(campaigns, "broken-reference")


def test_a_candidates_table_written_before_the_new_column_reads_it_as_null_and_gains_it(tmp_path):
    table = tmp_path / "campaign_candidates"
    old_schema = pa.schema([f for f in CANDIDATES_SCHEMA if f.name != "near_duplicates"])
    row = {"segment_key": "old", "segment_name": "Old", "description": "d", "subject": "dog", "subject_method": "m",
           "query": "q", "model_key": "k", "candidates": [{"rank": 0, "image_id": "a", "path": "a.jpg", "score": 0.5}],
           "contact_sheet": "s.png", "created_at": None}
    write_deltalake(str(table), pa.Table.from_pylist([row], schema=old_schema), mode="append")
    assert read_candidates(table, "old")["near_duplicates"] is None

    dropped = [{"image_id": "b", "path": "b.jpg", "score": 0.4, "duplicate_of_image_id": "a",
                "duplicate_of_path": "a.jpg", "similarity": 0.99}]
    replace_candidates(table, {**row, "segment_key": "new", "near_duplicates": dropped})
    assert read_candidates(table, "new")["near_duplicates"] == dropped
    assert read_candidates(table, "old")["near_duplicates"] is None and read_candidates(table, "old")["query"] == "q"


def hit(name: str, score: float, vector) -> Hit:
    v = np.asarray(vector, np.float32)
    return Hit(name, f"{name}.jpg", [f"{name}.jpg"], [], score, v / np.linalg.norm(v))


def test_mmr_trades_score_for_difference_as_lambda_says_and_near_duplicates_go_first():
    a, a_copy = hit("a", 0.90, [1, 0, 0]), hit("a-copy", 0.89, [1, 0.01, 0])
    b = hit("b", 0.85, [0.9, 0.44, 0])  # close to a (cosine 0.9)
    c = hit("c", 0.70, [0, 0, 1])  # far from everything
    d = hit("d", 0.60, [0, 1, 0.1])
    strict = 0.999
    by_score = pick_diverse([a, a_copy, b, c, d], 2, Diversity(mmr_lambda=1.0, near_duplicate_cosine=strict))
    assert [h.image_id for h in by_score.chosen] == ["a", "b"]
    assert [(n.hit.image_id, n.duplicate_of.image_id) for n in by_score.near_duplicates] == [("a-copy", "a")]
    varied = pick_diverse([a, a_copy, b, c, d], 2, Diversity(mmr_lambda=0.5, near_duplicate_cosine=strict))
    assert [h.image_id for h in varied.chosen] == ["a", "c"], "0.5*0.70 - 0.5*0 beats 0.5*0.85 - 0.5*0.9"
    no_rule = Diversity(mmr_lambda=0.5, near_duplicate_cosine=1.0)
    assert pick_diverse([a, a_copy, b, c, d], 2, no_rule).chosen[1] != a_copy, "MMR alone avoids the copy here"

    # Fewer distinct photos than places: fewer candidates, not a copy.
    few = pick_diverse([a, a_copy], 3, Diversity(near_duplicate_cosine=strict))
    assert [h.image_id for h in few.chosen] == ["a"] and few.pool == 2
    # A copy of a photo that is not chosen is not reported (nothing a reader needs).
    b_copy = hit("b-copy", 0.84, [0.9, 0.441, 0])
    one = pick_diverse([a, b, b_copy], 1, Diversity(near_duplicate_cosine=strict))
    assert one.near_duplicates == []

    with pytest.raises(ValueError, match="with_vectors"):
        pick_diverse([Hit("x", "x.jpg", [], [], 0.5)], 3)
    for bad in ({"mmr_lambda": 1.5}, {"near_duplicate_cosine": 2}, {"pool": 0}):
        with pytest.raises(ValueError):
            Diversity(**bad)


@pytest.fixture
def layout_of():
    return lambda resources: DataLayout.under(resources["data_store"].data_dir)


def test_the_diversity_settings_come_from_the_environment_and_offline_uses_the_tiny_models_threshold(monkeypatch):
    import argparse

    from orchestration.cli import settings_from_flags
    from orchestration.resources import build_resources

    assert build_resources(environ={}, read_now=True)["candidate_diversity"].diversity == Diversity()
    environ = {"ADRAG_MMR_LAMBDA": "0.5", "ADRAG_NEAR_DUPLICATE_COSINE": "0.97", "ADRAG_CANDIDATE_POOL": "40"}
    assert build_resources(environ=environ, read_now=True)["candidate_diversity"].diversity == \
        Diversity(mmr_lambda=0.5, near_duplicate_cosine=0.97, pool=40)
    with pytest.raises(ValueError, match="mmr_lambda 'lots' is not a number"):
        _ = build_resources(environ={"ADRAG_MMR_LAMBDA": "lots"}, read_now=True)["candidate_diversity"].diversity

    for name in [n for n in os.environ if n.startswith("ADRAG_")]:
        monkeypatch.delenv(name)
    offline = argparse.Namespace(data_dir=None, offline=True, images=None)
    assert settings_from_flags(offline)["ADRAG_NEAR_DUPLICATE_COSINE"] == str(THRESHOLD)
    monkeypatch.setenv("ADRAG_NEAR_DUPLICATE_COSINE", "0.98")  # a setting of one's own wins over --offline's
    assert "ADRAG_NEAR_DUPLICATE_COSINE" not in settings_from_flags(offline)
