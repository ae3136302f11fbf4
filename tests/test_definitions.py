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
