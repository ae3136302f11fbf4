"""The embedding step on Ray (ADRAG_RAY_ADDRESS): a real local Ray cluster, the real asset and writer.

One Ray cluster serves the file: a helper process calls `ray.init(num_cpus=2, include_dashboard=False)`
and stays up until the session ends, so each run connects to it by address and disconnects after, as a
Dagster step does against a cluster. `local` mode starts (and must stop) its own Ray.
"""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from conftest import photo_bytes, tiny_resources, write_photo

ray = pytest.importorskip("ray")

from assets_pkg.catalog.assets import image_manifest, image_mirror  # noqa: E402
from assets_pkg.catalog.mirror import sync_mirror  # noqa: E402
from assets_pkg.catalog.scan import scan_folder  # noqa: E402
from assets_pkg.delta_tables import read_table  # noqa: E402
from assets_pkg.embeddings.assets import image_embeddings  # noqa: E402
from assets_pkg.embeddings.encode import ClipEncoder  # noqa: E402
from assets_pkg.embeddings.model import RANDOM, TINY_MODEL, ClipSpec, load_clip  # noqa: E402
from assets_pkg.embeddings.ray_encode import (  # noqa: E402
    CALL_RETRIES,
    WORKER_CRASH,
    ActorPlan,
    RayImageEncoder,
    RayOptions,
    RayUnavailable,
    check_reachable,
    plan_actors,
    ray_connection,
)
from assets_pkg.embeddings.resources import ClipModel  # noqa: E402
from assets_pkg.embeddings.store import read_vectors, sync_embeddings  # noqa: E402
from assets_pkg.layout import EMBEDDINGS_SCHEMA  # noqa: E402

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SPEC = ClipSpec(TINY_MODEL, RANDOM)
MIN_COSINE = 0.9999
HEAD = ("import ray, sys; ray.init(num_cpus=2, include_dashboard=False, logging_level='WARNING'); "
        "print(ray.get_runtime_context().gcs_address, flush=True); sys.stdin.read(); ray.shutdown()")


@pytest.fixture(scope="session")
def ray_cluster():
    """A local 2-CPU Ray cluster for the session; yields its GCS address (what ADRAG_RAY_ADDRESS would hold).

    Its workers import this checkout (and the tests, for the kill hook) through PYTHONPATH. Token authentication
    is off for it: a client connecting by address sends a token only when RAY_AUTH_MODE=token is set before Ray
    is imported, which this test process cannot do for one test (docs/deploy.md says what a real step sets)."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled",
           "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS), os.environ.get("PYTHONPATH", "")])}
    env.pop("RAY_ADDRESS", None)
    head = subprocess.Popen([sys.executable, "-c", HEAD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                            text=True)
    try:
        ready, _, _ = select.select([head.stdout], [], [], 90)
        address = head.stdout.readline().strip() if ready else ""
        assert address, "the Ray head did not start within 90 s"
        yield address
    finally:
        head.stdin.close()
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()


def vectors_of(table: Path, model_key: str) -> dict[str, np.ndarray]:
    rows = read_vectors(table, model_key).to_pydict()
    return {i: np.asarray(v, np.float32) for i, v in zip(rows["image_id"], rows["vector"])}


def assert_same_vectors(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert sorted(got) == sorted(want)
    cosines = [float(got[i] @ want[i]) for i in want]
    assert min(cosines) >= MIN_COSINE, min(cosines)


def listening(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except OSError:
        return False


def meta(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_asset_on_ray_writes_the_in_process_vectors(data_dir, layout, instance, ray_cluster, clip_encoder):
    resources = tiny_resources(data_dir, batch_size=4)
    assert dg.materialize([image_manifest, image_mirror], resources=resources, instance=instance).success
    sync_embeddings(layout.data_dir / "in-process", layout.mirror_table, clip_encoder)  # the in-process path's code
    want = vectors_of(layout.data_dir / "in-process", clip_encoder.model_key)
    assert len(want) == 12

    on_ray = {**resources, "clip": ClipModel(model_name=TINY_MODEL, weights=RANDOM, device="cpu", batch_size=4,
                                             ray_address=ray_cluster, ray_actors=1)}
    result = dg.materialize([image_embeddings], resources=on_ray, instance=instance)
    assert result.success
    first = meta(result, "image_embeddings")
    assert first["embedded"] == 12 and first["model_key"] == clip_encoder.model_key
    assert first["device"] == "ray:cpu x1 (1 CPU each)" and first["ray_cluster"] == ray_cluster
    assert_same_vectors(vectors_of(layout.embeddings_table, clip_encoder.model_key), want)
    assert not ray.is_initialized(), "the step disconnects from the cluster"

    # Incremental: nothing pending, nothing sent to Ray (no connection at all).
    again = meta(dg.materialize([image_embeddings], resources=on_ray, instance=instance), "image_embeddings")
    assert (again["embedded"], again["unchanged"], again["ray_cluster"]) == (0, 12, None)


def kill_on_second_call(marker_dir: str):
    """The actor hook: note this process's pid; the first actor process to reach its 2nd call SIGKILLs itself."""
    def hook(calls: int, image_ids: list[str]) -> None:
        marker = Path(marker_dir)
        (marker / f"pid-{os.getpid()}").touch()
        if calls == 2:
            try:
                (marker / "killed").touch(exist_ok=False)
            except FileExistsError:
                return
            os.kill(os.getpid(), signal.SIGKILL)
    return hook


def mirror_and_in_process_vectors(tmp_path: Path, clip_encoder, photos: int, seed: int):
    """A mirror of `photos` distinct photos, and their vectors from the in-process encoder (what Ray must match)."""
    images, mirror = tmp_path / "images", tmp_path / "mirror"
    for i in range(photos):
        write_photo(images / f"{i}.jpg", seed=seed + i)
    sync_mirror(mirror, scan_folder(images).manifest, images)
    sync_embeddings(tmp_path / "in-process", mirror, clip_encoder)
    return mirror, vectors_of(tmp_path / "in-process", clip_encoder.model_key)


def test_an_actor_killed_mid_run_is_retried_and_no_row_is_missing_or_doubled(tmp_path, ray_cluster, clip_encoder):
    mirror, want = mirror_and_in_process_vectors(tmp_path, clip_encoder, photos=40, seed=100)

    marks = tmp_path / "marks"
    marks.mkdir()
    # batch 2 x 4 encoder batches per call: 8 images a call, 5 calls; the actor dies in its 2nd.
    encoder = RayImageEncoder(SPEC, RayOptions(address=ray_cluster, actors=1, batch_size=2),
                              on_call=kill_on_second_call(str(marks)))
    changes = sync_embeddings(tmp_path / "on-ray", mirror, encoder)

    assert (marks / "killed").exists(), "the actor was killed mid-run"
    assert len(list(marks.glob("pid-*"))) >= 2, "Ray restarted the actor in a new process"
    assert changes.embedded == 40 and not changes.failed
    rows = read_table(tmp_path / "on-ray", EMBEDDINGS_SCHEMA)
    assert rows.num_rows == 40 and len(set(rows["image_id"].to_pylist())) == 40, "no missing or duplicate rows"
    assert_same_vectors(vectors_of(tmp_path / "on-ray", clip_encoder.model_key), want)


def die_on(image_id: str, marker_dir: str):
    """The actor hook: every call that holds `image_id` SIGKILLs its actor (a decoder crash, memory blown)."""
    def hook(calls: int, image_ids: list[str]) -> None:
        if image_id in image_ids:
            (Path(marker_dir) / f"died-{os.getpid()}").touch()
            os.kill(os.getpid(), signal.SIGKILL)
    return hook


def test_an_image_that_kills_its_actor_every_time_is_quarantined_and_the_rest_embedded(tmp_path, ray_cluster,
                                                                                     clip_encoder):
    mirror, want = mirror_and_in_process_vectors(tmp_path, clip_encoder, photos=20, seed=200)
    poison = sorted(want)[9]  # in the second call of 8 images

    marks = tmp_path / "marks"
    marks.mkdir()
    encoder = RayImageEncoder(SPEC, RayOptions(address=ray_cluster, actors=1, batch_size=2),
                              on_call=die_on(poison, str(marks)))
    changes = sync_embeddings(tmp_path / "on-ray", mirror, encoder)

    # Its block's call and its own call each ran 1 + CALL_RETRIES times; never for ever.
    assert len(list(marks.glob("died-*"))) == 2 * (CALL_RETRIES + 1)
    # It is reported as undecodable, with the reason (the embedding asset quarantines such images); its
    # neighbours came back with their in-process vectors.
    assert changes.embedded == 19 and changes.failed == [(poison, WORKER_CRASH)], changes.failed
    assert_same_vectors(vectors_of(tmp_path / "on-ray", clip_encoder.model_key),
                        {i: v for i, v in want.items() if i != poison})


def test_local_mode_starts_and_stops_its_ray_and_reports_undecodable_images_like_in_process(monkeypatch):
    assert not ray.is_initialized()
    monkeypatch.setenv("RAY_AUTH_MODE", "")
    monkeypatch.delenv("RAY_AUTH_MODE")  # a new local Ray turns token auth on in os.environ: undone after the test
    items = [(f"good-{i}", photo_bytes(i)) for i in range(5)] + [("bad", b"\xff\xd8\xff not a jpeg")]
    in_process = ClipEncoder(load_clip(SPEC), batch_size=2)
    want = list(in_process.encode_images(items))
    encoder = RayImageEncoder(SPEC, RayOptions(address="local", actors=1, batch_size=2))
    got = list(encoder.encode_images(items))

    assert encoder.device == "ray:cpu x1 (1 CPU each)" and encoder.timings["connect_s"] > 0
    assert not ray.is_initialized() and not listening(encoder.cluster_address), "the local Ray was shut down"
    [(bad_id, reason)] = [f for b in want for f in b.failed]
    assert bad_id == "bad" and reason.startswith("cannot decode JPEG for embedding: ")
    [(got_id, got_reason)] = [f for b in got for f in b.failed]  # and no crash
    at = re.compile(r" at 0x[0-9a-f]+")  # PIL names the BytesIO object by its address
    assert (got_id, at.sub("", got_reason)) == (bad_id, at.sub("", reason)), "the in-process reason"
    got_vectors = {i: v for b in got for i, v in zip(b.image_ids, b.vectors)}
    want_vectors = {i: v for b in want for i, v in zip(b.image_ids, b.vectors)}
    assert_same_vectors(got_vectors, want_vectors)


def test_an_unreachable_cluster_fails_at_once_in_one_line(data_dir, instance):
    started = time.perf_counter()
    with pytest.raises(RayUnavailable) as err, ray_connection("ray://127.0.0.1:1"):
        pass
    assert "\n" not in str(err.value) and "ray://127.0.0.1:1" in str(err.value)

    resources = {**tiny_resources(data_dir), "clip": ClipModel(model_name=TINY_MODEL, weights=RANDOM, device="cpu",
                                                               ray_address="ray://127.0.0.1:1")}
    result = dg.materialize([image_manifest, image_mirror, image_embeddings], resources=resources, instance=instance,
                            raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    cause = failure.step_failure_data.error.cause or failure.step_failure_data.error
    assert cause.message.strip().count("\n") == 0 and "cannot reach the Ray cluster at ray://127.0.0.1:1" in cause.message
    assert time.perf_counter() - started < 30


def test_the_actor_pool_follows_the_cluster_one_gpu_per_actor():
    auto = RayOptions(address="auto")
    assert plan_actors(auto, {"CPU": 8}) == ActorPlan(actors=8, num_cpus=1, num_gpus=0, device="cpu")
    assert plan_actors(RayOptions("auto", cpus_per_actor=4), {"CPU": 8}).actors == 2
    assert plan_actors(auto, {"CPU": 32, "GPU": 4}) == ActorPlan(actors=4, num_cpus=1, num_gpus=1, device="cuda")
    assert plan_actors(RayOptions("auto", actors=2, cpus_per_actor=4), {"CPU": 32, "GPU": 4}) == \
        ActorPlan(actors=2, num_cpus=4, num_gpus=1, device="cuda")
    assert plan_actors(RayOptions("auto", device="cpu"), {"CPU": 32, "GPU": 4}).num_gpus == 0
    with pytest.raises(RuntimeError, match="no GPUs"):
        plan_actors(RayOptions("auto", device="cuda"), {"CPU": 8})
    for bad in ("http://head:6379", "head", "ray://head"):
        with pytest.raises(RayUnavailable, match="not a Ray address"):
            check_reachable(bad)
