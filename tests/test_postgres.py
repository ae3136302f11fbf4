"""Dagster's instance and MLflow's tracking store on a real PostgreSQL server (tests/postgres_server.py).

The generated dagster.yaml (orchestration/instance_config.py) is what every Dagster instance here is
opened from; MLflow logs through `MlflowStore` to its SQLAlchemy store on the same server. Each test
has its own databases.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
import pytest
from conftest import tiny_resources
from mlflow import MlflowClient
from postgres_server import free_port, postgres_server  # noqa: F401 -- the session fixture
from s3_server import s3_server  # noqa: F401 -- the session's S3 server
from test_pipeline import assert_tables_match_disk

from assets_pkg.database_urls import masked
from assets_pkg.resources import MlflowTracking
from orchestration import cli
from orchestration.definitions import CAMPAIGN_ASSETS, CATALOG_ASSETS
from orchestration.instance_config import MARKER, instance_yaml, write_instance_yaml
from orchestration.resources import build_resources
from orchestration.runner import Project, sync_segment_partitions

REPO = Path(__file__).resolve().parent.parent
TINY_MODEL_KEY = "adrag-tiny-clip/random-seed0/64px-bicubic-shortest"
CATALOG = {"image_manifest", "image_mirror", "image_embeddings", "image_index"}

MATERIALIZE_CATALOG = textwrap.dedent("""
    import os
    import sys
    from pathlib import Path
    sys.path.insert(0, "tests")
    import dagster as dg
    from conftest import tiny_resources
    from assets_pkg.resources import MlflowTracking
    from orchestration.definitions import CATALOG_ASSETS
    from orchestration.instance_config import write_instance_yaml
    from orchestration.runner import Project
    from assets_pkg.layout import DataLayout
    from assets_pkg.tracking import RunRecord
    data_dir, home = sys.argv[1], Path(sys.argv[2])
    from orchestration.resources import build_resources
    resources = {**tiny_resources(data_dir, batch_size=2),
                 # the lake, the index and the photos where the environment says (an S3 server's bucket)
                 "data_store": build_resources({"ADRAG_DATA_DIR": data_dir})["data_store"],
                 "mlflow_tracking": MlflowTracking(tracking_uri=dg.EnvVar("MLFLOW_TRACKING_URI"))}
    # Both processes log to the fresh MLflow database at once (only one will have images to embed).
    who = home.parent.name  # the "machine"
    record = RunRecord(experiment="parallel", run_name=who, params={"who": who})
    with record.step("work", who=who) as out:
        out["ok"] = True
    MlflowTracking(tracking_uri=os.environ["MLFLOW_TRACKING_URI"]).store(DataLayout.under(data_dir)).log(record)
    home.mkdir(parents=True)
    write_instance_yaml(home)  # its own DAGSTER_HOME: what the two processes share is the database
    with Project({}, home).instance() as instance:  # as `adrag run` opens it: pool limits set if missing
        result = dg.materialize(CATALOG_ASSETS, resources=resources, instance=instance)
        assert result.success
""")


def clean_environ(**settings: str) -> dict[str, str]:
    """This process's environment without adrag's, Dagster's and MLflow's settings, plus `settings`."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("ADRAG_", "DAGSTER_", "MLFLOW_"))}
    return {**keep, **settings}


def runs_in(server, database: str) -> dict[str, str]:
    """run id -> status, straight from Dagster's `runs` table."""
    return dict(server.execute(database, "SELECT run_id, status FROM runs"))


def materialized(server, database: str) -> list[tuple[str, str]]:
    """(run id, asset key) of every materialization in Dagster's event log table."""
    rows = server.execute(database, "SELECT run_id, asset_key FROM event_logs "
                                    "WHERE dagster_event_type = 'ASSET_MATERIALIZATION'")
    return [(run_id, dg.AssetKey.from_db_string(key).to_user_string()) for run_id, key in rows]


def test_generated_dagster_yaml_names_the_variable_never_the_url(tmp_path):
    url = "postgresql://adrag:s3cret-pw@db.internal:5432/dagster"
    text = instance_yaml({"ADRAG_DAGSTER_PG_URL": url})
    assert "env: ADRAG_DAGSTER_PG_URL" in text and "s3cret-pw" not in text and "db.internal" not in text
    assert "QueuedRunCoordinator" in text and "granularity: op" in text and "key: adrag/job" in text
    assert "storage:" not in instance_yaml({})  # unset: Dagster's SQLite default

    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")  # what adrag wrote before: its own
    assert write_instance_yaml(home, {"ADRAG_DAGSTER_PG_URL": url}) is None
    assert (home / "dagster.yaml").read_text() == text
    write_instance_yaml(home, {})  # the setting removed: back to SQLite
    assert (home / "dagster.yaml").read_text() == instance_yaml({}) and "storage:" not in instance_yaml({})
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: true\n")  # the user's own file
    warning = write_instance_yaml(home, {"ADRAG_DAGSTER_PG_URL": url})
    assert "ADRAG_DAGSTER_PG_URL" in warning and "s3cret-pw" not in warning
    assert (home / "dagster.yaml").read_text() == "telemetry:\n  enabled: true\n"

    assert masked(url) == "postgresql://adrag:***@db.internal:5432/dagster"
    with_driver = "postgresql+psycopg2://u:p%40ss@h/db?sslmode=require"
    assert masked(with_driver) == "postgresql+psycopg2://u:***@h/db?sslmode=require"
    assert masked("postgresql://h/db?user=u&password=pw1") == "postgresql://h/db?user=u&password=***"
    assert masked("sqlite:////data/mlflow/mlflow.db") == "sqlite:////data/mlflow/mlflow.db"

    from filelock import BaseFileLock

    from assets_pkg.tracking import MlflowStore

    def lock(uri: str):
        return MlflowStore(uri, tmp_path, tmp_path / ".lock").lock

    assert not isinstance(lock(url), BaseFileLock) and not isinstance(lock("http://mlflow:5000"), BaseFileLock)
    assert isinstance(lock(f"sqlite:///{tmp_path}/m.db"), BaseFileLock)
    assert isinstance(lock(str(tmp_path / "mlruns")), BaseFileLock)  # MLflow's local file store


def test_catalog_and_a_campaign_on_postgres_dagster_and_mlflow(postgres_server, data_dir, layout, tmp_path,
                                                               monkeypatch):
    dagster_url = postgres_server.create_database("dagster_graph")
    mlflow_url = postgres_server.create_database("mlflow_graph")
    monkeypatch.setenv("ADRAG_DAGSTER_PG_URL", dagster_url)
    home = tmp_path / "dagster_home"
    home.mkdir()
    write_instance_yaml(home)
    assert (home / "dagster.yaml").read_text().startswith(MARKER)
    resources = {**tiny_resources(data_dir), "mlflow_tracking": MlflowTracking(tracking_uri=mlflow_url)}

    project = Project({"ADRAG_GPU_CONCURRENCY": "2"}, home)
    with project.instance() as instance:
        assert type(instance.run_storage).__module__.startswith("dagster_postgres")
        assert type(instance.event_log_storage).__module__.startswith("dagster_postgres")
        assert type(instance.schedule_storage).__module__.startswith("dagster_postgres")
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        limits = {p.name: p.limit for p in instance.event_log_storage.get_pool_limits()}
        assert limits == {"gpu": 2, "image_api": 1}  # from the settings: the pools had no limit yet
        instance.event_log_storage.set_concurrency_slots("gpu", 3)  # an operator's limit for all machines

        catalog = dg.materialize(CATALOG_ASSETS, resources=resources, instance=instance)
        assert catalog.success
        keys = sync_segment_partitions(instance, layout.segments_file)
        campaign = dg.materialize(CAMPAIGN_ASSETS, resources=resources, instance=instance, partition_key=keys[0])
        assert campaign.success
    assert_tables_match_disk(layout, TINY_MODEL_KEY)

    # In the database, and seen by a new instance opened from the same dagster.yaml.
    assert runs_in(postgres_server, "dagster_graph") == {catalog.run_id: "SUCCESS", campaign.run_id: "SUCCESS"}
    made = materialized(postgres_server, "dagster_graph")
    assert {key for run, key in made if run == catalog.run_id} == CATALOG
    assert {key for run, key in made if run == campaign.run_id} == {"campaign_candidates", "campaign_ad"}
    with Project({"ADRAG_GPU_CONCURRENCY": "2"}, home).instance() as again:
        assert again.get_latest_materialization_event(dg.AssetKey("image_index")).run_id == catalog.run_id
        assert again.get_dynamic_partitions("segments") == keys
        assert {p.name: p.limit for p in again.event_log_storage.get_pool_limits()}["gpu"] == 3  # kept

    # MLflow: the campaign's runs and trace, and the embedding run, read back from the PostgreSQL store.
    client = MlflowClient(mlflow_url)
    ads = client.get_experiment_by_name("ad-campaigns")
    [ad] = client.search_runs([ads.experiment_id], filter_string="tags.stage = 'ad'")
    assert ad.data.params["segment"] == keys[0] and ad.data.params["prompt"]
    assert {"latency_s", "cost_usd"} <= set(ad.data.metrics)
    assert any(a.path.startswith("ad-") for a in client.list_artifacts(ad.info.run_id))
    [trace] = client.search_traces(locations=[ads.experiment_id], run_id=ad.info.run_id)
    assert [s.name for s in trace.data.spans][1:] == ["load_seed", "build_prompt", "generate"]
    [embedded] = client.search_runs([client.get_experiment_by_name("image-embeddings").experiment_id])
    assert embedded.data.metrics["embedded"] == 12
    assert postgres_server.execute("mlflow_graph", "SELECT count(*) FROM runs")[0][0] == 3  # candidates, ad, embed


def test_two_catalog_runs_in_two_processes_sharing_no_local_file_write_each_image_once(
        postgres_server, s3_server, data_dir, tmp_path, monkeypatch):  # noqa: F811
    """Two "machines": each process has its own data dir and DAGSTER_HOME; what they share is the instance on
    PostgreSQL and the lake, the index and the photos on an S3 server. Each image is written once."""
    bucket = s3_server.create_bucket("two-machines")
    client = s3_server.client()
    for path in sorted(p for p in (data_dir / "images").rglob("*") if p.is_file()):
        client.upload_file(str(path), bucket, f"images/{path.relative_to(data_dir / 'images').as_posix()}")
    shared = {"ADRAG_LAKE_URI": f"s3://{bucket}/lake", "ADRAG_INDEX_URI": f"s3://{bucket}/lance",
              "ADRAG_IMAGES_DIR": f"s3://{bucket}/images", **s3_server.environment()}
    environ = clean_environ(ADRAG_DAGSTER_PG_URL=postgres_server.create_database("dagster_two"),
                            MLFLOW_TRACKING_URI=postgres_server.create_database("mlflow_two"), **shared)
    monkeypatch.setenv("ADRAG_DAGSTER_PG_URL", environ["ADRAG_DAGSTER_PG_URL"])  # to open the instance here too

    def catalog_run(n: int) -> subprocess.CompletedProcess:
        machine = tmp_path / f"machine-{n}"
        return subprocess.run([sys.executable, "-c", MATERIALIZE_CATALOG, str(machine / "data"), str(machine / "home")],
                              cwd=REPO, env=environ, capture_output=True, text=True, timeout=300)

    # Fresh databases: both processes create Dagster's and MLflow's schemas and the pool limits at once (no
    # file lock for MLflow on PostgreSQL: an advisory lock for its schema; the experiment's loser reads the
    # winner's), then race on every table (Delta's conditional put and the leases on S3).
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(catalog_run, range(2)))
    for result in results:
        assert result.returncode == 0, result.stderr[-3000:]
    on_s3 = build_resources(shared, read_now=True)["data_store"].layout
    assert str(on_s3.mirror_table).startswith(f"s3://{bucket}/lake")
    assert_tables_match_disk(dataclasses.replace(on_s3, images_dir=data_dir / "images"), TINY_MODEL_KEY)

    runs = runs_in(postgres_server, "dagster_two")
    assert sorted(runs.values()) == ["SUCCESS", "SUCCESS"]  # both runs, from two homes, in one instance
    made = materialized(postgres_server, "dagster_two")
    assert sorted(key for _, key in made) == sorted([*CATALOG, *CATALOG])
    with dg.DagsterInstance.from_config(str(tmp_path / "machine-0" / "home")) as instance:  # either: one instance
        records = instance.fetch_materializations(dg.AssetKey("image_embeddings"), limit=10).records
        assert {r.run_id for r in records} == set(runs)
        counts = [r.asset_materialization.metadata["embedded"].value for r in records]
    assert sorted(counts) == [0, 12]  # each image embedded once, by one of the two runs
    client = MlflowClient(environ["MLFLOW_TRACKING_URI"])
    [embed_run] = client.search_runs([client.get_experiment_by_name("image-embeddings").experiment_id])
    assert embed_run.data.metrics["embedded"] == 12  # the run that found nothing to embed logged nothing
    both = client.search_runs([client.get_experiment_by_name("parallel").experiment_id])
    assert sorted(r.data.params["who"] for r in both) == ["machine-0", "machine-1"]
    assert all(len(client.search_traces(locations=[r.info.experiment_id], run_id=r.info.run_id)) == 1 for r in both)
    assert not any(tmp_path.rglob(".lock"))  # SQLite's file lock was never taken


def test_cli_output_and_stored_runs_never_show_the_password(postgres_server, data_dir, tmp_path):
    dagster_url = postgres_server.create_database("dagster_cli")
    mlflow_url = postgres_server.create_database("mlflow_cli")
    password = postgres_server.password
    done = subprocess.run([sys.executable, "-m", "orchestration.cli", "--offline", "--data-dir", str(data_dir), "run"],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=clean_environ(ADRAG_DAGSTER_PG_URL=dagster_url, MLFLOW_TRACKING_URI=mlflow_url,
                                            ADRAG_DEVICE="cpu"))
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "ads (2 of 2 segments" in done.stdout
    assert f"MLflow runs:     {masked(mlflow_url)}" in done.stdout and "adrag:***@127.0.0.1" in done.stdout
    assert password not in output

    config = (data_dir / "dagster_home" / "dagster.yaml").read_text()
    assert "env: ADRAG_DAGSTER_PG_URL" in config and password not in config
    assert sorted(runs_in(postgres_server, "dagster_cli").values()) == ["SUCCESS"] * 2  # catalog, both segments
    assert postgres_server.execute("mlflow_cli", "SELECT count(*) FROM runs")[0][0] == 5  # embed + 2 x (cands, ad)
    for database in ("dagster_cli", "mlflow_cli"):  # every row of every table: runs, tags, events, params
        assert password not in postgres_server.dump(database), database
    written = [path for path in data_dir.rglob("*") if path.is_file()]  # compute logs, artifacts, tables, yaml
    assert len(written) > 20
    assert not [str(path) for path in written if password.encode() in path.read_bytes()]


@pytest.mark.parametrize("which", ["dagster", "mlflow", "wrong password"])
def test_a_database_that_cannot_be_used_is_one_line_naming_the_host(which, postgres_server, data_dir, monkeypatch,
                                                                     capsys):
    for name in [n for n in os.environ if n.startswith(("ADRAG_", "DAGSTER_", "MLFLOW_"))]:
        monkeypatch.delenv(name)
    closed_port = free_port() if which != "wrong password" else postgres_server.port
    url = f"postgresql+psycopg2://adrag:not-the-pw-{which[:3]}@127.0.0.1:{closed_port}/nowhere"
    monkeypatch.setenv("MLFLOW_TRACKING_URI" if which == "mlflow" else "ADRAG_DAGSTER_PG_URL", url)
    assert cli.main(["--offline", "--data-dir", str(data_dir), "run"]) == 2
    captured = capsys.readouterr()
    [line] = captured.err.strip().splitlines()
    assert line.startswith("adrag run: cannot connect to ") and f"127.0.0.1:{closed_port}/nowhere" in line
    assert ("MLFLOW_TRACKING_URI" if which == "mlflow" else "ADRAG_DAGSTER_PG_URL") in line
    assert ("password authentication failed" if which == "wrong password" else "refused") in line
    assert "not-the-pw" not in captured.out + captured.err and "Traceback" not in captured.err


def test_adrag_mlflow_passes_a_password_through_the_environment_not_argv(data_dir, monkeypatch, capsys):
    url = "postgresql://adrag:argv-secret@127.0.0.1:1/mlflow"
    launched = {}

    def execve(path, argv, environ):
        launched.update(argv=argv, environ=environ)
        raise SystemExit(0)

    monkeypatch.setattr(os, "execve", execve)
    monkeypatch.setattr(cli, "unreachable_database", lambda command, overrides: None)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    with pytest.raises(SystemExit):
        cli.main(["--data-dir", str(data_dir), "mlflow"])
    assert not any("argv-secret" in arg for arg in launched["argv"]) and "--backend-store-uri" not in launched["argv"]
    assert launched["environ"]["MLFLOW_BACKEND_STORE_URI"] == url
    printed = capsys.readouterr().out
    assert "MLFLOW_BACKEND_STORE_URI=postgresql://adrag:***@127.0.0.1:1/mlflow" in printed
    assert "argv-secret" not in printed


def test_a_bare_postgresql_url_needs_a_driver_sqlalchemy_has(postgres_server, monkeypatch):
    """SQLAlchemy 2.1 opens postgresql:// with psycopg 3; adrag[scale] installs psycopg2. Without psycopg 3
    the CLI says to write postgresql+psycopg2:// instead of Dagster's and MLflow's ModuleNotFoundError."""
    bare = postgres_server.url("postgres", scheme="postgresql")
    monkeypatch.setenv("ADRAG_DAGSTER_PG_URL", bare)
    problem = cli.unreachable_database("run", {})
    if importlib.util.find_spec("psycopg") is None:
        assert "write the URL as postgresql+psycopg2://" in problem and postgres_server.password not in problem
    else:
        assert problem is None
