"""Property-style: random add / modify / delete / rename / duplicate-copy steps, a catalog run after
each; after every run the mirror, the embeddings and the index hold exactly the images on disk."""

from __future__ import annotations

import random
import shutil

import numpy as np
import pytest
from conftest import write_photo
from test_pipeline import assert_tables_match_disk, disk_state, model_key_of, refresh

from assets_pkg.index.lance_index import open_reader

STEPS = 8


OPS = ["add", "modify", "delete", "rename", "copy"]


def random_step(rng: random.Random, images, counter: list[int], first_op: str | None) -> list[str]:
    files = sorted(p for p in images.rglob("*") if p.is_file())
    done = []
    for n_op in range(rng.randint(1, 3)):
        op = first_op if n_op == 0 and first_op else rng.choice(OPS if files else ["add"])
        counter[0] += 1
        n = counter[0]
        if op == "add":
            label = rng.choice(["dog", "cat", "fox"])
            write_photo(images / label / f"new-{n}{rng.choice(['.jpg', '.png'])}", seed=1000 + n)
        else:
            victim = rng.choice(files)
            files.remove(victim)
            if op == "modify":
                write_photo(victim, seed=2000 + n, fmt="PNG" if victim.suffix == ".png" else "JPEG")
            elif op == "delete":
                victim.unlink()
            elif op == "rename":
                target = images / rng.choice(["dog", "cat", "moved"]) / f"renamed {n}{victim.suffix}"
                target.parent.mkdir(exist_ok=True)
                victim.rename(target)
            else:
                shutil.copy(victim, victim.with_name(f"copy-{n}{victim.suffix}"))
        done.append(op)
    return done


@pytest.mark.parametrize("seed", [7, 2024])
def test_random_changes_propagate_exactly(seed, resources, instance, layout):
    rng = random.Random(seed)
    key = model_key_of(refresh(resources, instance))
    counter = [0]
    ops_seen = set()
    must_do = rng.sample(OPS, len(OPS))  # every kind of change at least once, in a random order
    for step in range(STEPS):
        before = _vectors(layout, key)
        ops_seen.update(random_step(rng, layout.images_dir, counter, must_do[step] if step < len(OPS) else None))
        refresh(resources, instance)  # asset checks run and must pass too
        assert_tables_match_disk(layout, key)
        on_disk = set(disk_state(layout.images_dir))
        index = open_reader(layout.lance_dir, key)
        for vanished in set(before) - on_disk:
            hits = index.search(before[vanished], k=index.table.count_rows())
            assert vanished not in {h.image_id for h in hits}, "a vanished image can never be retrieved"
    assert ops_seen == {"add", "modify", "delete", "rename", "copy"}, ops_seen


def _vectors(layout, key) -> dict[str, np.ndarray]:
    from assets_pkg.embeddings.store import read_vectors

    rows = read_vectors(layout.embeddings_table, key)
    return {i: np.asarray(v, np.float32) for i, v in zip(rows["image_id"].to_pylist(), rows["vector"].to_pylist())}
