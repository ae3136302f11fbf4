"""Crashes converge: a run SIGKILLed in the middle of each write, then re-run, ends where an
uninterrupted run ends: no row lost or duplicated, no orphan ad file, no corrupted table."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import pytest
from conftest import NO_QUALITY_BAR, write_photo
from test_pipeline import assert_tables_match_disk, model_key_of, refresh

from assets_pkg.atomic_files import TEMP_PREFIX
from assets_pkg.delta_tables import read_table
from assets_pkg.layout import CAMPAIGNS_SCHEMA, CANDIDATES_SCHEMA
from orchestration.definitions import CAMPAIGN_ASSETS
from orchestration.runner import sync_segment_partitions

REPO = Path(__file__).resolve().parent.parent

# The child runs the real graph and kills itself (SIGKILL: no cleanup, no finally) at one point.
CHILD = textwrap.dedent("""
    import os, signal, sys
    import dagster as dg
    data_dir, point, partition, api_url, token = sys.argv[1:6]

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def kill_after(owner, name):
        real = getattr(owner, name)
        def wrapper(*args, **kwargs):
            result = real(*args, **kwargs)
            die()
        setattr(owner, name, wrapper)

    def kill_before(owner, name):
        setattr(owner, name, lambda *args, **kwargs: die())

    import assets_pkg.campaigns.ads as ads
    import assets_pkg.atomic_files as atomic_files
    import assets_pkg.catalog.mirror as mirror
    import assets_pkg.embeddings.store as embedding_store
    from lancedb.table import LanceTable
    if point == "mirror: after the bytes append, before the metadata commit":
        kill_after(mirror, "write_deltalake")
    elif point == "embeddings: after the first of several commits":
        embedding_store.COMMIT_EVERY = 2
        kill_after(embedding_store, "append")
    elif point == "index: after the delete, before the add":
        kill_after(LanceTable, "delete")
    elif point == "ad: temp file written, before the rename":
        kill_before(atomic_files.os, "replace")
    elif point == "ad: file written, before the campaigns row":
        kill_after(ads, "write_atomically")
    elif point == "replicate: prediction paid, before its output is fetched":
        kill_after(ads, "write_pending")
    else:
        raise SystemExit(f"unknown point {point}")

    sys.path.insert(0, "tests")
    from conftest import tiny_resources
    from orchestration.definitions import CAMPAIGN_ASSETS, CATALOG_ASSETS
    resources = tiny_resources(data_dir, batch_size=2, replicate_api_token=token, replicate_base_url=api_url)
    instance = dg.DagsterInstance.ephemeral()
    if partition == "-":
        dg.materialize(CATALOG_ASSETS, resources=resources, instance=instance)
    else:
        instance.add_dynamic_partitions("segments", [partition])
        dg.materialize(CAMPAIGN_ASSETS, resources=resources, instance=instance, partition_key=partition)
    print("finished without being killed")
""")


def run_and_kill(data_dir: Path, point: str, partition: str = "-", api_url: str = "", token: str = "") -> None:
    child = subprocess.run([sys.executable, "-c", CHILD, str(data_dir), point, partition, api_url, token], cwd=REPO,
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, (child.returncode, child.stdout[-2000:], child.stderr[-3000:])


def change_the_folder(images: Path) -> None:
    """Adds, a delete and a rename: every catalog write has work to do."""
    for i in range(5):
        write_photo(images / "fox" / f"fox-{i}.jpg", seed=300 + i)
    (images / "cat" / "cat-1.png").unlink()
    (images / "dog" / "dog-1.png").rename(images / "dog" / "dog-renamed.png")


@pytest.mark.parametrize("point", [
    "mirror: after the bytes append, before the metadata commit",
    "embeddings: after the first of several commits",
    "index: after the delete, before the add",
])
def test_catalog_write_killed_then_rerun_converges(point, resources, instance, layout, data_dir):
    key = model_key_of(refresh(resources, instance))
    change_the_folder(layout.images_dir)
    run_and_kill(data_dir, point)
    refresh(resources, instance)  # checks included: tables agree, vectors sound
    assert_tables_match_disk(layout, key)


@pytest.mark.parametrize("point", [
    "ad: temp file written, before the rename",
    "ad: file written, before the campaigns row",
])
def test_campaign_generation_killed_then_rerun_converges(point, resources, instance, layout, data_dir):
    refresh(resources, instance)
    key = sync_segment_partitions(instance, layout.segments_file)[1]
    run_and_kill(data_dir, point, key)
    assert dg.materialize(CAMPAIGN_ASSETS, resources=resources, instance=instance, partition_key=key).success

    rows = read_table(layout.campaigns_table, CAMPAIGNS_SCHEMA).to_pylist()
    assert [r["segment_key"] for r in rows] == [key], "one row: none lost, none duplicated"
    assert [r["segment_key"] for r in read_table(layout.candidates_table, CANDIDATES_SCHEMA).to_pylist()] == [key]
    segment_dir = layout.campaigns_dir / key
    ads = sorted(p.name for p in segment_dir.glob("ad-*.png"))
    assert ads == [Path(rows[0]["output_path"]).name]
    assert not list(segment_dir.glob(f"{TEMP_PREFIX}*")), "no orphan half-written file"


def test_generation_killed_after_paying_resumes_the_same_prediction(resources, instance, layout, data_dir):
    from replicate_standin import ReplicateStandIn

    from assets_pkg.campaigns.resources import ImageGeneratorResource

    refresh(resources, instance)
    key = sync_segment_partitions(instance, layout.segments_file)[1]
    with ReplicateStandIn(polls_before_done=2) as api:
        run_and_kill(data_dir, "replicate: prediction paid, before its output is fetched", key, api.base_url, "r8_test")
        assert api.paid == 1
        resources = {**resources, "image_generator": ImageGeneratorResource(**NO_QUALITY_BAR,
            replicate_api_token="r8_test", replicate_base_url=api.base_url)}
        assert dg.materialize(CAMPAIGN_ASSETS, resources=resources, instance=instance, partition_key=key).success
        assert api.paid == 1, "the re-run resumed the paid prediction instead of paying again"
        [row] = read_table(layout.campaigns_table, CAMPAIGNS_SCHEMA).to_pylist()
        assert Path(row["output_path"]).read_bytes() == next(iter(api.served.values()))
    assert not list((layout.campaigns_dir / key).glob(".pending-*")), "the pending marker is gone once the ad exists"
