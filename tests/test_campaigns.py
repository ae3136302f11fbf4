"""Campaign domain code: subject choice, prompt, generation cache key, atomic ad files, contact sheet."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import photo_bytes
from PIL import Image

from assets_pkg.atomic_files import write_atomically
from assets_pkg.campaigns.contact_sheet import contact_sheet
from assets_pkg.campaigns.prompt import build_headline, build_prompt
from assets_pkg.campaigns.segments import Brand, Segment
from assets_pkg.campaigns.store import ad_path, output_key
from assets_pkg.campaigns.subjects import ClipZeroShotProposer, choose_subject


def fake_text_encoder(texts: list[str]) -> np.ndarray:
    """Deterministic unit vectors where 'horse' and 'riding' point the same way."""
    vectors = []
    for text in texts:
        v = np.array([("horse" in text) + ("riding" in text), "fish" in text, 0.1, "cat" in text], np.float32)
        vectors.append(v / np.linalg.norm(v))
    return np.stack(vectors)


SEGMENT = Segment(key="retirees", name="Retirees", description="a love of riding")


def test_subject_from_file_wins_else_zero_shot_within_the_label_filter():
    proposer = ClipZeroShotProposer(fake_text_encoder)
    chosen = choose_subject(SEGMENT, proposer, ["cat", "goldfish", "horse"])
    assert (chosen.subject, chosen.method) == ("horse", "clip-zero-shot")
    assert list(chosen.scores)[0] == "horse" and chosen.scores["horse"] == max(chosen.scores.values())

    restricted = Segment(key="r", name="Retirees", description="a love of riding", labels=("cat", "goldfish"))
    assert choose_subject(restricted, proposer, ["cat", "goldfish", "horse"]).subject in {"cat", "goldfish"}

    named = Segment(key="r", name="R", description="d", subject="french bulldog")
    assert choose_subject(named, proposer, ["cat"]).method == "segments-file"
    with pytest.raises(ValueError, match="no labels"):
        choose_subject(SEGMENT, proposer, [])


def test_prompt_names_brand_subject_and_audience():
    brand = Brand("Bricks", "Real food for real pets")
    prompt = build_prompt(SEGMENT, "horse", brand)
    for part in ("Bricks", "Real food for real pets", "horse", "Retirees", "a love of riding", "first image",
                 "second image"):
        assert part in prompt
    assert "Bricks" in build_headline(SEGMENT, brand) and "retirees" in build_headline(SEGMENT, brand)


def test_output_key_changes_with_every_input_and_only_then():
    base = dict(seed=b"seed", brand=b"brand", prompt="p", generator_id="g", parameters={"a": 1, "b": 2})
    key = output_key(**base)
    assert output_key(**{**base, "parameters": {"b": 2, "a": 1}}) == key, "parameter order does not matter"
    for change in ({"seed": b"seed2"}, {"brand": b"x"}, {"prompt": "q"}, {"generator_id": "h"},
                   {"parameters": {"a": 2, "b": 2}}):
        assert output_key(**{**base, **change}) != key, change
    assert output_key(seed=b"ab", brand=b"c", prompt="", generator_id="", parameters={}) != \
        output_key(seed=b"a", brand=b"bc", prompt="", generator_id="", parameters={}), "fields are delimited"


def test_ad_files_are_written_atomically(tmp_path, monkeypatch):
    path = ad_path(tmp_path / "segment", "f" * 64)
    write_atomically(path, b"png bytes")
    assert path.read_bytes() == b"png bytes" and path.name == "ad-" + "f" * 24 + ".png"

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr("assets_pkg.atomic_files.os.replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_atomically(tmp_path / "segment" / "other.png", b"x")
    assert sorted(p.name for p in (tmp_path / "segment").iterdir()) == [path.name], "no temp file left behind"


def test_contact_sheet_shows_the_three_candidates():
    images = [photo_bytes(i, size=(120, 80)) for i in range(3)]
    sheet = Image.open(io.BytesIO(contact_sheet(images, [f"#{i} score 0.5\npath/{i}.jpg" for i in range(3)])))
    assert sheet.format == "PNG" and sheet.size == (960, 376)
    thumbs = [np.asarray(sheet.crop((i * 320 + 10, 10, i * 320 + 300, 300))).mean() for i in range(3)]
    assert len({round(t, 1) for t in thumbs}) == 3, "three different photos"
