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
