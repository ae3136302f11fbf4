"""The lake, the Lance index, MLflow artifacts and the image folder on S3: a real S3 API (moto's server,
tests/s3_server.py) on loopback, configured the way a deployment is, through the standard AWS variables.

One module-scoped run materializes the catalog graph and one campaign partition twice, once on local
disk and once with everything that can be on S3 there, and the tests compare what each wrote."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import lancedb
import numpy as np
import pyarrow as pa
import pytest
from conftest import SEGMENTS_YAML, tiny_resources, write_photo
from deltalake import DeltaTable, write_deltalake
from mlflow import MlflowClient
from s3_server import s3_server  # noqa: F401  (the session's S3 server fixture)

from assets_pkg.catalog.manifest import read_manifest, refresh_manifest
from assets_pkg.catalog.mirror import sync_mirror
from assets_pkg.delta_tables import append, exclusive, read_table, table_version, with_commit_retry
from assets_pkg.index.lance_index import open_index
from assets_pkg.layout import (
    CAMPAIGNS_SCHEMA,
    CANDIDATES_SCHEMA,
    EMBEDDINGS_SCHEMA,
    MANIFEST_SCHEMA,
    MIRROR_BYTES_SCHEMA,
    MIRROR_SCHEMA,
    QUARANTINE_SCHEMA,
)
from assets_pkg.resources import DataStore
from assets_pkg.storage import UNSAFE_RENAME, LeaseLost, ObjectLocation, S3Connection, object_lease
from demo_catalog import make_brand_image
from orchestration.definitions import CAMPAIGN_ASSETS, CATALOG_ASSETS, CATALOG_CHECKS
from orchestration.resources import build_resources
from orchestration.runner import sync_segment_partitions

SEGMENT = "outdoor-loving-dog-owners"


def make_images(images: Path) -> None:
    """The photos both runs scan: 9 good ones over 3 label folders, one with a labels sidecar, a hidden
    file (left out) and two bad files (quarantined)."""
    for n, label in enumerate(["dog", "cat", "parrot"]):
        for i in range(3):
            write_photo(images / label / f"{label}-{i}{'.png' if i % 2 else '.jpg'}", seed=10 * n + i)
    (images / "dog" / "dog-0.jpg.labels").write_text("dog, puppy\n")
    (images / ".DS_Store").write_bytes(b"\0\1hidden")
    (images / "dog" / "truncated.jpg").write_bytes((images / "dog" / "dog-0.jpg").read_bytes()[:200])
    (images / "notes.png").write_text("<html>not an image</html>")


def upload(client, folder: Path, bucket: str, prefix: str) -> None:
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        client.put_object(Bucket=bucket, Key=f"{prefix}/{path.relative_to(folder).as_posix()}", Body=path.read_bytes())


@dataclass
class Spy:
    """Every storage_options dict delta-rs and LanceDB were given for an s3:// location."""
    delta: list[dict] = field(default_factory=list)
    lance: list[dict] = field(default_factory=list)


def spy_on_storage_options(mp: pytest.MonkeyPatch, spy: Spy) -> None:
    import sys

    real_init = DeltaTable.__init__

    def table_init(self, table_uri, *args, storage_options=None, **kwargs):
        if str(table_uri).startswith("s3://"):
            spy.delta.append(dict(storage_options or {}))
        real_init(self, table_uri, *args, storage_options=storage_options, **kwargs)

    def recording_write(target, *args, storage_options=None, **kwargs):
        if str(target).startswith("s3://"):
            spy.delta.append(dict(storage_options or {}))
        return write_deltalake(target, *args, storage_options=storage_options, **kwargs)

    mp.setattr(DeltaTable, "__init__", table_init)
    for name, module in list(sys.modules.items()):
        if name.startswith("assets_pkg") and getattr(module, "write_deltalake", None) is write_deltalake:
            mp.setattr(module, "write_deltalake", recording_write)
    for name in ("connect", "connect_async"):
        real = getattr(lancedb, name)

        def connect(uri, *args, _real=real, storage_options=None, **kwargs):
            if str(uri).startswith("s3://"):
                spy.lance.append(dict(storage_options or {}))
            return _real(uri, *args, storage_options=storage_options, **kwargs)

        mp.setattr(lancedb, name, connect)


def catalog(resources, instance, checks: bool = True) -> dg.ExecuteInProcessResult:
    """The catalog graph; with its asset checks (which must all pass) unless `checks` is False."""
    result = dg.materialize([*CATALOG_ASSETS, *(CATALOG_CHECKS if checks else ())], resources=resources,
                            instance=instance)
    assert result.success
    failed = [e.description for e in result.get_asset_check_evaluations() if not e.passed]
    assert not failed, failed
    return result


def campaign(resources, instance, layout) -> dg.ExecuteInProcessResult:
    sync_segment_partitions(instance, layout.segments_file)
    result = dg.materialize(CAMPAIGN_ASSETS, resources=resources, instance=instance, partition_key=SEGMENT)
    assert result.success
    return result


def meta(result, asset: str) -> dict:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset]
    return {k: v.value for k, v in event.materialization.metadata.items()}


@pytest.fixture(scope="module")
def runs(s3_server, tmp_path_factory):  # noqa: F811
    """The same photos, catalog graph and campaign partition on local disk and on S3."""
    root = tmp_path_factory.mktemp("s3")
    images = root / "images"
    make_images(images)
    client = s3_server.client()
    for bucket in ("photos", "lake", "mlflow"):
        s3_server.create_bucket(bucket)
    upload(client, images, "photos", "brand-x/library")

    local_dir, remote_dir = root / "local", root / "remote"
    for data_dir in (local_dir, remote_dir):
        make_brand_image(data_dir / "brand" / "brand.png")
        (data_dir / "segments.yaml").write_text(SEGMENTS_YAML)
    shutil.copytree(images, local_dir / "images")

    env = {**s3_server.environment(), "ADRAG_DATA_DIR": str(remote_dir),
           "ADRAG_IMAGES_DIR": "s3://photos/brand-x/library", "ADRAG_LAKE_URI": "s3://lake/brand-x/lake",
           "ADRAG_INDEX_URI": "s3://lake/brand-x/lance", "ADRAG_MLFLOW_ARTIFACT_ROOT": "s3://mlflow/brand-x"}
    spy = Spy()
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        mp.delenv(UNSAFE_RENAME, raising=False)
        spy_on_storage_options(mp, spy)
        # The deployment's wiring: the settings through dg.EnvVar, read when each run starts.
        configured = build_resources(environ=env)
        remote_resources = {**tiny_resources(remote_dir), "data_store": configured["data_store"],
                            "mlflow_tracking": configured["mlflow_tracking"]}
        local_resources = tiny_resources(local_dir)
        remote_layout = build_resources(environ=env, read_now=True)["data_store"].layout
        local_layout = DataStore(data_dir=str(local_dir)).layout
        with dg.instance_for_test() as local_instance, dg.instance_for_test() as remote_instance:
            started = time.perf_counter()
            local = SimpleNamespace(layout=local_layout, catalog=catalog(local_resources, local_instance, checks=False))
            local.campaign = campaign(local_resources, local_instance, local_layout)
            local_s = time.perf_counter() - started
            started = time.perf_counter()
            remote = SimpleNamespace(layout=remote_layout, catalog=catalog(remote_resources, remote_instance))
            remote.campaign = campaign(remote_resources, remote_instance, remote_layout)
            remote_s = time.perf_counter() - started
            print(f"\nlocal catalog + campaign {local_s:.1f} s, on S3 {remote_s:.1f} s")
            yield SimpleNamespace(local=local, remote=remote, spy=spy, client=client, server=s3_server,
                                  resources=remote_resources, instance=remote_instance, remote_dir=remote_dir)


def rows(table, schema, columns, key) -> list[dict]:
    return sorted(read_table(table, schema, columns).to_pylist(), key=lambda r: [r[k] for k in key])


def test_catalog_and_campaign_on_s3_write_the_same_rows_as_on_local_disk(runs):
    local, remote = runs.local.layout, runs.remote.layout
    assert isinstance(remote.lake_dir, ObjectLocation) and isinstance(remote.images_dir, ObjectLocation)
    manifest = ["path", "image_id", "size_bytes", "format", "width", "height", "labels"]
    assert rows(remote.manifest_table, MANIFEST_SCHEMA, manifest, ["path"]) == \
        rows(local.manifest_table, MANIFEST_SCHEMA, manifest, ["path"])
    assert len(rows(remote.manifest_table, MANIFEST_SCHEMA, manifest, ["path"])) == 9, "hidden and bad files left out"
    labels = {r["path"]: r["labels"] for r in rows(remote.manifest_table, MANIFEST_SCHEMA, manifest, ["path"])}
    assert labels["dog/dog-0.jpg"] == ["dog", "puppy"] and labels["cat/cat-1.png"] == ["cat"]
    assert all(r["etag"] for r in read_table(remote.manifest_table, MANIFEST_SCHEMA).to_pylist()), "ETags recorded"

    quarantine = ["stage", "path", "image_id", "reason", "attempts"]
    remote_quarantine = rows(remote.quarantine_table, QUARANTINE_SCHEMA, quarantine, ["stage", "path"])
    assert remote_quarantine == rows(local.quarantine_table, QUARANTINE_SCHEMA, quarantine, ["stage", "path"])
    assert {r["path"] for r in remote_quarantine} == {"dog/truncated.jpg", "notes.png"}

    mirror = ["image_id", "format", "width", "height", "size_bytes", "labels", "paths"]
    assert rows(remote.mirror_table, MIRROR_SCHEMA, mirror, ["image_id"]) == \
        rows(local.mirror_table, MIRROR_SCHEMA, mirror, ["image_id"])
    stored = rows(remote.mirror_bytes_table, MIRROR_BYTES_SCHEMA, ["image_id", "bytes"], ["image_id"])
    assert len(stored) == 9 and all(hashlib.sha256(r["bytes"]).hexdigest() == r["image_id"] for r in stored)

    ours, theirs = (rows(t.embeddings_table, EMBEDDINGS_SCHEMA, ["image_id", "model_key", "vector"], ["image_id"])
                    for t in (remote, local))
    assert [(r["image_id"], r["model_key"]) for r in ours] == [(r["image_id"], r["model_key"]) for r in theirs]
    np.testing.assert_allclose([r["vector"] for r in ours], [r["vector"] for r in theirs], atol=1e-6)

    key = meta(runs.remote.catalog, "image_embeddings")["model_key"]
    index = [sorted(open_index(t.lance_dir, key).search().select(["image_id", "paths", "labels"]).limit(None)
                    .to_arrow().to_pylist(), key=lambda r: r["image_id"]) for t in (remote, local)]
    assert index[0] == index[1] and len(index[0]) == 9

    candidates = [read_table(t.candidates_table, CANDIDATES_SCHEMA).to_pylist() for t in (remote, local)]
    assert [[(c["image_id"], c["path"]) for c in row["candidates"]] for row in candidates[0]] == \
        [[(c["image_id"], c["path"]) for c in row["candidates"]] for row in candidates[1]]
    campaign_rows = [read_table(t.campaigns_table, CAMPAIGNS_SCHEMA, ["segment_key", "seed_image_id", "output_key",
                                                                      "status", "reused"]).to_pylist()
                     for t in (remote, local)]
    assert campaign_rows[0] == campaign_rows[1] and campaign_rows[0][0]["status"] == "succeeded"

    # Nothing of the lake or the index was written locally; the ad itself is a local file (by design).
    assert not (runs.remote_dir / "lake").exists() and not (runs.remote_dir / "lance").exists()
    assert Path(meta(runs.remote.campaign, "campaign_ad")["ad_file"]).is_file()
    keys = [o["Key"] for page in runs.client.get_paginator("list_objects_v2").paginate(Bucket="lake")
            for o in page.get("Contents", ())]
    assert any(k.startswith("brand-x/lake/image_mirror_bytes/_delta_log/") for k in keys)
    assert any(k.startswith("brand-x/lance/") and ".lance/" in k for k in keys)
    assert not any(k.endswith(".lease") for k in keys), "every lease was released"


def test_mlflow_artifacts_go_to_the_s3_artifact_root(runs):
    client = MlflowClient(tracking_uri=f"sqlite:///{runs.remote.layout.mlflow_dir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ad-campaigns")
    assert experiment.artifact_location == "s3://mlflow/brand-x/ad-campaigns"
    [run] = client.search_runs([experiment.experiment_id], filter_string="tags.stage = 'ad'")
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}  # listed from S3 through boto3
    assert {"candidates.png", "prompt.txt", "candidates.json"} <= artifacts
    assert any(a.startswith("ad-") and a.endswith(".png") for a in artifacts)
    keys = {o["Key"] for o in runs.client.list_objects_v2(Bucket="mlflow", Prefix="brand-x/ad-campaigns/")["Contents"]}
    assert any(k.endswith("/artifacts/prompt.txt") for k in keys)
    assert not (runs.remote.layout.mlflow_dir / "artifacts").exists(), "no artifact was written locally"


def test_second_run_on_s3_reads_and_writes_nothing(runs):
    layout = runs.remote.layout
    # Not the quarantine: every run records that the two bad files are still there (attempts, last seen).
    tables = (layout.manifest_table, layout.mirror_table, layout.mirror_bytes_table, layout.embeddings_table)
    versions = {str(t): table_version(t) for t in tables}
    key = meta(runs.remote.catalog, "image_embeddings")["model_key"]
    lance_version = open_index(layout.lance_dir, key).version
    again = catalog(runs.resources, runs.instance, checks=False)  # the first run's checks passed
    # Only the two quarantined files are read again (as on local disk: they have no manifest row to reuse).
    assert meta(again, "image_manifest")["probed"] == 2 and meta(again, "image_manifest")["reused_unchanged"] == 9
    assert meta(again, "image_manifest")["table_written"] is False
    assert meta(again, "image_mirror")["table_written"] is False
    assert meta(again, "image_embeddings")["embedded"] == 0
    assert {str(t): table_version(t) for t in tables} == versions
    assert open_index(layout.lance_dir, key).version == lance_version


def test_delta_commits_on_s3_always_use_conditional_put_never_unsafe_rename(runs):
    assert len(runs.spy.delta) > 20 and runs.spy.lance, "the spies saw the runs' S3 calls"
    for options in runs.spy.delta:
        assert options.get("aws_conditional_put") == "etag", options
        assert UNSAFE_RENAME.lower() not in {k.lower() for k in options}, options
        assert options["AWS_ENDPOINT_URL"] == runs.server.endpoint_url and options["AWS_ALLOW_HTTP"] == "true"
    assert all(o["aws_endpoint"] == runs.server.endpoint_url for o in runs.spy.lance)

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(UNSAFE_RENAME, "true")
        with pytest.raises(RuntimeError, match=UNSAFE_RENAME):
            _ = DataStore(data_dir="unused", lake_uri="s3://lake/x").layout


def s3_location(server, uri: str) -> ObjectLocation:
    return ObjectLocation(uri, S3Connection(endpoint_url=server.endpoint_url, region="us-east-1",
                                            access_key_id="adrag-test", secret_access_key="adrag-test-secret"))


ROWS = pa.schema([("writer", pa.string()), ("n", pa.int64())])


def test_two_concurrent_delta_writers_on_one_s3_table_lose_no_rows(s3_server):  # noqa: F811
    s3_server.create_bucket("race")
    table = s3_location(s3_server, "s3://race/appends")
    commits = 5

    def writer(name: str) -> None:
        for n in range(commits):
            append(table, pa.table({"writer": [name] * 5, "n": [n] * 5}, schema=ROWS))

    threads = [threading.Thread(target=writer, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    got = read_table(table, ROWS)
    assert got.num_rows == 2 * commits * 5
    assert sorted(set(zip(got["writer"].to_pylist(), got["n"].to_pylist()))) == \
        sorted((w, n) for w in "ab" for n in range(commits))
    assert table_version(table) == 2 * commits - 1, "one version per commit: none overwrote another"

    # A writer whose snapshot is stale commits after another: the conditional put refuses the taken
    # version, and the commit lands on the next one instead of replacing it.
    stale = DeltaTable(table.uri, storage_options=table.connection.delta_options())
    append(table, pa.table({"writer": ["c"], "n": [0]}, schema=ROWS))
    write_deltalake(stale, pa.table({"writer": ["d"], "n": [0]}, schema=ROWS), mode="append")
    writers = read_table(table, ROWS)["writer"].to_pylist()
    assert writers.count("c") == 1 and writers.count("d") == 1 and len(writers) == 2 * commits * 5 + 2


def test_lease_serialises_read_modify_write_syncs_across_writers(s3_server):  # noqa: F811
    s3_server.create_bucket("leases")
    table = s3_location(s3_server, "s3://leases/ids")
    wanted = [f"id-{n}" for n in range(4)]

    def sync() -> None:  # what the stages do: read, diff, append (blind appends never conflict in Delta)
        with exclusive(table, timeout_s=60):
            have = set(read_table(table, ROWS, ["writer"])["writer"].to_pylist())
            time.sleep(0.3)  # both would read the same state here without the lease
            missing = [w for w in wanted if w not in have]
            append(table, pa.table({"writer": missing, "n": [0] * len(missing)}, schema=ROWS))

    threads = [threading.Thread(target=sync) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(read_table(table, ROWS)["writer"].to_pylist()) == wanted, "each row once"


def test_lease_of_a_dead_holder_lapses_and_a_taken_lease_stops_commits(s3_server):  # noqa: F811
    s3_server.create_bucket("lapse")
    client = s3_server.client()
    table = s3_location(s3_server, "s3://lapse/t")
    # A holder that died: its lease object is there, and nobody renews it.
    client.put_object(Bucket="lapse", Key=".t.lease", Body=json.dumps({"owner": "dead", "ttl_s": 1}).encode())
    started = time.monotonic()
    with object_lease(table, timeout_s=30, ttl_s=1) as lease:
        assert lease.took_over["owner"] == "dead"
        waited = time.monotonic() - started
        # Another run takes the lease object over (as after a stall past the TTL): this holder's next commit stops.
        client.put_object(Bucket="lapse", Key=".t.lease", Body=json.dumps({"owner": "other", "ttl_s": 60}).encode())
        time.sleep(0.6)  # a heartbeat (every TTL / 4) finds its ETag gone
        with pytest.raises(LeaseLost):
            with_commit_retry(lambda: append(table, pa.table({"writer": ["x"], "n": [1]}, schema=ROWS)))
    assert waited < 5
    assert table_version(table) is None, "nothing was committed"
    body = json.loads(client.get_object(Bucket="lapse", Key=".t.lease")["Body"].read())
    assert body["owner"] == "other", "the lost lease is left to its new holder"


def test_two_catalog_syncs_from_separate_machines_store_each_image_once(s3_server, tmp_path):  # noqa: F811
    s3_server.create_bucket("shared")
    for n in range(6):
        write_photo(tmp_path / "images" / f"p{n}.jpg", seed=n)
    upload(s3_server.client(), tmp_path / "images", "shared", "images")
    connection = s3_location(s3_server, "s3://shared").connection
    lake = ObjectLocation("s3://shared/lake", connection)
    images = ObjectLocation("s3://shared/images", connection)
    errors = []

    def machine() -> None:  # no local file in common: only the lake's own protocol keeps them apart
        try:
            refresh_manifest(lake / "image_manifest", images)
            sync_mirror(lake / "image_mirror", read_manifest(lake / "image_manifest"), images)
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=machine) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    ids = read_table(lake / "image_mirror_bytes", MIRROR_BYTES_SCHEMA, ["image_id"])["image_id"].to_pylist()
    assert len(ids) == 6 and len(set(ids)) == 6
    assert len(read_table(lake / "image_mirror", MIRROR_SCHEMA, ["image_id"])) == 6


def test_a_store_that_ignores_conditional_writes_is_refused(monkeypatch):
    class IgnoresConditions:  # what an old S3-compatible store does: the second put-if-absent succeeds
        def put_object(self, **kwargs):
            return {"ETag": '"x"'}

        def delete_object(self, **kwargs):
            return {}

    monkeypatch.setattr(S3Connection, "client", lambda self: IgnoresConditions())
    table = ObjectLocation("s3://old-store/lake/t", S3Connection(endpoint_url="http://ignores-conditions.invalid"))
    with pytest.raises(RuntimeError, match="does not honour conditional writes"):
        read_table(table, ROWS)


def test_folder_fingerprint_of_a_bucket_prefix_changes_with_its_objects_only(s3_server):  # noqa: F811
    from orchestration.fingerprints import folder_fingerprint

    s3_server.create_bucket("sensed")
    client = s3_server.client()
    images = s3_location(s3_server, "s3://sensed/photos")
    client.put_object(Bucket="sensed", Key="photos/dog/a.jpg", Body=b"a")
    client.put_object(Bucket="sensed", Key="elsewhere/b.jpg", Body=b"b")  # outside the prefix
    first = folder_fingerprint(images)
    assert first.entries == 1 and folder_fingerprint(images) == first
    client.put_object(Bucket="sensed", Key="photos/.hidden", Body=b"h")
    assert folder_fingerprint(images) == first, "hidden objects are left out, as the scan leaves them out"
    client.put_object(Bucket="sensed", Key="photos/dog/a.jpg.labels", Body=b"dog, puppy")
    relabelled = folder_fingerprint(images)
    assert relabelled != first and relabelled.entries == 1
    client.put_object(Bucket="sensed", Key="photos/dog/a.jpg", Body=b"A")  # same size, new bytes: new ETag
    assert folder_fingerprint(images) != relabelled
