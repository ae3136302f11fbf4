"""CLIP image vectors on Ray: Ray Data streams the pending images through an actor pool holding the model.

`RayImageEncoder` keeps `ClipEncoder`'s contract (`encode_images` yields `EncodedBatch`es of unit float32
vectors, undecodable images in `failed` with the reason), so `store.sync_embeddings` stays the single
writer: it commits what comes back to the embeddings table exactly as for the in-process encoder.

How a run goes:
  1. The model key comes from loading the model once in this process, on CPU, with the same code as the
     in-process path (`load_clip`), so both paths name their vectors alike; each actor checks its own
     model against that key before it encodes anything.
  2. Ray is connected for the call only (`ray_connection`): `local` starts a Ray for it and shuts it
     down after; `auto`, `host:port` or `ray://host:port` connect to a running cluster and disconnect.
  3. This process reads the pending images (id + bytes) and puts them into Ray's object store in
     blocks of `actor_batch` rows, at most `WINDOW_IMAGES` at a time (Ray spills to disk beyond memory).
  4. Ray Data maps each window's blocks with `ClipBatchActor`, an actor pool of `actors` actors with
     `cpus_per_actor` CPUs each and one GPU each where the cluster has GPUs; each actor runs the same
     `ClipEncoder` as the in-process path. The results stream back as they finish.
  5. A killed actor is restarted by Ray (Ray Data's default `max_restarts=-1`) and the calls it had not
     finished run again, each at most `CALL_RETRIES` times: an image that kills its actor every time (a
     decoder crash, memory blown by a decompression bomb) must not retry for ever. A call that still
     fails drops its block and the window goes on (`max_errored_blocks=-1`); the dropped block's images
     are sent again one per call, so one such image cannot take its neighbours down with it, and an
     image that fails alone too is reported undecodable (`WORKER_CRASH`) and goes to the quarantine.
     An image that comes back twice is yielded once.

A window is one Ray Data execution: its actors load the model when it starts, so with more than
`WINDOW_IMAGES` pending images each window pays that start again.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator
from urllib.parse import urlparse

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from assets_pkg.embeddings.encode import ClipEncoder, EncodedBatch, pick_device
from assets_pkg.embeddings.model import ClipSpec, load_clip

LOCAL = "local"  # a Ray started for the call and shut down after
AUTO = "auto"  # the cluster this machine belongs to (`ray start` wrote its address), or RAY_ADDRESS
WINDOW_IMAGES = 32_768  # images in the object store at once (~4 GB of 120 KB photos); one Ray Data run each
BATCHES_PER_CALL = 4  # encoder batches per actor call: the actor decodes batch k+1 while the model runs k
ACTORS_READY_TIMEOUT_S = 900  # the pool's actors must have started (model loaded) within this
CONNECT_TIMEOUT_S = 5.0
INPUT_SCHEMA = pa.schema([("image_id", pa.string()), ("bytes", pa.binary())])
CALL_RETRIES = 2  # retries of an actor call whose actor died; then its block is dropped and retried image by image
WORKER_CRASH = (f"the embedding worker (a Ray actor) died on this image {CALL_RETRIES + 1} times: a decoder crash "
                "or more memory than the worker has")

log = logging.getLogger(__name__)


class RayUnavailable(RuntimeError):
    """The Ray cluster named by the address cannot be reached; the message is one line that says what to set."""


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide: `address` is `local`, `auto`, `host:port` (a GCS address) or `ray://host:port`
    (Ray Client). `actors` 0 = one per GPU where the cluster has GPUs, else one per `cpus_per_actor` CPUs.
    `device`: `auto` = GPU actors when the cluster has GPUs, else CPU; `cpu`; `cuda` (GPUs required)."""

    address: str
    actors: int = 0
    cpus_per_actor: int = 1
    device: str = "auto"
    batch_size: int = 64


@dataclass(frozen=True)
class ActorPlan:
    """What the pool asks Ray for, decided from the cluster's resources when the call connects."""

    actors: int
    num_cpus: int
    num_gpus: int
    device: str  # what each actor encodes on

    def describe(self) -> str:
        each = f"{self.num_cpus} CPU" + (f" + {self.num_gpus} GPU" if self.num_gpus else "")
        return f"ray:{self.device} x{self.actors} ({each} each)"


def plan_actors(options: RayOptions, cluster: dict[str, float]) -> ActorPlan:
    """The actor pool for a cluster with `cluster` resources (`ray.cluster_resources()`)."""
    cpus_per_actor = max(1, int(options.cpus_per_actor))
    gpus = int(cluster.get("GPU", 0))
    if options.device.startswith("cuda") and gpus == 0:
        raise RuntimeError(f"device {options.device!r} requested but the Ray cluster has no GPUs "
                           "(set ADRAG_DEVICE=auto or cpu, or add GPU workers)")
    use_gpus = gpus > 0 and options.device != "cpu"
    if options.actors > 0:
        actors = options.actors
    elif use_gpus:
        actors = gpus
    else:
        actors = max(1, int(cluster.get("CPU", 1)) // cpus_per_actor)
    device = ("cuda" if options.device == "auto" else options.device) if use_gpus else "cpu"
    return ActorPlan(actors=actors, num_cpus=cpus_per_actor, num_gpus=1 if use_gpus else 0, device=device)


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Fail in seconds, not after Ray's minutes of retries, when a `host:port` or `ray://host:port` is down."""
    if address in (LOCAL, AUTO):
        return
    parsed = urlparse(address if "://" in address else f"gcs://{address}")
    if parsed.scheme not in ("ray", "gcs") or not parsed.hostname or parsed.port is None:
        raise RayUnavailable(f"ADRAG_RAY_ADDRESS={address!r} is not a Ray address: use `local`, `auto`, "
                             "`host:port` (the head's GCS port, 6379) or `ray://host:port` (Ray Client, 10001)")
    try:
        with socket.create_connection((parsed.hostname, parsed.port), timeout=timeout_s):
            return
    except OSError as err:
        raise RayUnavailable(f"cannot reach the Ray cluster at {address} ({err.strerror or err}): start it "
                             "(`ray up`, a KubeRay RayCluster, `ray start --head`) or fix ADRAG_RAY_ADDRESS; "
                             "`local` starts a Ray for the run, empty embeds in-process") from None


@contextmanager
def ray_connection(address: str) -> Iterator[str]:
    """Ray connected for the block; yields the cluster's GCS address.

    `local` starts a Ray on this machine (no dashboard) and shuts it down after; any other address connects
    and disconnects after. A process that is already connected (a notebook or a test that called `ray.init`)
    keeps its connection: the block uses it and leaves it open.
    """
    import ray

    address = address.strip()
    check_reachable(address)
    if ray.is_initialized():
        yield _gcs_address(ray)
        return
    kwargs = {"address": LOCAL, "include_dashboard": False} if address == LOCAL else {"address": address}
    try:
        ray.init(logging_level=logging.WARNING, **kwargs)
    except Exception as err:  # ConnectionError, AuthenticationError, RuntimeError (version mismatch), ...
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        token_hint = "" if os.environ.get("RAY_AUTH_MODE") or "Could not find" in first_line else (
            "; a cluster with token authentication also needs RAY_AUTH_MODE=token and RAY_AUTH_TOKEN here")
        raise RayUnavailable(f"cannot connect to Ray at {address!r}: {first_line} (ADRAG_RAY_ADDRESS: `local`, "
                             f"`auto`, `host:port` or `ray://host:port`{token_hint})") from None
    try:
        yield _gcs_address(ray)
    finally:
        ray.shutdown()


def _gcs_address(ray) -> str:
    try:
        return ray.get_runtime_context().gcs_address
    except Exception:  # a Ray Client connection has no GCS address of its own here
        return "ray-client"


class ClipBatchActor:
    """One Ray actor: the CLIP model built from the spec, encoding one Arrow batch per call.

    Returns one row per input image: its vector, or a null vector and the reason it could not be decoded
    (the in-process path's reason, so the quarantine reads the same). `on_call(n, image_ids)` runs as the
    n-th call of this actor process starts (tests kill the actor from there).
    """

    def __init__(self, spec: ClipSpec, device: str, batch_size: int, threads: int, model_key: str,
                 on_call: Callable[[int, list[str]], None] | None = None):
        import torch

        device = pick_device(device)
        if device == "cpu":
            torch.set_num_threads(max(1, threads))
        self.encoder = ClipEncoder(load_clip(spec, device), device=device, batch_size=batch_size)
        if self.encoder.model_key != model_key:
            raise RuntimeError(f"the Ray worker's model is {self.encoder.model_key!r}, the writer's {model_key!r}: "
                               "install the same project and weights on the workers")
        self.schema = output_schema(self.encoder.dim)
        self.on_call = on_call
        self.calls = 0

    def __call__(self, batch: pa.Table) -> pa.Table:
        ids = batch.column("image_id").to_pylist()
        datas = batch.column("bytes").to_pylist()
        self.calls += 1
        if self.on_call is not None:
            self.on_call(self.calls, ids)
        out_ids, vectors, reasons = [], [], []
        for encoded in self.encoder.encode_images(zip(ids, datas)):
            out_ids.extend(encoded.image_ids)
            vectors.extend(encoded.vectors)
            reasons.extend([None] * len(encoded.image_ids))
            for image_id, reason in encoded.failed:
                out_ids.append(image_id)
                vectors.append(None)
                reasons.append(reason)
        return pa.table([pa.array(out_ids, pa.string()), _vector_array(vectors, self.encoder.dim),
                         pa.array(reasons, pa.string())], schema=self.schema)


def output_schema(dim: int) -> pa.Schema:
    return pa.schema([("image_id", pa.string()), ("vector", pa.list_(pa.float32(), dim)), ("reason", pa.string())])


def _vector_array(vectors: list[np.ndarray | None], dim: int) -> pa.Array:
    mask = np.array([v is None for v in vectors], dtype=bool)
    flat = np.zeros((len(vectors), dim), np.float32)
    for n, vector in enumerate(vectors):
        if vector is not None:
            flat[n] = vector
    return pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1), pa.float32()), dim,
                                             mask=pa.array(mask) if mask.any() else None)


def _put_block(ids: list[str], datas: list[bytes]) -> tuple[object, list[str]]:
    """The images as one Arrow table in Ray's object store: (its ref, their ids)."""
    import ray

    return ray.put(pa.table([pa.array(ids, pa.string()), pa.array(datas, pa.binary())], schema=INPUT_SCHEMA)), ids


def to_encoded_batch(table: pa.Table, dim: int) -> EncodedBatch:
    """An actor's result table as the writer's `EncodedBatch`."""
    failed_mask = pc.is_valid(table.column("reason"))
    ok = table.filter(pc.invert(failed_mask))
    bad = table.filter(failed_mask)
    values = pc.list_flatten(ok.column("vector").combine_chunks()) if ok.num_rows else pa.array([], pa.float32())
    vectors = values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(-1, dim)
    return EncodedBatch(ok.column("image_id").to_pylist(), vectors,
                        list(zip(bad.column("image_id").to_pylist(), bad.column("reason").to_pylist())))


class RayImageEncoder:
    """`ClipEncoder.encode_images` on a Ray actor pool, for `sync_embeddings` (see the module docstring)."""

    def __init__(self, spec: ClipSpec, options: RayOptions,
                 on_call: Callable[[int, list[str]], None] | None = None):
        self.spec = spec
        self.options = options
        self.batch_size = options.batch_size
        self.on_call = on_call
        self.device = f"ray:{options.device}"  # the plan's description once a call has connected
        self.cluster_address: str | None = None  # the GCS address of the last call's cluster
        self.timings: dict[str, float] = {}  # connect_s, first_batch_s of the last call (seconds)
        self.duplicates = 0  # images that came back more than once (a retried actor call), dropped
        self._key: tuple[str, int] | None = None

    def _describe(self) -> tuple[str, int]:
        if self._key is None:
            clip = load_clip(self.spec, "cpu")
            self._key = (clip.model_key, clip.dim)
            del clip
        return self._key

    @property
    def model_key(self) -> str:
        return self._describe()[0]

    @property
    def dim(self) -> int:
        return self._describe()[1]

    def close(self) -> None:
        pass  # every call holds its Ray connection only while it runs

    def encode_images(self, items: Iterable[tuple[str, bytes]]) -> Iterator[EncodedBatch]:
        model_key, dim = self._describe()
        started = time.perf_counter()
        self.timings = {}
        with ray_connection(self.options.address) as gcs:
            import ray

            self.timings["connect_s"] = time.perf_counter() - started
            self.cluster_address = gcs
            plan = plan_actors(self.options, ray.cluster_resources())
            self.device = plan.describe()
            log.info("embedding on Ray at %s: %s", gcs, self.device)
            sent: set[str] = set()
            seen: set[str] = set()
            for blocks in self._windows(items, sent):
                for table in self._map_window([ref for ref, _ in blocks], plan, model_key):
                    batch = to_encoded_batch(table, dim)
                    batch = self._first_sight(batch, seen)
                    if "first_batch_s" not in self.timings:
                        self.timings["first_batch_s"] = time.perf_counter() - started
                    yield batch
                yield from self._isolate_dropped(blocks, seen, plan, model_key, dim)
            if self.duplicates:
                log.info("%d images came back from Ray twice (retried calls); each was written once", self.duplicates)

    def _isolate_dropped(self, blocks: list[tuple[object, list[str]]], seen: set[str], plan: ActorPlan,
                         model_key: str, dim: int) -> Iterator[EncodedBatch]:
        """The window's images that came back neither encoded nor failed (their block's calls all died),
        again one image per call; those that fail alone too, as undecodable with WORKER_CRASH. Only the
        blocks with such images are read back from the object store."""
        import ray

        missing = [(ref, [i for i in ids if i not in seen]) for ref, ids in blocks]
        missing = [(ref, ids) for ref, ids in missing if ids]
        if not missing:
            return
        dropped = [image_id for _, ids in missing for image_id in ids]
        singles = []
        for ref, ids in missing:
            table = ray.get(ref)
            table = table.filter(pc.is_in(table.column("image_id"), pa.array(ids, pa.string())))
            singles.extend(ray.put(table.slice(n, 1)) for n in range(table.num_rows))
        log.warning("%d images came back from no Ray call (the actor died on their blocks %d times); sending "
                    "them again one by one", len(dropped), CALL_RETRIES + 1)
        for table in self._map_window(singles, plan, model_key, isolating=True):
            yield self._first_sight(to_encoded_batch(table, dim), seen)
        crashed = [image_id for image_id in dropped if image_id not in seen]
        seen.update(crashed)
        if crashed:
            yield EncodedBatch([], np.zeros((0, dim), np.float32), [(image_id, WORKER_CRASH) for image_id in crashed])

    def _first_sight(self, batch: EncodedBatch, seen: set[str]) -> EncodedBatch:
        """The batch without images already yielded (a retried call can return its rows again)."""
        keep = [n for n, image_id in enumerate(batch.image_ids) if image_id not in seen]
        failed = [(image_id, reason) for image_id, reason in batch.failed if image_id not in seen]
        self.duplicates += len(batch.image_ids) - len(keep) + len(batch.failed) - len(failed)
        seen.update(batch.image_ids[n] for n in keep)
        seen.update(image_id for image_id, _ in failed)
        if len(keep) == len(batch.image_ids):
            return EncodedBatch(batch.image_ids, batch.vectors, failed)
        return EncodedBatch([batch.image_ids[n] for n in keep], batch.vectors[keep], failed)

    @property
    def actor_batch(self) -> int:
        """Images per actor call (and per object-store block)."""
        return self.batch_size * BATCHES_PER_CALL

    def _windows(self, items: Iterable[tuple[str, bytes]], sent: set[str]) -> Iterator[list[tuple[object, list[str]]]]:
        """Lists of blocks, (object ref of an Arrow table of `actor_batch` images, their ids), at most
        `WINDOW_IMAGES` images a list."""
        block = self.actor_batch
        blocks, ids, datas, in_window = [], [], [], 0
        for image_id, data in items:
            if image_id in sent:
                continue
            sent.add(image_id)
            ids.append(image_id)
            datas.append(data)
            if len(ids) == block:
                blocks.append(_put_block(ids, datas))
                in_window += len(ids)
                ids, datas = [], []
                if in_window >= WINDOW_IMAGES:
                    yield blocks
                    blocks, in_window = [], 0
        if ids:
            blocks.append(_put_block(ids, datas))
        if blocks:
            yield blocks

    def _map_window(self, refs: list, plan: ActorPlan, model_key: str, isolating: bool = False) -> Iterator[pa.Table]:
        """The window's blocks through the actor pool. `isolating`: one image per call and one call at a time
        per actor, so an actor's death fails no call but the one it died in (a call queued behind it would
        spend its retries too)."""
        import ray

        dataset = ray.data.from_arrow_refs(refs)
        context = dataset.context
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        context.wait_for_min_actors_s = ACTORS_READY_TIMEOUT_S
        context.max_errored_blocks = -1  # a call that failed for good drops its block; `_isolate_dropped` retries it
        mapped = dataset.map_batches(
            ClipBatchActor,
            fn_constructor_kwargs={"spec": self.spec, "device": plan.device, "batch_size": self.batch_size,
                                   "threads": plan.num_cpus, "model_key": model_key, "on_call": self.on_call},
            batch_size=1 if isolating else self.actor_batch, batch_format="pyarrow", zero_copy_batch=True,
            compute=ray.data.ActorPoolStrategy(size=plan.actors, max_tasks_in_flight_per_actor=1 if isolating else None),
            num_cpus=plan.num_cpus, num_gpus=plan.num_gpus,
            # A remote arg: Ray 2.60 warns that those are deprecated but has no named parameter for this yet.
            max_task_retries=CALL_RETRIES,
        )
        yield from mapped.iter_batches(batch_size=None, batch_format="pyarrow")
