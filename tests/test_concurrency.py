"""Parallel segment runs share the campaigns table and the SQLite MLflow store without failing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
from mlflow import MlflowClient

from assets_pkg.delta_tables import read_table
from assets_pkg.layout import CAMPAIGNS_SCHEMA
from orchestration.definitions import CATALOG_ASSETS

REPO = Path(__file__).resolve().parent.parent

LOG_ONE_RUN = textwrap.dedent("""
    import sys
    from pathlib import Path
    from assets_pkg.tracking import MlflowStore, RunRecord, default_tracking_uri
    root = Path(sys.argv[1])
    store = MlflowStore(default_tracking_uri(root), root / "artifacts", root / ".lock")
    record = RunRecord(experiment="parallel", run_name=sys.argv[2], params={"who": sys.argv[2]})
    with record.step("work", who=sys.argv[2]) as out:
        out["ok"] = True
    print(store.log(record))
""")

MATERIALIZE_PARTITION = textwrap.dedent("""
    import sys
    sys.path.insert(0, "tests")
    import dagster as dg
    from conftest import tiny_resources
    from orchestration.definitions import CAMPAIGN_ASSETS
    data_dir, key = sys.argv[1], sys.argv[2]
    resources = tiny_resources(data_dir)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("segments", [key])
    assert dg.materialize(CAMPAIGN_ASSETS, resources=resources, instance=instance, partition_key=key).success
""")


MATERIALIZE_CATALOG = textwrap.dedent("""
    import sys
    sys.path.insert(0, "tests")
    import dagster as dg
    from conftest import tiny_resources
    from orchestration.definitions import CATALOG_ASSETS
    resources = tiny_resources(sys.argv[1], batch_size=2)
    assert dg.materialize(CATALOG_ASSETS, resources=resources, instance=dg.DagsterInstance.ephemeral()).success
""")


def run_python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_processes_logging_at_once_to_a_fresh_sqlite_store_all_succeed(tmp_path):
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda n: run_python(LOG_ONE_RUN, str(tmp_path), f"run-{n}"), range(4)))
    for result in results:
        assert result.returncode == 0, result.stderr[-2000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("parallel")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.params["who"] for r in runs) == [f"run-{n}" for n in range(4)]


def test_segment_partitions_materialized_in_parallel_processes(resources, instance, data_dir, layout):
    with (data_dir / "segments.yaml").open("a") as fh:
        fh.write("  - {name: Cat people, description: quiet homes, subject: cat}\n")
    assert dg.materialize(CATALOG_ASSETS, resources=resources, instance=instance).success
    keys = ["young-urban-professionals", "outdoor-loving-dog-owners", "cat-people"]
    with ThreadPoolExecutor(len(keys)) as pool:
        results = list(pool.map(lambda k: run_python(MATERIALIZE_PARTITION, str(data_dir), k), keys))
    for result in results:
        assert result.returncode == 0, result.stderr[-3000:]
    rows = read_table(layout.campaigns_table, CAMPAIGNS_SCHEMA).to_pylist()
    assert sorted(r["segment_key"] for r in rows) == sorted(keys)
    assert all(Path(r["output_path"]).is_file() and r["mlflow_run_id"] for r in rows)
    client = MlflowClient(tracking_uri=f"sqlite:///{layout.mlflow_dir / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("ad-campaigns").experiment_id])
    assert len(runs) == 2 * len(keys)  # candidates + ad per segment


def test_two_catalog_runs_at_once_write_each_image_once(resources, instance, data_dir, layout):
    from test_pipeline import assert_tables_match_disk

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: run_python(MATERIALIZE_CATALOG, str(data_dir)), range(2)))
    for result in results:
        assert result.returncode == 0, result.stderr[-3000:]
    assert_tables_match_disk(layout, "adrag-tiny-clip/random-seed0/64px-bicubic-shortest")


def test_logging_a_trace_leaves_the_users_tracking_uri_setting_alone(tmp_path, monkeypatch):
    """MLflow's set_tracking_uri writes MLFLOW_TRACKING_URI into os.environ; our settings read that variable,
    so a leak made later stores (and subprocesses such as a studio) log into whichever store wrote last."""
    from assets_pkg.tracking import MlflowStore, RunRecord, default_tracking_uri

    def log_one(root: Path) -> None:
        store = MlflowStore(default_tracking_uri(root), root / "artifacts", root / ".lock")
        record = RunRecord(experiment="env", run_name="one")
        with record.step("work") as out:
            out["ok"] = True
        store.log(record)

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    log_one(tmp_path / "a")
    assert "MLFLOW_TRACKING_URI" not in os.environ
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///users-own.db")
    log_one(tmp_path / "b")
    assert os.environ["MLFLOW_TRACKING_URI"] == "sqlite:///users-own.db"
    client = MlflowClient(default_tracking_uri(tmp_path / "b"))  # the trace still went to the store that logged it
    [run] = client.search_runs([client.get_experiment_by_name("env").experiment_id])
    assert len(client.search_traces(locations=[run.info.experiment_id], run_id=run.info.run_id)) == 1
