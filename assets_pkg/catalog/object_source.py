"""The source image folder on object storage: a bucket prefix scanned like a local folder.

The same rules as `scan.scan_folder`, in object-store terms:
- The listing gives every object's key, size, ETag and last-modified time; an object whose size and
  ETag match the previous manifest is not read again, so an unchanged prefix costs the listing (one
  request per 1,000 keys) plus one read per `.labels` sidecar.
- Keys are paths relative to the prefix. A name (or a "folder" on its path) starting with "." is left
  out, as are folder markers (keys ending in "/"). Labels come from a `<key>.labels` sidecar when the
  listing has one, else from the "folder" the key is in.
- A bad image is quarantined with its reason and content hash, as a local one is; an object that
  cannot be read (access denied) is quarantined with that reason; one deleted between the listing and
  the read is not listed. A prefix that cannot be listed (no such bucket, access denied) fails the run:
  an empty listing would read as "every image deleted" downstream.
- The row records the bytes actually read: a file overwritten between listing and reading is recorded
  with the ETag, size and time of the version whose bytes were hashed.
Symlinks, FIFOs and non-UTF-8 names do not exist on object storage, so their local rules have nothing
to do here. Reads run on a small thread pool (object reads are latency-bound).
"""

from __future__ import annotations

import hashlib
import posixpath
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Iterable, Iterator, TypeVar

import pyarrow as pa

from assets_pkg.catalog.probe import InvalidImage, content_hash, probe_image
from assets_pkg.catalog.scan import SIDECAR_SUFFIX, Rejected, ScanResult, Unusable, labels_from_text, normalise_label
from assets_pkg.layout import MANIFEST_SCHEMA
from assets_pkg.storage import ObjectLocation

READ_THREADS = 16
READ_AHEAD = 64  # objects read ahead of the consumer: bounds the bytes held in memory

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class ListedObject:
    rel: str  # key relative to the prefix, "/"-separated
    key: str
    size: int
    etag: str
    mtime_ns: int


def list_objects(root: ObjectLocation) -> tuple[list[ListedObject], dict[str, tuple[int, str]]]:
    """(image candidates in key order, {relative key: (size, ETag)} of every object listed, sidecars included)."""
    client = root.connection.client()
    prefix = f"{root.key}/" if root.key else ""
    candidates, every = [], {}
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=root.bucket, Prefix=prefix):
            for obj in page.get("Contents", ()):
                rel = obj["Key"][len(prefix):]
                if not rel or rel.endswith("/") or any(part.startswith(".") for part in rel.split("/")):
                    continue
                every[rel] = (obj["Size"], obj["ETag"])
                if not rel.endswith(SIDECAR_SUFFIX):
                    candidates.append(ListedObject(rel, obj["Key"], obj["Size"], obj["ETag"], _ns(obj["LastModified"])))
    except Exception as err:
        code = _code(err)
        if code == "NoSuchBucket":
            raise FileNotFoundError(f"image folder {root}: bucket {root.bucket!r} does not exist") from None
        if code:
            raise OSError(f"image folder {root}: cannot list: {code}: {_message(err)}") from None
        raise
    candidates.sort(key=lambda o: o.rel)
    return candidates, every


@dataclass
class _Looked:
    row: dict | None = None  # the manifest row; None: rejected, or gone since the listing
    rejected: Rejected | None = None
    read: bool = False  # the bytes were read (and probed) this scan
    reused: bool = False  # the previous row still holds


def scan_objects(root: ObjectLocation, previous: pa.Table | None = None) -> ScanResult:
    """`scan.scan_folder` for a bucket prefix (see the module docstring)."""
    known = {row["path"]: row for row in previous.to_pylist()} if previous is not None else {}
    listed, every = list_objects(root)
    client = root.connection.client()

    def look(obj: ListedObject) -> _Looked:  # runs on the read threads
        try:
            labels = _labels(client, root, obj.rel, every)
        except Unusable as err:
            return _Looked(rejected=Rejected(obj.rel, str(err)))
        old = known.get(obj.rel)
        if old and old["size_bytes"] == obj.size and old.get("etag") == obj.etag:
            return _Looked(row={**old, "labels": labels}, reused=True)
        try:
            data, etag, mtime_ns = _get(client, root.bucket, obj.key)
        except FileNotFoundError:
            return _Looked()  # deleted since the listing: not listed (see the module docstring)
        except OSError as err:
            return _Looked(rejected=Rejected(obj.rel, f"cannot read: {err}"))
        try:
            facts = probe_image(data)
        except InvalidImage as err:
            return _Looked(rejected=Rejected(obj.rel, str(err), content_hash(data)), read=True)
        return _Looked(read=True, row={
            "path": obj.rel, "image_id": facts.image_id, "size_bytes": facts.size_bytes, "mtime_ns": mtime_ns,
            "format": facts.format, "width": facts.width, "height": facts.height, "labels": labels, "etag": etag,
        })

    result = ScanResult(manifest=MANIFEST_SCHEMA.empty_table())
    rows = []
    for looked in bounded_map(look, listed):
        result.probed += looked.read
        result.reused += looked.reused
        if looked.rejected is not None:
            result.rejected.append(looked.rejected)
        elif looked.row is not None:
            rows.append(looked.row)
    result.manifest = pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA)
    return result


def read_first_matching(root: ObjectLocation, wanted: Iterable[tuple[str, list[str]]]
                        ) -> Iterator[tuple[str, bytes | None]]:
    """For each (image_id, paths): the bytes of the first path that still hashes to image_id, else None.
    In the order given, read ahead on the read threads."""
    client = root.connection.client()

    def read(item: tuple[str, list[str]]) -> tuple[str, bytes | None]:
        image_id, paths = item
        for rel in paths:
            try:
                data = _get(client, root.bucket, _key(root, rel))[0]
            except OSError:
                continue
            if content_hash(data) == image_id:
                return image_id, data
        return image_id, None

    yield from bounded_map(read, wanted)


def listing_fingerprint(root: ObjectLocation) -> tuple[str, int]:
    """(sha256 hex of the listing: every key, size and ETag, sidecars included; image objects listed).
    One list request per 1,000 keys; nothing is read."""
    listed, every = list_objects(root)
    digest = hashlib.sha256()
    for rel in sorted(every):
        size, etag = every[rel]
        digest.update(f"{rel}\0{size}\0{etag}\n".encode())
    return digest.hexdigest(), len(listed)


def bounded_map(fn: Callable[[T], R], items: Iterable[T], threads: int = READ_THREADS,
                ahead: int = READ_AHEAD) -> Iterator[R]:
    """`map(fn, items)` on a thread pool, in order, with at most `ahead` results waiting to be consumed."""
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="adrag-s3-read") as pool:
        window: deque = deque()
        for item in items:
            window.append(pool.submit(fn, item))
            if len(window) >= ahead:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()


def _labels(client, root: ObjectLocation, rel: str, every: dict[str, tuple[int, str]]) -> list[str]:
    sidecar = rel + SIDECAR_SUFFIX
    if sidecar in every:
        try:
            text = _get(client, root.bucket, _key(root, sidecar))[0].decode("utf-8", errors="replace")
        except FileNotFoundError:
            pass  # deleted since the listing: fall back to the folder, as a local scan does
        except OSError as err:
            raise Unusable(f"labels sidecar {posixpath.basename(sidecar)}: cannot read: {err}") from None
        else:
            return labels_from_text(text)
    folder = posixpath.dirname(rel)
    return [normalise_label(posixpath.basename(folder))] if folder else []


def _get(client, bucket: str, key: str) -> tuple[bytes, str, int]:
    """(bytes, ETag, mtime_ns) of one object; FileNotFoundError when it is gone, OSError when unreadable."""
    try:
        response = client.get_object(Bucket=bucket, Key=key)
        return response["Body"].read(), response["ETag"], _ns(response["LastModified"])
    except Exception as err:
        code = _code(err)
        if code in ("NoSuchKey", "404"):
            raise FileNotFoundError(key) from None
        if code in ("AccessDenied", "403"):
            raise OSError("access denied; let the pipeline's credentials read it (s3:GetObject)") from None
        if code:
            raise OSError(f"{code}: {_message(err)}") from None
        raise


def _key(root: ObjectLocation, rel: str) -> str:
    return f"{root.key}/{rel}" if root.key else rel


def _ns(when: datetime) -> int:
    return int(when.timestamp()) * 1_000_000_000 + when.microsecond * 1000


def _code(err: Exception) -> str:
    return str(getattr(err, "response", {}).get("Error", {}).get("Code", ""))


def _message(err: Exception) -> str:
    return str(getattr(err, "response", {}).get("Error", {}).get("Message", "")) or str(err)
