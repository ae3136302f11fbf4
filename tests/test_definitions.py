"""The code location loads as `dagster dev` loads it, and says what each asset is."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from orchestration.definitions import defs

REPO = Path(__file__).resolve().parent.parent


def test_definitions_hold_assets_jobs_schedule_and_sensor():
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == {
        "image_manifest", "image_mirror", "image_embeddings", "image_index", "campaign_candidates", "campaign_ad"}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description, key
        assert node.kinds, key
        assert node.group_name in {"catalog", "embeddings", "index", "campaigns"}
    assert defs.resolve_job_def("refresh_catalog") and defs.resolve_job_def("generate_campaigns")
    assert defs.resolve_schedule_def("nightly_refresh_catalog").cron_schedule == "0 2 * * *"
    assert defs.resolve_sensor_def("segments_sensor").job_name == "generate_campaigns"
    assert defs.resolve_sensor_def("image_folder_sensor").job_name == "refresh_catalog"
    assert defs.resolve_sensor_def("record_run_failures").default_status == dg.DefaultSensorStatus.RUNNING
    partitions = graph.get(dg.AssetKey("campaign_ad")).partitions_def
    assert isinstance(partitions, dg.DynamicPartitionsDefinition) and partitions.name == "segments"


def test_workspace_loads_with_the_dagster_cli_and_no_env_read_at_import(tmp_path):
    """`dagster definitions validate` loads workspace.yaml the way `dagster dev` does."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ADRAG_", "REPLICATE_", "MLFLOW_"))}
    env["DAGSTER_HOME"] = str(tmp_path)
    result = subprocess.run([sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful" in result.stdout + result.stderr


def test_gpu_and_image_api_steps_carry_pools():
    graph = defs.resolve_asset_graph()
    assert graph.get(dg.AssetKey("image_embeddings")).pools == {"gpu"}
    assert graph.get(dg.AssetKey("campaign_ad")).pools == {"image_api"}


def test_settings_leave_unset_fields_at_their_one_default_and_read_set_ones_at_run_time():
    from assets_pkg.catalog.consistency import DEFAULT_MAX_QUARANTINE_RATE
    from assets_pkg.embeddings.model import DEFAULT_MODEL, DEFAULT_PRETRAINED
    from orchestration.resources import build_resources

    defaults = build_resources(environ={}, read_now=True)
    assert (defaults["clip"].model_name, defaults["clip"].weights) == (DEFAULT_MODEL, DEFAULT_PRETRAINED)
    assert defaults["quarantine_limit"].rate == DEFAULT_MAX_QUARANTINE_RATE
    assert defaults["image_generator"].replicate_api_token == ""  # the local compositor

    environ = {"ADRAG_CLIP_MODEL": "ViT-L-14", "ADRAG_IMAGE_API_CONCURRENCY": "7", "REPLICATE_API_TOKEN": "  "}
    now = build_resources(environ=environ, read_now=True)
    assert now["clip"].model_name == "ViT-L-14" and now["image_generator"].max_concurrent == 7
    assert now["image_generator"].replicate_api_token == ""  # blank is unset
    at_run_time = build_resources(environ=environ)
    assert isinstance(at_run_time["clip"].model_name, dg.EnvVar)  # the secret-safe path: no literal values
    overridden = build_resources({"ADRAG_CLIP_MODEL": "adrag-tiny-clip"}, environ=environ)
    assert overridden["clip"].model_name == "adrag-tiny-clip"


def asset_nodes(environ: dict) -> dict:
    from orchestration.definitions import build_definitions

    graph = build_definitions(environ=environ).resolve_asset_graph()
    return {key.to_user_string(): graph.get(key) for key in graph.get_all_asset_keys()}


def test_assets_have_owners_a_stage_tag_and_the_code_version_of_their_model_and_generator():
    nodes = asset_nodes({})
    for name, node in nodes.items():
        assert node.owners and all(o.startswith("team:") for o in node.owners), name
        assert node.tags["stage"] == node.group_name, name
    assert nodes["campaign_ad"].owners == ["team:marketing", "team:data"]
    assert nodes["image_embeddings"].code_version == nodes["image_index"].code_version == "ViT-B-32:laion2b_s34b_b79k"
    assert nodes["campaign_ad"].code_version == "local-compositor/v2"

    # Another model: the embeddings and the index get a new code version (the UI then marks them changed).
    other = asset_nodes({"ADRAG_CLIP_MODEL": "ViT-L-14", "ADRAG_CLIP_WEIGHTS": "openai"})
    assert other["image_embeddings"].code_version == other["image_index"].code_version == "ViT-L-14:openai"
    assert other["image_manifest"].code_version == nodes["image_manifest"].code_version


def test_the_ad_is_of_kind_replicate_only_when_a_replicate_token_is_set():
    local = asset_nodes({})["campaign_ad"]
    assert local.kinds == {"pillow", "mlflow"} and not any("replicate" in tag for tag in local.tags)
    replicate = asset_nodes({"REPLICATE_API_TOKEN": "r8_secret", "ADRAG_REPLICATE_MODEL": "acme/kontext"})["campaign_ad"]
    assert replicate.kinds == {"replicate", "mlflow"} and "dagster/kind/pillow" not in replicate.tags
    assert replicate.code_version == "replicate/acme/kontext"
    assert "r8_secret" not in repr(replicate.tags) + str(replicate.code_version)


def test_the_index_must_be_no_older_than_the_refresh_schedule_allows():
    from datetime import timedelta

    def fail_window(environ: dict) -> timedelta:
        return asset_nodes(environ)["image_index"].freshness_policy.fail_window.to_timedelta()

    assert fail_window({}) == timedelta(hours=25)  # nightly at 02:00 UTC, plus an hour to run
    assert fail_window({"ADRAG_REFRESH_CRON": "0 3 * * 1"}) == timedelta(days=7, hours=1)  # weekly
    # Daylight saving makes one night 25 hours long in Berlin.
    assert fail_window({"ADRAG_REFRESH_TIMEZONE": "Europe/Berlin"}) == timedelta(hours=26)
    assert all(node.freshness_policy is None for name, node in asset_nodes({}).items() if name != "image_index")


def test_campaign_descriptions_name_each_segment_next_to_its_partition_key(tmp_path):
    (tmp_path / "segments.yaml").write_text("segments:\n  - {name: Outdoor-loving dog owners, description: d}\n"
                                            "  - {name: Cat people, description: c, key: cats}\n")
    nodes = asset_nodes({"ADRAG_DATA_DIR": str(tmp_path)})
    for name in ("campaign_candidates", "campaign_ad"):
        assert "- `outdoor-loving-dog-owners`: Outdoor-loving dog owners\n- `cats`: Cat people" in nodes[name].description
    assert "Segments" not in nodes["image_index"].description
    # No file, or a broken one: the descriptions as written, and the location still loads.
    (tmp_path / "segments.yaml").write_text("segments: [\n")
    assert "Segments (partition key" not in asset_nodes({"ADRAG_DATA_DIR": str(tmp_path)})["campaign_ad"].description
