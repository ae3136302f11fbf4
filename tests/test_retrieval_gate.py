"""The retrieval quality gate (`index_retrieval_beats_chance`): folder labels as a probe set.

The figures and the rule on hand-made vectors in a real LanceDB index (no model), then the gate as
Dagster runs it, over real Delta and LanceDB tables, on the tiny CLIP config twice: trained for
about 40 seconds on the CPU (tests/clip_training.py) and with random weights. The trained model is
judged on held-out images: the index holds only drawings it never saw in training, so the gate
measures whether retrieval generalises rather than whether the model memorised its training set.
`pytest -s` prints the figures of both.
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from clip_training import train_tiny_clip
from conftest import tiny_resources
from test_index import tables

from assets_pkg.embeddings.model import RANDOM, TINY_MODEL
from assets_pkg.embeddings.resources import ClipModel
from assets_pkg.index.checks import index_retrieval_beats_chance
from assets_pkg.index.lance_index import open_reader, sync_index
from assets_pkg.index.quality import (
    MAX_P_VALUE,
    hypergeometric_pmf,
    judge,
    passing_verdict,
    probe_labels,
    tail_at_least,
)
from demo_catalog import SUBJECTS, make_demo_catalog
from orchestration.definitions import CATALOG_ASSETS

DIM = 8
PER_SUBJECT = 84  # drawn per subject; every 7th is held out: 72 to train on, 12 to index and judge
HELD_OUT_EVERY = 7


# The figures and the rule, on hand-made vectors ------------------------------------------------------

def basis(label: str, labels: list[str]) -> np.ndarray:
    return np.eye(DIM, dtype=np.float32)[labels.index(label)]


def indexed(tmp_path: Path, image_labels: list[list[str]], vectors: np.ndarray):
    emb, meta = tables(vectors, labels_for=lambda i: image_labels[i])
    sync_index(tmp_path / "lance", "m", emb, meta, DIM)
    return open_reader(tmp_path / "lance", "m")


def clustered(image_labels: list[list[str]], labels: list[str], seed: int = 0) -> np.ndarray:
    """Each labelled image near its label's axis; an unlabelled one on the last axis."""
    rng = np.random.default_rng(seed)
    centres = np.stack([basis(ls[0], labels) if ls else np.eye(DIM)[-1] for ls in image_labels])
    vectors = centres + 0.1 * rng.normal(size=centres.shape)
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def text_encoder(labels: list[str], blind: bool = False):
    """Encodes 'a photo of a <label>' to the label's axis; `blind`: one vector whatever the query."""
    def encode_texts(texts: list[str]) -> np.ndarray:
        assert all(t.startswith("a photo of a ") for t in texts), texts
        return np.stack([basis(labels[0] if blind else t.removeprefix("a photo of a "), labels) for t in texts])
    return encode_texts


def test_chance_is_the_expected_value_of_a_random_top_k_and_the_tail_is_exact():
    # Every 3-subset of 7 images, 3 of them relevant: the pmf of relevant ones in a random top 3.
    counts = np.bincount([sum(i < 3 for i in top) for top in itertools.combinations(range(7), 3)], minlength=4)
    assert np.allclose(hypergeometric_pmf(7, 3, 3), counts / counts.sum())
    assert np.isclose(hypergeometric_pmf(7, 3, 3) @ np.arange(4) / 3, 3 / 7), "precision@3 chance is n/N"
    assert np.isclose(hypergeometric_pmf(30, 4, 10) @ np.arange(11) / 4, 10 / 30), "recall@10 chance is 10/N"
    # Two independent queries: P(total >= 5) by enumerating every pair of random top 3s.
    a, b = hypergeometric_pmf(7, 3, 3), hypergeometric_pmf(7, 2, 3)
    brute = sum(a[i] * b[j] for i in range(4) for j in range(3) if i + j >= 5)
    assert np.isclose(tail_at_least([a, b], 5), brute) and tail_at_least([a, b], 0) == 1.0
    assert tail_at_least([a, b], 7) == 0.0


def test_perfect_retrieval_passes_and_a_query_blind_ranking_scores_exactly_chance(tmp_path):
    labels = ["cat", "dog", "parrot"]
    image_labels = [[label] for label in labels for _ in range(4)]
    reader = indexed(tmp_path, image_labels, clustered(image_labels, labels))

    perfect = probe_labels(reader, text_encoder(labels))
    assert (perfect.mean_precision_at_3, perfect.mean_recall_at_10) == (1.0, 1.0)
    assert np.isclose(perfect.chance_precision_at_3, 1 / 3) and np.isclose(perfect.chance_recall_at_10, 10 / 12)
    assert perfect.can_judge and perfect.beats_chance and perfect.p_value == perfect.best_p_value < 1e-4
    report = judge(perfect, "m")
    assert report.ok and passing_verdict(perfect).startswith("retrieval beats chance: mean precision@3 1.000")
    assert report.facts["mean_precision_at_3"] == 1.0 and report.facts["labels"] == 3

    blind = probe_labels(reader, text_encoder(labels, blind=True))
    assert [p.precision_at_3 for p in blind.probes] == [1.0, 0.0, 0.0], "every query gets the cat photos"
    assert np.isclose(blind.mean_precision_at_3, blind.chance_precision_at_3), "exactly chance"
    assert blind.can_judge and not blind.beats_chance and blind.p_value > 0.5
    report = judge(blind, "adrag-tiny-clip/random-seed0/64px")
    assert not report.ok and not report.serious
    assert "retrieval is no better than chance: mean precision@3 0.333 (chance 0.333)" in report.describe()
    assert "The model has random weights" in report.describe()
    assert "Check that m is the model you meant" in judge(blind, "m").describe()


def test_unlabelled_images_are_left_out_of_the_probe(tmp_path):
    labels = ["cat", "dog", "parrot"]
    image_labels = [[label] for label in labels for _ in range(4)] + [[]] * 5
    vectors = clustered(image_labels, labels)
    vectors[12:] = np.ones(DIM, np.float32) / np.sqrt(DIM)  # would top every query if searched
    quality = probe_labels(indexed(tmp_path, image_labels, vectors), text_encoder(labels))
    assert (quality.images, quality.unlabelled) == (12, 5)
    assert quality.mean_precision_at_3 == 1.0 and np.isclose(quality.chance_precision_at_3, 1 / 3)


@pytest.mark.parametrize("image_labels, why", [
    ([["dog"]] * 6, "the catalog has 1 label and the gate needs at least 2"),
    ([[]] * 6, "the catalog has 0 labels"),
    ([["cat"]] * 10 + [["dog"]] * 10, ("with 2 labels over 20 labelled images, a random ranking would put only "
                                       "relevant images in every top 3 with probability 0.0111")),
])
def test_a_catalog_too_small_to_judge_passes_and_says_why(tmp_path, image_labels, why):
    labels = ["cat", "dog"]
    quality = probe_labels(indexed(tmp_path, image_labels, clustered(image_labels, labels)), text_encoder(labels))
    assert not quality.can_judge
    assert judge(quality, "m").ok
    assert why in passing_verdict(quality), passing_verdict(quality)


# The gate in Dagster, on the tiny CLIP trained and untrained ------------------------------------------

@pytest.fixture(scope="module")
def drawn_catalog(tmp_path_factory) -> list[tuple[Path, str]]:
    drawn = make_demo_catalog(tmp_path_factory.mktemp("drawn"), images_per_subject=PER_SUBJECT, size=(128, 96))
    return [(path, path.parent.name) for path in drawn.image_paths]


def held_out(path: Path) -> bool:
    return int(path.stem.rsplit("-", 1)[1]) % HELD_OUT_EVERY == 0


@pytest.fixture(scope="module")
def trained_checkpoint(drawn_catalog, tmp_path_factory) -> Path:
    """The tiny CLIP trained once for the module on the images that are not held out."""
    training = [(path, label) for path, label in drawn_catalog if not held_out(path)]
    run = train_tiny_clip(training, tmp_path_factory.mktemp("weights") / "tiny-trained.pt")
    print(f"\ntrained the tiny CLIP on {len(training)} images, {run.steps} steps: "
          f"loss {run.first_loss:.3f} -> {run.last_loss:.3f}")
    return run.checkpoint


@pytest.fixture
def held_out_data_dir(drawn_catalog, tmp_path) -> Path:
    """A data directory whose image folder holds only the held-out drawings."""
    for path, label in drawn_catalog:
        if held_out(path):
            (tmp_path / "data" / "images" / label).mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, tmp_path / "data" / "images" / label / path.name)
    return tmp_path / "data"


def gate(data_dir: Path, weights: str, instance) -> dg.AssetCheckEvaluation:
    """Materialize the catalog graph on the model and evaluate the gate after it."""
    resources = {**tiny_resources(data_dir),
                 "clip": ClipModel(model_name=TINY_MODEL, weights=weights, device="cpu", batch_size=16)}
    result = dg.materialize([*CATALOG_ASSETS, index_retrieval_beats_chance], resources=resources, instance=instance)
    [evaluation] = result.get_asset_check_evaluations()
    return evaluation


def figures(evaluation: dg.AssetCheckEvaluation) -> dict:
    return {name: value.value for name, value in evaluation.metadata.items() if name != "per_label"}


def test_the_gate_passes_on_a_trained_tiny_clip_and_warns_on_random_weights(
        trained_checkpoint, held_out_data_dir, instance):
    trained = gate(held_out_data_dir, str(trained_checkpoint), instance)
    untrained = gate(held_out_data_dir, RANDOM, instance)
    for name, evaluation in (("trained", trained), ("random weights", untrained)):
        print(f"{name}: " + ", ".join(f"{k} {v}" for k, v in figures(evaluation).items()))
        print("  per label (precision@3, recall@10): " + ", ".join(
            f"{r.data['label']} {r.data['precision_at_3']:.2f} {r.data['recall_at_10']:.2f}"
            for r in evaluation.metadata["per_label"].value.records))

    found = figures(trained)
    assert trained.passed, trained.description
    assert trained.description.startswith("retrieval beats chance: mean precision@3")
    assert (found["labels"], found["labelled_images"], found["unlabelled_images"]) == (len(SUBJECTS), 72, 0)
    assert found["chance_precision_at_3"] == round(1 / len(SUBJECTS), 4)
    assert found["chance_recall_at_10"] == round(10 / 72, 4)
    assert found["mean_precision_at_3"] >= 0.5 and found["p_value"] < MAX_P_VALUE
    assert found["mean_recall_at_10"] > 2 * found["chance_recall_at_10"]
    table = trained.metadata["per_label"].value
    assert [r.data["label"] for r in table.records] == sorted(SUBJECTS)
    assert all(r.data["images"] == 12 for r in table.records)

    found = figures(untrained)
    assert not untrained.passed and untrained.severity == dg.AssetCheckSeverity.WARN
    assert untrained.description.startswith("retrieval is no better than chance")
    assert "The model has random weights" in untrained.description
    assert found["p_value"] >= MAX_P_VALUE
    assert found["chance_precision_at_3"] == round(1 / len(SUBJECTS), 4)
