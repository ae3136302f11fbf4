"""Query forms (assets_pkg/index/queries.py): text, image, text + image fused, negative terms, label
filters; one unit vector whose cosine with each image is the score, whatever the form."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pytest
from conftest import photo_bytes

from assets_pkg.embeddings.encode import EncodedBatch
from assets_pkg.index.lance_index import open_reader, sync_index
from assets_pkg.index.queries import BadQuery, Query, QueryImage, build_query, parse_text

AXIS_TEXTS = {"dog": [1, 0, 0, 0], "leash": [0.6, 0.8, 0, 0], "cat": [0, 0, 1, 0], "red collar": [0, 0.6, 0, 0.8]}


class AxisEncoder:
    """Texts and images as fixed unit vectors, so the fused query can be checked by hand."""

    def encode_texts(self, texts):
        return np.array([AXIS_TEXTS[t] for t in texts], np.float32)

    def encode_images(self, items):
        for image_id, data in items:
            if data == b"not an image":
                yield EncodedBatch([], np.zeros((0, 4), np.float32), [(image_id, "cannot decode for embedding: bad")])
            else:
                yield EncodedBatch([image_id], np.array([[0, 0, 0, 1]], np.float32))


def unit(v):
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v)


def test_negative_terms_are_words_or_quoted_phrases_after_a_space_and_hyphenated_words_are_not():
    assert parse_text("dog -leash") == ("dog", ("leash",))
    assert parse_text('-leash dog  -"red  collar" on grass') == ("dog on grass", ("leash", "red collar"))
    assert parse_text("a well-behaved dog") == ("a well-behaved dog", ())
    assert parse_text("-leash -leash") == ("", ("leash",))
    assert parse_text("dog - leash") == ("dog - leash", ()), "a lone '-' is text"


def test_each_form_is_the_documented_combination_of_unit_vectors():
    enc, image = AxisEncoder(), QueryImage(b"jpeg bytes", "ref.jpg")
    t, i, n = unit([1, 0, 0, 0]), unit([0, 0, 0, 1]), unit([0.6, 0.8, 0, 0])

    assert np.allclose(build_query(Query("dog"), enc).vector, t)
    assert np.allclose(build_query(Query(image=image), enc).vector, i)
    fused = build_query(Query("dog", image, image_weight=0.25), enc).vector
    assert np.allclose(fused, unit(0.75 * t + 0.25 * i), atol=1e-6)
    negative = build_query(Query.parse("dog -leash", negative_weight=0.5), enc).vector
    assert np.allclose(negative, unit(t - 0.5 * n), atol=1e-6)
    two = build_query(Query.parse('dog -leash -"red collar"', image, negative_weight=0.3), enc)
    both_negatives = unit(n + unit([0, 0.6, 0, 0.8]))
    assert np.allclose(two.vector, unit(unit(0.5 * t + 0.5 * i) - 0.3 * both_negatives), atol=1e-6)
    for built in (fused, negative, two.vector):
        assert built.dtype == np.float32 and abs(np.linalg.norm(built) - 1) < 1e-6

    assert Query.parse("dog -leash", image, ["Dog", "dog", "hot_dog"]).labels == ("dog", "hot dog")
    assert two.description == '"dog" 0.5 + image ref.jpg 0.5 - "leash", "red collar" x0.3'
    assert build_query(Query("dog", labels=("dog",)), enc).where == "array_has_any(labels, ['dog'])"
    assert build_query(Query("dog"), enc).description == "dog"


def test_bad_queries_say_what_is_wrong_in_one_line(tmp_path):
    enc = AxisEncoder()
    cases = [
        (lambda: build_query(Query.parse("-leash"), enc), "only negative terms (-leash)"),
        (lambda: build_query(Query(), enc), "give a text, an image or both"),
        (lambda: build_query(Query("dog", image_weight=1.5), enc), "image weight 1.5 is outside 0..1"),
        (lambda: build_query(Query.parse("dog -leash", negative_weight=-1), enc), "negative weight -1"),
        (lambda: build_query(Query.parse("leash -leash", negative_weight=1), enc), "cancel the query"),
        (lambda: build_query(Query(image=QueryImage(b"not an image", "x.txt")), enc),
         "cannot decode query image x.txt"),
        (lambda: QueryImage.read(tmp_path / "missing.jpg"), "missing.jpg does not exist"),
        (lambda: QueryImage.read(tmp_path), "is not a file"),
    ]
    for call, message in cases:
        with pytest.raises(BadQuery, match=re.escape(message)) as err:
            call()
        assert "\n" not in str(err.value)


def test_an_image_query_is_encoded_as_the_catalog_encodes_and_scores_are_cosines_in_every_form(tmp_path, clip_encoder):
    """The real model and a real index: an indexed photo used as the query finds itself at cosine 1, and
    each form's scores are the cosine of its unit query vector with the stored vectors."""
    photos = {f"{i}": photo_bytes(i, size=(120, 90)) for i in range(8)}
    batches = list(clip_encoder.encode_images(photos.items()))
    ids = [i for b in batches for i in b.image_ids]
    stored = np.concatenate([b.vectors for b in batches])
    vectors = pa.table({"image_id": ids, "vector": pa.array(list(stored), pa.list_(pa.float32()))})
    metadata = pa.table({"image_id": ids, "paths": [[f"img/{i}.jpg"] for i in ids],
                         "labels": [["dog" if int(i) % 2 else "cat"] for i in ids]})
    sync_index(tmp_path, clip_encoder.model_key, vectors, metadata, clip_encoder.dim)
    reader = open_reader(tmp_path, clip_encoder.model_key)
    by_id = dict(zip(ids, stored))

    image = QueryImage(photos["3"], "3.jpg")
    itself = reader.search(build_query(Query(image=image), clip_encoder).vector, k=1)[0]
    assert itself.image_id == "3" and itself.score == pytest.approx(1.0, abs=1e-5)

    forms = [Query("a photo of a dog"), Query(image=image), Query("a photo of a dog", image, image_weight=0.3),
             Query.parse("a photo of a dog -leash", image), Query.parse("a photo of a dog -leash", labels=["dog"])]
    for query in forms:
        built = build_query(query, clip_encoder)
        hits = reader.search(built.vector, k=8, where=built.where)
        assert hits, query
        for hit in hits:
            assert hit.score == pytest.approx(float(built.vector @ by_id[hit.image_id]), abs=1e-5), query
    filtered = build_query(Query.parse("a photo of a dog -leash", labels=["dog"]), clip_encoder)
    assert {h.labels[0] for h in reader.search(filtered.vector, k=8, where=filtered.where)} == {"dog"}
