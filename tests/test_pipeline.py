"""The whole graph through the real Dagster machinery: catalog, incremental runs, campaigns."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pyarrow.compute as pc
import pytest
from conftest import NO_QUALITY_BAR, write_photo
from mlflow import MlflowClient

from assets_pkg.catalog.probe import content_hash
from assets_pkg.delta_tables import read_table, table_version
from assets_pkg.index.lance_index import open_index
from assets_pkg.layout import CAMPAIGNS_SCHEMA, CANDIDATES_SCHEMA, EMBEDDINGS_SCHEMA, MIRROR_SCHEMA, QUARANTINE_SCHEMA
from orchestration.definitions import CAMPAIGN_ASSETS, CATALOG_ASSETS, CATALOG_CHECKS
from orchestration.runner import sync_segment_partitions


def refresh(resources, instance) -> dg.ExecuteInProcessResult:
    """The catalog graph with its asset checks; every check must pass."""
    result = dg.materialize([*CATALOG_ASSETS, *CATALOG_CHECKS], resources=resources, instance=instance)
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == len(CATALOG_CHECKS)
    assert all(e.passed for e in evaluations), [e.description for e in evaluations]
    return result


def meta(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def disk_state(images_dir: Path) -> dict[str, list[str]]:
    """What is on disk: content hash -> sorted relative paths."""
    state: dict[str, list[str]] = {}
    for path in sorted(p for p in images_dir.rglob("*") if p.is_file()):
        state.setdefault(content_hash(path.read_bytes()), []).append(path.relative_to(images_dir).as_posix())
    return state


def assert_tables_match_disk(layout, model_key: str) -> None:
    want = disk_state(layout.images_dir)
    mirror_rows = read_table(layout.mirror_table, MIRROR_SCHEMA, ["image_id", "paths"]).to_pylist()
    assert len(mirror_rows) == len(want), "one mirror row per distinct image, no duplicates"
    assert {r["image_id"]: list(r["paths"]) for r in mirror_rows} == want
    embeddings = read_table(layout.embeddings_table, schema=EMBEDDINGS_SCHEMA)
    ids = embeddings.filter(pc.equal(embeddings["model_key"], model_key))["image_id"].to_pylist()
    assert sorted(ids) == sorted(want), "one vector per image on disk, no more"
    table = open_index(layout.lance_dir, model_key)
    rows = table.search().select(["image_id", "paths"]).limit(None).to_arrow().to_pylist()
    assert len(rows) == len(want), "one index row per distinct image, no duplicates"
    assert {r["image_id"]: list(r["paths"]) for r in rows} == want


def model_key_of(result) -> str:
    return meta(result, "image_embeddings")["model_key"]


def test_catalog_graph_materializes_and_second_run_writes_nothing(resources, instance, layout):
    first = refresh(resources, instance)
    assert meta(first, "image_manifest")["files"] == 12
    assert meta(first, "image_mirror")["added"] == 12
    assert meta(first, "image_embeddings")["embedded"] == 12
    assert meta(first, "image_index")["rows"] == 12
    key = model_key_of(first)
    assert key == "adrag-tiny-clip/random-seed0/64px-bicubic-shortest"
    assert_tables_match_disk(layout, key)

    versions = {t: table_version(t) for t in (layout.manifest_table, layout.mirror_table, layout.embeddings_table)}
    lance_version = open_index(layout.lance_dir, key).version
    second = refresh(resources, instance)
    assert meta(second, "image_manifest")["probed"] == 0
    assert meta(second, "image_mirror")["table_written"] is False
    assert meta(second, "image_embeddings")["embedded"] == 0
    assert {t: table_version(t) for t in versions} == versions
    assert open_index(layout.lance_dir, key).version == lance_version


def test_add_modify_delete_rename_propagate_exactly(resources, instance, layout):
    key = model_key_of(refresh(resources, instance))
    images = layout.images_dir
    old_cat = (images / "cat" / "cat-0.jpg").read_bytes()

    write_photo(images / "rabbit" / "rabbit-0.jpg", seed=99)                          # add (new label)
    write_photo(images / "cat" / "cat-0.jpg", seed=98)                                # modify: new bytes
    (images / "parrot" / "parrot-1.png").unlink()                                     # delete
    (images / "dog" / "dog-0.jpg").rename(images / "dog" / "renamed dog.jpg")         # rename
    shutil.copy(images / "dog" / "dog-2.jpg", images / "dog" / "dog-2-copy.jpg")      # duplicate bytes
    result = refresh(resources, instance)

    mirror_meta = meta(result, "image_mirror")
    assert (mirror_meta["added"], mirror_meta["removed"], mirror_meta["paths_updated"]) == (2, 2, 2)
    assert meta(result, "image_embeddings")["embedded"] == 2, "a rename or a copy re-uses the embedding"
    assert meta(result, "image_embeddings")["removed"] == 2
    assert_tables_match_disk(layout, key)
    ids = set(disk_state(images))
    assert content_hash(old_cat) not in ids
    labels = {r["image_id"]: r["labels"] for r in read_table(layout.mirror_table, MIRROR_SCHEMA, ["image_id", "labels"]).to_pylist()}
    assert labels[content_hash((images / "rabbit" / "rabbit-0.jpg").read_bytes())] == ["rabbit"]


def test_bad_files_go_to_quarantine_and_leave_when_fixed(resources, instance, layout):
    (layout.images_dir / "dog" / "truncated.jpg").write_bytes((layout.images_dir / "dog" / "dog-0.jpg").read_bytes()[:200])
    (layout.images_dir / "notes.png").write_text("<html>not an image</html>")
    result = refresh(resources, instance)
    assert meta(result, "image_manifest")["quarantined"] == 2
    rows = read_table(layout.quarantine_table, schema=QUARANTINE_SCHEMA).to_pylist()
    reasons = {r["path"]: r["reason"] for r in rows}
    assert set(reasons) == {"dog/truncated.jpg", "notes.png"}
    assert "not a recognised image" in reasons["notes.png"]
    assert all(r["stage"] == "catalog" and r["attempts"] == 1 for r in rows)
    assert meta(result, "image_mirror")["added"] == 12, "the run goes on with the good files"

    (layout.images_dir / "notes.png").unlink()
    write_photo(layout.images_dir / "dog" / "truncated.jpg", seed=77)
    result = refresh(resources, instance)
    assert read_table(layout.quarantine_table, schema=QUARANTINE_SCHEMA).num_rows == 0
    assert meta(result, "image_mirror")["added"] == 1


def test_two_segments_generate_ads_with_the_local_compositor(resources, instance, layout):
    refresh(resources, instance)
    keys = sync_segment_partitions(instance, layout.segments_file)
    assert keys == ["young-urban-professionals", "outdoor-loving-dog-owners"]
    for key in keys:
        result = dg.materialize(CAMPAIGN_ASSETS, resources=resources, instance=instance, partition_key=key)
        assert result.success
        ad = meta(result, "campaign_ad")
        assert Path(ad["ad_file"]).is_file() and Path(ad["ad_file"]).parent == layout.campaigns_dir / key
        assert ad["reused"] is False and ad["generator"] == "local-compositor/v2"

    candidates = read_table(layout.candidates_table, CANDIDATES_SCHEMA).to_pylist()
    by_key = {r["segment_key"]: r for r in candidates}
    assert set(by_key) == set(keys)
    assert by_key["outdoor-loving-dog-owners"]["subject"] == "dog"
    assert by_key["outdoor-loving-dog-owners"]["subject_method"] == "segments-file"
    assert by_key["young-urban-professionals"]["subject"] in {"cat", "dog"}
    assert by_key["young-urban-professionals"]["subject_method"] == "clip-zero-shot"
    for row in candidates:
        assert len(row["candidates"]) == 3
        scores = [c["score"] for c in row["candidates"]]
        assert scores == sorted(scores, reverse=True)
        assert Path(row["contact_sheet"]).is_file()
    dog_paths = [c["path"] for c in by_key["outdoor-loving-dog-owners"]["candidates"]]
    assert all(p.startswith("dog/") or p.startswith("cat/") for p in
               [c["path"] for c in by_key["young-urban-professionals"]["candidates"]]), "label filter applies"
    assert dog_paths

    campaigns = read_table(layout.campaigns_table, CAMPAIGNS_SCHEMA).to_pylist()
    assert len(campaigns) == 2

    # Same inputs again: the stored ad is reused and nothing new is written.
    files_before = sorted(layout.campaigns_dir.rglob("ad-*.png"))
    again = dg.materialize(CAMPAIGN_ASSETS, resources=resources, instance=instance, partition_key=keys[1])
    assert meta(again, "campaign_ad")["reused"] is True
    assert sorted(layout.campaigns_dir.rglob("ad-*.png")) == files_before

    # Another seed makes another ad.
    other = dg.materialize(CAMPAIGN_ASSETS, resources=resources, instance=instance, partition_key=keys[1],
                           run_config={"ops": {"segment_campaign": {"config": {"rank": 3}}}})
    assert meta(other, "campaign_ad")["reused"] is False and meta(other, "campaign_ad")["seed_rank"] == 3
    assert meta(other, "campaign_ad")["review"] == "none" and meta(other, "campaign_candidates")["review"] == "none"
    assert len(sorted(layout.campaigns_dir.rglob("ad-*.png"))) == 3

    # MLflow: one run per generation, with what the issue asks for, read back with MlflowClient.
    client = MlflowClient(tracking_uri=f"sqlite:///{layout.mlflow_dir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ad-campaigns")
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.stage = 'ad'")
    assert len(runs) == 4
    run = next(r for r in runs if r.data.params["segment"] == keys[0])
    params = run.data.params
    for name in ("segment", "segment_name", "subject", "query", "seed_index", "seed_path", "prompt",
                 "generator", "generator_parameters", "output_key"):
        assert params[name], name
    assert set(run.data.metrics) >= {"latency_s", "cost_usd"} and "reused" not in run.data.metrics
    assert params["reused"] in {"true", "false"}
    assert run.data.metrics["latency_s"] == round(run.data.metrics["latency_s"], 3)
    # The run says which Dagster run made it, with a link the MLflow UI renders; the experiment says what it holds
    # and opens on its runs.
    dagster_run = run.data.tags["dagster_run_id"]
    assert run.data.tags["mlflow.note.content"] == (
        f"Made by Dagster run [{dagster_run[:8]}](http://127.0.0.1:3000/runs/{dagster_run})")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert experiment.tags["mlflow.note.content"].startswith("One run per campaign step and segment")
    # The source MLflow shows is the pipeline's, not this process's script (test_ui checks a run from the UI).
    assert run.data.tags["mlflow.source.name"] == "adrag/ad-campaigns" and run.data.tags["mlflow.source.type"] == "JOB"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"candidates.png", "prompt.txt", "candidates.json"} <= artifacts
    assert any(a.startswith("ad-") and a.endswith(".png") for a in artifacts)
    traces = client.search_traces(locations=[experiment.experiment_id],
                                  filter_string=f"metadata.`mlflow.sourceRun` = '{run.info.run_id}'")
    assert [s.name for s in traces[0].data.spans][1:] == ["load_seed", "build_prompt", "generate"]
    root = traces[0].data.spans[0]
    assert Path(root.outputs["ad"]).parent == layout.campaigns_dir / keys[0] and root.outputs["ad"].endswith(".png")
    assert traces[0].info.tags["segment"] == keys[0] and root.inputs["segment"] == keys[0]
    embed_runs = client.search_runs([client.get_experiment_by_name("image-embeddings").experiment_id])
    assert embed_runs[0].data.metrics["embedded"] == 12


SENTINEL_TOKEN = "r8_SENTINEL_token_do_not_leak_0123456789"


def test_replicate_generator_in_the_pipeline_pays_once_and_leaks_no_token(resources, instance, layout):
    from replicate_standin import ReplicateStandIn

    from assets_pkg.campaigns.resources import ImageGeneratorResource

    refresh(resources, instance)
    keys = sync_segment_partitions(instance, layout.segments_file)
    with ReplicateStandIn() as api:
        resources = {**resources, "image_generator": ImageGeneratorResource(**NO_QUALITY_BAR,
            replicate_api_token=SENTINEL_TOKEN, replicate_base_url=api.base_url)}
        first = dg.materialize(CAMPAIGN_ASSETS, resources=resources, instance=instance, partition_key=keys[1])
        assert first.success
        ad = meta(first, "campaign_ad")
        assert ad["generator"] == "replicate/flux-kontext-apps/multi-image-kontext-max"
        assert ad["cost_usd"] == pytest.approx(0.08)
        [created] = api.created
        assert created["model"] == "flux-kontext-apps/multi-image-kontext-max"
        assert "Outdoor-loving dog owners" in created["input"]["prompt"]
        assert Path(ad["ad_file"]).read_bytes() == next(iter(api.served.values()))
        assert api.auth_headers[0] == f"Bearer {SENTINEL_TOKEN}"

        again = dg.materialize(CAMPAIGN_ASSETS, resources=resources, instance=instance, partition_key=keys[1])
        assert meta(again, "campaign_ad")["reused"] is True and meta(again, "campaign_ad")["cost_usd"] == 0
        assert len(api.created) == 1, "a re-run with the same inputs pays nothing"

    assert_token_written_nowhere(layout, instance, first.run_id)


def assert_token_written_nowhere(layout, instance, run_id: str) -> None:
    """Grep everything the run wrote: tables, ads, MLflow store and artifacts, Dagster's event log
    and captured compute logs."""
    leaks = [p for root in (layout.data_dir, Path(instance.root_directory))
             for p in root.rglob("*") if p.is_file() and SENTINEL_TOKEN.encode() in p.read_bytes()]
    assert leaks == []
    for event in instance.all_logs(run_id):
        assert SENTINEL_TOKEN not in str(event)


def test_checks_fail_visibly_when_the_index_drifts_from_the_mirror(resources, instance, layout):
    key = model_key_of(refresh(resources, instance))
    table = open_index(layout.lance_dir, key)
    victim = table.search().select(["image_id"]).limit(1).to_list()[0]["image_id"]
    table.delete(f"image_id = '{victim}'")  # someone edits the index behind the pipeline's back

    result = dg.materialize([*CATALOG_CHECKS], resources=resources, instance=instance,
                            selection=dg.AssetSelection.checks(*CATALOG_CHECKS), raise_on_error=False)
    by_name = {e.check_name: e for e in result.get_asset_check_evaluations()}
    check = by_name["index_matches_mirror_and_embeddings"]
    assert not check.passed
    assert "index lacks 1 mirror images" in check.description
    assert by_name["embeddings_match_mirror_and_model"].passed

    refresh(resources, instance)  # the next run repairs the index, and the checks pass again


def test_a_failed_generation_marks_its_segment_failed_and_the_others_complete(resources, instance, layout):
    from replicate_standin import ReplicateStandIn

    from assets_pkg.campaigns.resources import ImageGeneratorResource

    refresh(resources, instance)
    failing, fine = sync_segment_partitions(instance, layout.segments_file)
    with ReplicateStandIn(outcome="failed", error_message="NSFW content detected") as api:
        broken = {**resources, "image_generator": ImageGeneratorResource(**NO_QUALITY_BAR,
            replicate_api_token=SENTINEL_TOKEN, replicate_base_url=api.base_url)}
        result = dg.materialize(CAMPAIGN_ASSETS, resources=broken, instance=instance, partition_key=failing,
                                raise_on_error=False)
    assert not result.success
    ok = dg.materialize(CAMPAIGN_ASSETS, resources=resources, instance=instance, partition_key=fine)
    assert ok.success

    rows = {r["segment_key"]: r for r in read_table(layout.campaigns_table, CAMPAIGNS_SCHEMA).to_pylist()}
    assert rows[failing]["status"] == "failed" and "NSFW content detected" in rows[failing]["error"]
    assert rows[failing]["output_path"] is None and not list((layout.campaigns_dir / failing).glob("ad-*"))
    assert rows[fine]["status"] == "succeeded" and rows[fine]["error"] is None
    client = MlflowClient(tracking_uri=f"sqlite:///{layout.mlflow_dir / 'mlflow.db'}")
    assert client.get_run(rows[failing]["mlflow_run_id"]).info.status == "FAILED"

    assert_token_written_nowhere(layout, instance, result.run_id)
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "NSFW content detected" in str(failure.event_specific_data.error)

    # The failed segment re-runs alone (here with the local compositor) and succeeds.
    again = dg.materialize(CAMPAIGN_ASSETS, resources=resources, instance=instance, partition_key=failing,
                           selection=dg.AssetSelection.assets("campaign_ad"))
    assert again.success and meta(again, "campaign_ad")["reused"] is False
