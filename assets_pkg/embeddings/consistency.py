"""Invariants of the embeddings table, checked after every catalog run.

For the current model: one vector of the model's dimension per mirror image, except images the
embedding stage quarantined (their bytes would not decode), and nothing for images not in the mirror.
For every model key: each vector is finite and unit-norm, and a key's vectors share one dimension.
Both come from one scan of the table (the vectors are its bulk).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from assets_pkg.catalog.consistency import quarantine_rate
from assets_pkg.consistency import Report
from assets_pkg.delta_tables import read_table, scan, sql_literal
from assets_pkg.layout import EMBEDDINGS_SCHEMA, MIRROR_SCHEMA, QUARANTINE_SCHEMA

STAGE = "embeddings"
NORM_TOLERANCE = 1e-3


def embeddings_match_mirror(embeddings_table: Path, mirror_table: Path, quarantine_table: Path,
                            model_key: str, dim: int) -> Report:
    mirror = set(read_table(mirror_table, MIRROR_SCHEMA, ["image_id"])["image_id"].to_pylist())
    quarantined = set(read_table(quarantine_table, QUARANTINE_SCHEMA, ["image_id"],
                                 f"stage = {sql_literal(STAGE)}")["image_id"].to_pylist())
    ids: list[str] = []  # the current model's
    dims: dict[str, dict[int, int]] = {}  # model key -> dimension -> vectors
    non_finite = not_unit = 0
    for batch in scan(embeddings_table, EMBEDDINGS_SCHEMA, ["image_id", "model_key", "vector"]):
        keys = batch.column("model_key")
        ids.extend(batch.column("image_id").filter(pc.equal(keys, model_key)).to_pylist())
        lengths = pc.list_value_length(batch.column("vector"))
        for key, length in zip(keys.to_pylist(), lengths.to_pylist()):
            per_key = dims.setdefault(key, {})
            per_key[length] = per_key.get(length, 0) + 1
        for length in set(lengths.to_pylist()):  # norms need rows of one dimension
            same = batch.filter(pc.equal(lengths, length))
            vectors = same.column("vector").flatten().to_numpy().reshape(len(same), length)
            finite = np.isfinite(vectors).all(axis=1)
            non_finite += int((~finite).sum())
            not_unit += int((np.abs(np.linalg.norm(vectors[finite], axis=1) - 1) > NORM_TOLERANCE).sum())

    have = set(ids)
    missing = sorted(mirror - quarantined - have)
    extra = sorted(have - mirror)
    wrong_dim = {length: count for length, count in dims.get(model_key, {}).items() if length != dim}
    report = Report(facts={"mirror_images": len(mirror), "vectors": len(ids), "quarantined": len(quarantined & mirror),
                           "missing": len(missing), "extra": len(extra), "duplicates": len(ids) - len(have),
                           "wrong_dimension": sum(wrong_dim.values()), "non_finite": non_finite,
                           "not_unit_norm": not_unit, "dim": dim, "model_keys": len(dims)})
    redo = f"; re-run the catalog (refresh_catalog) to embed again under {model_key}"
    if missing:
        report.problems.append(f"{len(missing)} mirror images have no vector for {model_key}, e.g. {missing[0][:12]}"
                               + redo)
    if extra:
        report.problems.append(f"{len(extra)} vectors belong to images no longer in the mirror, e.g. {extra[0][:12]}")
    if len(ids) != len(have):
        report.problems.append(f"{len(ids) - len(have)} duplicate vectors for {model_key}")
    for length, count in sorted(wrong_dim.items()):
        report.problems.append(f"{count} vectors have {length} dimensions, but {model_key} makes {dim}")
    for key, found in sorted(dims.items()):
        if key != model_key and len(found) > 1:
            report.problems.append(f"model key {key} has vectors of several dimensions: {sorted(found)}")
    if non_finite:
        report.problems.append(f"{non_finite} vectors contain NaN or infinity")
    if not_unit:
        report.problems.append(f"{not_unit} vectors are not unit-norm (tolerance {NORM_TOLERANCE})")
    return report


def embeddings_quarantine_rate(mirror_table: Path, quarantine_table: Path, limit: float) -> Report:
    """Mirror images the embedding stage could not decode, as a share of every mirror image.

    The stage's quarantine rows are exactly the mirror images it set aside on its last run.
    """
    images = read_table(mirror_table, MIRROR_SCHEMA, ["image_id"]).num_rows
    quarantined = read_table(quarantine_table, QUARANTINE_SCHEMA, ["path"], f"stage = {sql_literal(STAGE)}").num_rows
    return quarantine_rate(quarantine_table, STAGE, max(0, images - quarantined), limit)
