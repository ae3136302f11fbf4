"""Asset checks on every catalog asset, and the blocking readiness check that stops generation.

Everything runs through real Dagster runs over real Delta and LanceDB tables; tables are tampered
with the way a person or a crashed tool would (Delta writes, LanceDB deletes), never mocked.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pytest
from conftest import write_photo
from deltalake import DeltaTable, write_deltalake
from test_automation import other_weights

from assets_pkg.catalog.resources import QuarantineLimit
from assets_pkg.delta_tables import read_table
from assets_pkg.embeddings.model import TINY_MODEL
from assets_pkg.embeddings.resources import ClipModel
from assets_pkg.index.lance_index import open_index
from assets_pkg.index.readiness import IndexNotReady, index_readiness, require_ready
from assets_pkg.layout import CAMPAIGNS_SCHEMA, CANDIDATES_SCHEMA, EMBEDDINGS_SCHEMA
from orchestration.definitions import ALL_CHECKS, CAMPAIGN_CHECKS, CATALOG_ASSETS, build_definitions, defs
from orchestration.runner import sync_segment_partitions

CATALOG_KEYS = ["image_manifest", "image_mirror", "image_embeddings", "image_index"]


def with_limit(resources: dict, max_rate: str = "0.05") -> dict:
    return {**resources, "quarantine_limit": QuarantineLimit(max_rate=max_rate)}


def refresh(resources, instance, **kwargs) -> dg.ExecuteInProcessResult:
    return dg.materialize([*CATALOG_ASSETS, *ALL_CHECKS], resources=with_limit(resources, **kwargs), instance=instance)


def checks_only(resources, instance, *names: str) -> dict[str, dg.AssetCheckEvaluation]:
    chosen = [c for c in ALL_CHECKS if not names or next(iter(c.check_specs)).name in names]
    result = dg.materialize(chosen, resources=with_limit(resources), instance=instance,
                            selection=dg.AssetSelection.checks(*chosen), raise_on_error=False)
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def evaluations(result) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def campaign_job(resources):
    """The code location's generate_campaigns job, on the test's resources."""
    return build_definitions(resources=with_limit(resources)).resolve_job_def("generate_campaigns")


def test_every_catalog_asset_has_checks_and_the_campaign_job_runs_the_readiness_check():
    graph = defs.resolve_asset_graph()
    checked = {}
    for key in graph.asset_check_keys:
        checked.setdefault(key.asset_key.to_user_string(), set()).add(key.name)
    assert set(CATALOG_KEYS) <= set(checked), checked
    assert {"manifest_quarantine_rate_within_limit"} <= checked["image_manifest"]
    assert {"mirror_matches_manifest_images"} <= checked["image_mirror"]
    assert {"embeddings_match_mirror_and_model", "embeddings_quarantine_rate_within_limit"} <= checked["image_embeddings"]
    assert {"index_ready_for_campaigns"} <= checked["image_index"]
    job = defs.resolve_job_def("generate_campaigns")
    assert "image_index_index_ready_for_campaigns" in {n.name for n in job.graph.node_defs}
    refresh_steps = {n.name for n in defs.resolve_job_def("refresh_catalog").graph.node_defs}
    catalog_checks = {key for key in graph.asset_check_keys if key.asset_key.to_user_string() in CATALOG_KEYS}
    assert {f"{key.asset_key.to_user_string()}_{key.name}" for key in catalog_checks} <= refresh_steps
    assert {"ads_reach_quality_bar", "ads_exist_and_match_campaigns"} <= checked["campaign_ad"]
    assert {"campaign_ad_ads_reach_quality_bar", "campaign_ad_ads_exist_and_match_campaigns"} <= {
        n.name for n in job.graph.node_defs}


def test_every_check_passes_on_a_fresh_catalog(resources, instance):
    result = refresh(resources, instance)
    found = evaluations(result)
    assert set(found) == {next(iter(c.check_specs)).name for c in ALL_CHECKS if c not in CAMPAIGN_CHECKS}
    gate = found.pop("index_retrieval_beats_chance")  # judges the model: random weights retrieve at chance
    assert not gate.passed and gate.severity == dg.AssetCheckSeverity.WARN, gate.description
    assert "The model has random weights" in gate.description
    assert all(e.passed for e in found.values()), {n: e.description for n, e in found.items() if not e.passed}
    mirror = found["mirror_matches_manifest_images"].metadata
    assert mirror["manifest_images"].value == mirror["mirror_images"].value == 12
    embeddings = found["embeddings_match_mirror_and_model"].metadata
    assert (embeddings["vectors"].value, embeddings["dim"].value) == (12, 64)
    assert found["manifest_quarantine_rate_within_limit"].metadata["rate"].value == 0
    assert found["index_ready_for_campaigns"].metadata["rows"].value == 12
    flat = found["index_recall_at_10"].metadata  # 12 rows: flat search, and still a point for the plot
    assert (flat["search"].value, flat["recall_at_10"].value) == ("flat", 1.0)


def test_quarantine_rate_over_the_limit_warns_and_the_catalog_still_completes(resources, instance, layout):
    (layout.images_dir / "dog" / "truncated.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (layout.images_dir / "notes.png").write_text("<html>not an image</html>")
    result = refresh(resources, instance)
    assert result.success, "a warning never stops the catalog"
    check = evaluations(result)["manifest_quarantine_rate_within_limit"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert "2 of 14 files (14.3%) are quarantined at the catalog stage, above the limit of 5.0%" in check.description
    assert "raise ADRAG_MAX_QUARANTINE_RATE" in check.description
    assert evaluations(result)["index_ready_for_campaigns"].passed

    relaxed = refresh(resources, instance, max_rate="0.2")
    assert evaluations(relaxed)["manifest_quarantine_rate_within_limit"].passed
    with pytest.raises(ValueError, match="use a share such as 0.05"):
        QuarantineLimit(max_rate="5%").rate


def test_mirror_check_tells_missing_images_from_stale_rows(resources, instance, layout):
    refresh(resources, instance)
    mirror = DeltaTable(str(layout.mirror_table))
    victim = read_table(layout.mirror_table, pa.schema([("image_id", pa.string())]))["image_id"][0].as_py()
    row = mirror.to_pyarrow_table(filters=[("image_id", "=", victim)])
    mirror.delete(f"image_id = '{victim}'")
    check = checks_only(resources, instance, "mirror_matches_manifest_images")["mirror_matches_manifest_images"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert "1 images of the manifest are not in the mirror yet" in check.description

    write_deltalake(str(layout.mirror_table), row, mode="append")
    write_deltalake(str(layout.mirror_table), row, mode="append")  # now twice: a duplicate row
    check = checks_only(resources, instance, "mirror_matches_manifest_images")["mirror_matches_manifest_images"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert "the mirror holds 1 duplicate rows" in check.description


def test_embeddings_check_catches_missing_nan_wrong_dimension_and_orphan_vectors(resources, instance, layout):
    result = refresh(resources, instance)
    key = [e for e in result.get_asset_materialization_events()
           if e.asset_key.to_user_string() == "image_embeddings"][0].materialization.metadata["model_key"].value
    table = DeltaTable(str(layout.embeddings_table))
    ids = read_table(layout.embeddings_table, EMBEDDINGS_SCHEMA, ["image_id"])["image_id"].to_pylist()
    table.delete(f"image_id IN ('{ids[0]}', '{ids[1]}', '{ids[2]}')")
    now = datetime.now(timezone.utc)
    nan = np.full(64, np.nan, np.float32)
    short = np.ones(32, np.float32) / np.sqrt(32)
    unit = np.ones(64, np.float32) / 8.0
    bad = pa.Table.from_pylist([
        {"image_id": ids[1], "model_key": key, "vector": nan.tolist(), "embedded_at": now},
        {"image_id": ids[2], "model_key": key, "vector": short.tolist(), "embedded_at": now},
        {"image_id": "f" * 64, "model_key": key, "vector": unit.tolist(), "embedded_at": now},
    ], schema=EMBEDDINGS_SCHEMA)
    write_deltalake(str(layout.embeddings_table), bad, mode="append")

    check = checks_only(resources, instance, "embeddings_match_mirror_and_model")["embeddings_match_mirror_and_model"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert f"1 mirror images have no vector for {key}" in check.description
    assert "1 vectors belong to images no longer in the mirror" in check.description
    assert f"1 vectors have 32 dimensions, but {key} makes 64" in check.description
    assert "1 vectors contain NaN or infinity" in check.description

    # The blocking check stops the index from being synced with bad vectors in the same run.
    result = dg.materialize([*CATALOG_ASSETS, *ALL_CHECKS], resources=with_limit(resources), instance=instance,
                            selection=dg.AssetSelection.assets("image_embeddings", "image_index"), raise_on_error=False)
    assert not result.success
    assert "image_index" not in {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


# The readiness check, through the generate_campaigns job ----------------------------------------------

def run_campaign(resources, instance, key: str) -> dg.ExecuteInProcessResult:
    return campaign_job(resources).execute_in_process(instance=instance, partition_key=key, raise_on_error=False)


def assert_stopped(result: dg.ExecuteInProcessResult, *phrases: str) -> str:
    assert not result.success
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialized == set(), "no campaign step ran"
    check = evaluations(result)["index_ready_for_campaigns"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    for phrase in phrases:
        assert phrase in check.description, check.description
    started = {e.step_key for e in result.all_events if e.is_step_start}
    assert started == {"image_index_index_ready_for_campaigns"}, started
    return check.description


def test_generation_stops_with_what_to_do_when_there_is_no_index(resources, instance, layout):
    [key, _] = sync_segment_partitions(instance, layout.segments_file)
    message = assert_stopped(run_campaign(resources, instance, key), "there is no index for model",
                             "run the refresh_catalog job (`adrag run`, or Materialize in the Dagster UI)")
    assert "adrag-tiny-clip/random-seed0" in message
    assert read_table(layout.candidates_table, CANDIDATES_SCHEMA).num_rows == 0
    assert read_table(layout.campaigns_table, CAMPAIGNS_SCHEMA).num_rows == 0

    refresh(resources, instance)
    ok = run_campaign(resources, instance, key)
    assert ok.success and evaluations(ok)["index_ready_for_campaigns"].passed
    assert {e.asset_key.to_user_string() for e in ok.get_asset_materialization_events()} == {
        "campaign_candidates", "campaign_ad"}


def test_generation_stops_when_the_index_is_empty(resources, instance, layout):
    refresh(resources, instance)
    open_index(layout.lance_dir, resources["clip"].encoder().model_key).delete("true")  # emptied behind our back
    [key, _] = sync_segment_partitions(instance, layout.segments_file)
    assert_stopped(run_campaign(resources, instance, key), "is empty: put photos in the image folder")


def test_generation_stops_when_the_index_is_older_than_the_embeddings(resources, instance, layout):
    refresh(resources, instance)
    [key, _] = sync_segment_partitions(instance, layout.segments_file)
    write_photo(layout.images_dir / "dog" / "new-dog.jpg", seed=501)
    # The catalog ran up to the embeddings and no further (say the index step crashed).
    assert dg.materialize(CATALOG_ASSETS, resources=resources, instance=instance,
                          selection=dg.AssetSelection.assets("image_manifest", "image_mirror", "image_embeddings")).success
    message = assert_stopped(run_campaign(resources, instance, key), "the index is older than the embeddings",
                             "1 embedded images are not in it", "run the refresh_catalog job")
    assert "newest vector" in message

    refresh(resources, instance)
    assert run_campaign(resources, instance, key).success


def test_generation_stops_when_the_configured_model_has_no_index_and_the_old_one_stays(
        resources, instance, layout, tmp_path):
    refresh(resources, instance)
    old_key = "adrag-tiny-clip/random-seed0/64px-bicubic-shortest"
    old_version = open_index(layout.lance_dir, old_key).version
    [key, _] = sync_segment_partitions(instance, layout.segments_file)
    other = {**resources, "clip": ClipModel(model_name=TINY_MODEL, weights=str(other_weights(tmp_path)), device="cpu")}
    message = assert_stopped(run_campaign(other, instance, key), "there is no index for model adrag-tiny-clip/ckpt-",
                             f"The index has tables for other models ({old_key})")
    assert "run the refresh_catalog job" in message
    assert open_index(layout.lance_dir, old_key).version == old_version


def test_require_ready_raises_the_same_message_for_use_inside_an_asset(resources, instance, layout):
    encoder = resources["clip"].encoder()
    args = (layout.lance_dir, layout.embeddings_table, layout.mirror_table, encoder.model_key, encoder.dim)
    with pytest.raises(IndexNotReady, match="there is no index for model adrag-tiny-clip/random-seed0"):
        require_ready(*args)
    refresh(resources, instance)
    assert require_ready(*args).ok
    readiness = index_readiness(layout.lance_dir, layout.embeddings_table, layout.mirror_table, encoder.model_key, 32)
    assert not readiness.ok and "64-dimensional vectors but" in readiness.describe()


def test_an_ad_file_that_is_missing_or_broken_fails_the_campaign_check_naming_its_segment(resources, instance, layout):
    from orchestration.definitions import CAMPAIGN_ASSETS

    refresh(resources, instance)
    key = sync_segment_partitions(instance, layout.segments_file)[0]

    def check_after_generation() -> dg.AssetCheckEvaluation:
        result = dg.materialize([*CAMPAIGN_ASSETS, *CAMPAIGN_CHECKS], resources=resources, instance=instance,
                                partition_key=key, raise_on_error=False)
        return evaluations(result)["ads_exist_and_match_campaigns"]

    made = check_after_generation()
    assert made.passed and made.metadata["ads_checked"].value == 1, made.description
    [row] = read_table(layout.campaigns_table, CAMPAIGNS_SCHEMA).to_pylist()

    def check_alone() -> dg.AssetCheckEvaluation:
        chosen = [c for c in CAMPAIGN_CHECKS if next(iter(c.check_specs)).name == "ads_exist_and_match_campaigns"]
        result = dg.materialize(chosen, resources=resources, instance=instance,
                                selection=dg.AssetSelection.checks(*chosen), raise_on_error=False)
        return evaluations(result)["ads_exist_and_match_campaigns"]

    ad = Path(row["output_path"])
    with ad.open("r+b") as fh:  # a truncated copy, as a crashed sync tool leaves it
        fh.truncate(200)
    broken = check_alone()
    assert not broken.passed and broken.severity == dg.AssetCheckSeverity.ERROR
    assert broken.description.startswith(f"{key}: the ad {row['output_path']} does not decode")
    ad.unlink()
    missing = check_alone()
    assert not missing.passed and missing.description == f"{key}: the ad {row['output_path']} is missing"
