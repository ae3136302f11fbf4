"""Where a table, an index or the image folder lives: a local path, or an `s3://` URI on any S3-compatible store.

A location is either a `pathlib.Path` (the default: everything under the data directory, unchanged) or an
`ObjectLocation`: a URI plus the `S3Connection` that reaches it. `ObjectLocation` answers the few
`Path` operations the stages use on table and folder locations (`/`, `name`, `parent`, `with_name`), so
stage code builds locations the same way for both; what differs is handed to each library in its own
terms, from here only:
- delta-rs: `delta_options(location)`, its `storage_options`;
- LanceDB: `lance_options(location)`;
- the image source and the leases: a boto3 client (`S3Connection.client()`);
- MLflow's S3 artifact repository reads the standard variables itself (boto3; `MLFLOW_S3_ENDPOINT_URL`
  or `AWS_ENDPOINT_URL` for a non-AWS endpoint).
Connection fields left empty are left to each library's own default chain (the standard AWS variables,
`~/.aws`, an instance or pod role), so on AWS with a role nothing but the URIs needs setting.

Commit safety on S3. A Delta commit is the creation of `_delta_log/<version>.json`; two writers must
never both create one version. delta-rs does that with a put-if-absent (`If-None-Match: *`, object_store's
`aws_conditional_put = etag`, named explicitly in the options), which AWS S3 (since 2024), MinIO, Ceph RGW,
Cloudflare R2 and moto honour. delta-rs 1.x has no other way: its DynamoDB lock (`AWS_S3_LOCKING_PROVIDER`)
was removed (delta-io/delta-rs#4464; 1.6 logs an error and commits by conditional put anyway), and
`AWS_S3_ALLOW_UNSAFE_RENAME` (commits that may overwrite each other) is never set here; a run refuses to
start when the environment sets it (`refuse_unsafe_rename`). A store that silently ignores the condition
would let commits overwrite each other, so the first use of a bucket in a process checks that it refuses
a second put-if-absent of one key (`require_conditional_writes`) and stops with a message if it does not.

Why leases as well (`object_lease`): Delta's optimistic concurrency makes each commit atomic, but the
stages' syncs are read-compute-write (read the table, work out what is missing, append it), and Delta
appends never conflict with each other, so two syncs at once would both append the same new rows. On one
machine `delta_tables.exclusive` serialises them with a file lock; across machines it takes a lease object
beside the table, created with a conditional put (`If-None-Match: *`), renewed by a heartbeat with
`If-Match` on its ETag, and taken over once it has not been renewed for its TTL (the age is measured on the
store's clock: its `Date` minus the object's `Last-Modified`), so a killed holder blocks others for at most
one TTL. Relying on Delta's retries alone was not an option: they would retry a blind append, not redo
the diff. A holder that stalls past its TTL (a long GC pause, a partitioned network) can find its lease
taken: every commit checks, before it starts, that the caller's leases are still held (`check_leases`),
so the stalled writer stops at its next commit instead of appending twice. (A stall between that check
and the commit itself is not covered: S3 offers no fencing token a Delta commit could carry.)
"""

from __future__ import annotations

import functools
import json
import os
import random
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Iterator, Mapping, Union

SCHEME = "s3://"
LEASE_TTL_S = 60.0  # a lease not renewed for this long is taken over: the longest a killed run blocks others
UNSAFE_RENAME = "AWS_S3_ALLOW_UNSAFE_RENAME"
PROBE_PREFIX = ".adrag-conditional-write-probe"  # where `require_conditional_writes` puts its test object
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class S3Connection:
    """How to reach an S3-compatible store; empty fields are left to the libraries' own default chain."""

    endpoint_url: str = ""  # AWS_ENDPOINT_URL: MinIO, Ceph, R2, moto ...; empty: AWS itself
    region: str = ""  # AWS_REGION
    access_key_id: str = field(default="", repr=False)
    secret_access_key: str = field(default="", repr=False)
    session_token: str = field(default="", repr=False)
    allow_http: bool = False  # AWS_ALLOW_HTTP: an http:// endpoint (a local MinIO, the tests' moto)

    def __post_init__(self) -> None:
        if self.endpoint_url.startswith("http://"):  # an http:// endpoint is plain http, whatever AWS_ALLOW_HTTP says
            object.__setattr__(self, "allow_http", True)

    @classmethod
    def from_settings(cls, endpoint_url: str = "", region: str = "", access_key_id: str = "",
                      secret_access_key: str = "", session_token: str = "", allow_http: str = "") -> "S3Connection":
        """From setting strings (blank = unset); `allow_http` is true for 1/true/yes/on, and for an http:// endpoint."""
        endpoint_url = endpoint_url.strip()
        return cls(endpoint_url=endpoint_url, region=region.strip(), access_key_id=access_key_id.strip(),
                   secret_access_key=secret_access_key.strip(), session_token=session_token.strip(),
                   allow_http=allow_http.strip().lower() in _TRUE)

    def delta_options(self) -> dict[str, str]:
        """delta-rs `storage_options`: the connection, and the commit protocol (conditional put) named explicitly."""
        options = _present({"AWS_ENDPOINT_URL": self.endpoint_url, "AWS_REGION": self.region,
                            "AWS_ACCESS_KEY_ID": self.access_key_id, "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
                            "AWS_SESSION_TOKEN": self.session_token})
        if self.allow_http:
            options["AWS_ALLOW_HTTP"] = "true"
        options["aws_conditional_put"] = "etag"
        return options

    def lance_options(self) -> dict[str, str]:
        """LanceDB `storage_options` (object_store's lower-case keys)."""
        options = _present({"aws_endpoint": self.endpoint_url, "aws_region": self.region,
                            "aws_access_key_id": self.access_key_id, "aws_secret_access_key": self.secret_access_key,
                            "aws_session_token": self.session_token})
        if self.allow_http:
            options["allow_http"] = "true"
        return options

    def client(self):
        """A boto3 S3 client for this connection (one per connection and process; boto3 clients are thread-safe)."""
        return _client(self)


def _present(options: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in options.items() if v}


@functools.lru_cache(maxsize=8)
def _client(connection: S3Connection):
    try:
        import boto3
        from botocore.config import Config
    except ImportError:  # pragma: no cover - the s3 extra
        raise RuntimeError("s3:// locations need boto3: pip install 'adrag[s3]'") from None
    return boto3.client(
        "s3", endpoint_url=connection.endpoint_url or None, region_name=connection.region or None,
        aws_access_key_id=connection.access_key_id or None, aws_secret_access_key=connection.secret_access_key or None,
        aws_session_token=connection.session_token or None,
        config=Config(max_pool_connections=32, retries={"max_attempts": 5, "mode": "standard"}))


@dataclass(frozen=True)
class ObjectLocation:
    """`s3://bucket/key` (no trailing slash) on the store `connection` reaches.

    Only the path operations stages use on locations are here; there is no `__fspath__`, so code that
    would open it as a local file fails at once instead of writing a local folder named `s3:`.
    """

    uri: str
    connection: S3Connection = field(default_factory=S3Connection, compare=False)

    def __post_init__(self) -> None:
        if not self.uri.startswith(SCHEME) or not self.bucket:
            raise ValueError(f"{self.uri!r} is not an s3://bucket[/key] URI")
        object.__setattr__(self, "uri", self.uri.rstrip("/"))

    @property
    def bucket(self) -> str:
        return self.uri[len(SCHEME):].split("/", 1)[0]

    @property
    def key(self) -> str:
        """The key (prefix) inside the bucket, no leading or trailing slash; "" for the bucket's root."""
        rest = self.uri[len(SCHEME):].split("/", 1)
        return rest[1] if len(rest) > 1 else ""

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    @property
    def parent(self) -> "ObjectLocation":
        return ObjectLocation(self.uri.rsplit("/", 1)[0] if self.key else self.uri, self.connection)

    def with_name(self, name: str) -> "ObjectLocation":
        return self.parent / name

    def __truediv__(self, part: str) -> "ObjectLocation":
        part = str(part).strip("/")
        if not part or any(p in ("", ".", "..") for p in part.split("/")):
            raise ValueError(f"bad path part {part!r} under {self.uri}")
        return ObjectLocation(f"{self.uri}/{part}", self.connection)

    def __str__(self) -> str:
        return self.uri

    # Object stores have no folders: a prefix is there for writing into, and nothing needs creating.
    def is_dir(self) -> bool:
        return True

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        return None


Location = Union[Path, ObjectLocation]


def is_object_uri(value: str | os.PathLike) -> bool:
    return isinstance(value, str) and value.strip().lower().startswith(SCHEME)


def location(value: str | Path, connection: S3Connection | None = None) -> Location:
    """`s3://...` -> an ObjectLocation on `connection`; anything else -> a resolved local Path."""
    if isinstance(value, ObjectLocation):
        return value
    if is_object_uri(value):
        return ObjectLocation(value.strip(), connection or S3Connection())
    if isinstance(value, str) and "://" in value:
        raise ValueError(f"{value!r}: only local paths and s3:// URIs (any S3-compatible store) are supported")
    return Path(value).expanduser().resolve()


def uri(loc: Location) -> str:
    """What the libraries take as the table's or folder's address."""
    return str(loc)


def delta_options(loc: Location) -> dict[str, str] | None:
    if not isinstance(loc, ObjectLocation):
        return None
    require_conditional_writes(loc.connection, loc.bucket)
    return loc.connection.delta_options()


def lance_options(loc: Location) -> dict[str, str] | None:
    return loc.connection.lance_options() if isinstance(loc, ObjectLocation) else None


def refuse_unsafe_rename(environ: Mapping[str, str]) -> None:
    """Fail at once when the environment would let delta-rs commit by unsafe rename (see the module docstring)."""
    if environ.get(UNSAFE_RENAME, "").strip().lower() in _TRUE:
        raise RuntimeError(f"{UNSAFE_RENAME} is set: Delta commits on S3 could then overwrite each other and lose "
                           "rows. Unset it: commits use conditional put (AWS S3, MinIO, R2, Ceph RGW)")


@functools.lru_cache(maxsize=64)
def require_conditional_writes(connection: S3Connection, bucket: str) -> None:
    """Check, once per process and bucket, that the store refuses a second put-if-absent of one key.

    Delta commits and the leases both rely on it; a store that ignores `If-None-Match` would let two
    commits of one version overwrite each other without an error. Three requests (two puts, a delete).
    Credentials that may not write the bucket (a reader's) skip the check: they cannot commit either."""
    client = connection.client()
    key = f"{PROBE_PREFIX}/{uuid.uuid4().hex}"
    try:
        client.put_object(Bucket=bucket, Key=key, Body=b"1", IfNoneMatch="*")
    except Exception as err:
        if _error_code(err) in ("AccessDenied", "403"):
            return
        raise
    try:
        client.put_object(Bucket=bucket, Key=key, Body=b"2", IfNoneMatch="*")
    except Exception as err:
        if _precondition_failed(err):
            return
        raise
    finally:
        client.delete_object(Bucket=bucket, Key=key)
    raise RuntimeError(f"s3://{bucket} ({connection.endpoint_url or 'AWS'}) accepted a second put of one key with "
                       "If-None-Match: *: it does not honour conditional writes, so concurrent Delta commits could "
                       "overwrite each other. Use a store that does (AWS S3, MinIO since 2024, Cloudflare R2, Ceph "
                       "RGW) or keep the lake on local disk")


# Leases ---------------------------------------------------------------------------------------------------

class LeaseLost(RuntimeError):
    """Another writer took over this run's lease (it was not renewed within its TTL): stop before committing."""


_held = threading.local()


def check_leases() -> None:
    """Raise `LeaseLost` when a lease the calling thread holds was taken over (call before each commit)."""
    for lease in getattr(_held, "leases", ()):
        lease.check()


@contextmanager
def object_lease(target: ObjectLocation, timeout_s: float = 3600, ttl_s: float = LEASE_TTL_S) -> Iterator["_Lease"]:
    """Hold the lease `.<name>.lease` beside `target` for the block (see the module docstring)."""
    require_conditional_writes(target.connection, target.bucket)
    lease = _Lease(target.connection.client(), target.with_name(f".{target.name}.lease"), ttl_s)
    lease.acquire(timeout_s)
    stack = _held.__dict__.setdefault("leases", [])
    stack.append(lease)
    try:
        yield lease
    finally:
        stack.remove(lease)
        lease.release()


class _Lease:
    def __init__(self, client, where: ObjectLocation, ttl_s: float):
        self.client, self.where, self.ttl_s = client, where, ttl_s
        self.owner = uuid.uuid4().hex
        self.etag: str | None = None
        self.lost = False
        self.took_over: dict | None = None  # the expired holder this lease replaced, if any
        self._renewed = 0.0  # time.monotonic() when the last successful put of the lease was sent
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def _body(self) -> bytes:
        return json.dumps({"owner": self.owner, "host": socket.gethostname(), "pid": os.getpid(),
                           "ttl_s": self.ttl_s}).encode()

    def _put(self, **condition) -> str:
        sent = time.monotonic()
        etag = self.client.put_object(Bucket=self.where.bucket, Key=self.where.key, Body=self._body(),
                                      ContentType="application/json", **condition)["ETag"]
        self._renewed = sent
        return etag

    def acquire(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        pause = 0.05
        while not self._try_acquire():
            if time.monotonic() > deadline:
                raise TimeoutError(f"another run has held {self.where} for over {timeout_s:.0f}s; wait for it to "
                                   f"finish or stop it (a stopped run's lease lapses after {self.ttl_s:.0f}s)")
            time.sleep(pause * random.uniform(0.5, 1.5))
            pause = min(pause * 2, 1.0)
        self._heartbeat = threading.Thread(target=self._renew, name=f"lease {self.where.name}", daemon=True)
        self._heartbeat.start()

    def _try_acquire(self) -> bool:
        try:
            self.etag = self._put(IfNoneMatch="*")
            return True
        except Exception as err:  # botocore.exceptions.ClientError; boto3 is imported lazily
            if not _precondition_failed(err):
                raise
        try:  # held by another run: take it only when its holder stopped renewing it
            held = self.client.get_object(Bucket=self.where.bucket, Key=self.where.key)
        except Exception as err:
            if _error_code(err) in ("NoSuchKey", "404"):
                return False  # released meanwhile: try again
            raise
        try:
            holder = json.loads(held["Body"].read())
        except ValueError:
            holder = {}
        server_now = parsedate_to_datetime(held["ResponseMetadata"]["HTTPHeaders"]["date"])
        age_s = (server_now - held["LastModified"]).total_seconds()
        if age_s <= float(holder.get("ttl_s", self.ttl_s)):
            return False
        try:
            self.etag = self._put(IfMatch=held["ETag"])  # nobody renewed or took it since it was read
        except Exception as err:
            if _precondition_failed(err) or _error_code(err) in ("NoSuchKey", "404"):
                return False
            raise
        self.took_over = {**holder, "stale_for_s": round(age_s, 1)}
        return True

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl_s / 4):
            try:
                self.etag = self._put(IfMatch=self.etag)
            except Exception as err:
                if _precondition_failed(err) or _error_code(err) in ("NoSuchKey", "404"):
                    self.lost = True  # taken over: another run holds it now
                    return
                # a transient error: try again at the next beat; `check` fails once renewals are too old

    def check(self) -> None:
        # Renewals older than most of a TTL: the store may count the lease as lapsed any moment now.
        if self.lost or time.monotonic() - self._renewed > 0.8 * self.ttl_s:
            self.lost = True
            raise LeaseLost(f"lease {self.where} was taken over by another run, or could not be renewed within "
                            f"its {self.ttl_s:.0f}s; this run stops before committing again")

    def release(self) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        if self.lost or self.etag is None:
            return
        try:
            self.client.delete_object(Bucket=self.where.bucket, Key=self.where.key, IfMatch=self.etag)
        except Exception as err:
            if _precondition_failed(err) or _error_code(err) in ("NoSuchKey", "404"):
                return  # no longer ours
            # A store without conditional deletes: the lease is still ours (it was renewed), delete it plainly.
            self.client.delete_object(Bucket=self.where.bucket, Key=self.where.key)


def _error_code(err: Exception) -> str:
    return str(getattr(err, "response", {}).get("Error", {}).get("Code", ""))


def _precondition_failed(err: Exception) -> bool:
    """412 (the condition did not hold) or 409 (a concurrent conditional write on the key won)."""
    status = getattr(err, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status in (409, 412) or _error_code(err) in ("PreconditionFailed", "ConditionalRequestConflict")
