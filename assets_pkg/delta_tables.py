"""Small helpers over delta-rs shared by every stage: open-if-exists, commit retries, filters.

A table's location is a local `Path` or an `s3://` `ObjectLocation` (assets_pkg/storage.py); every
delta-rs call here and in the stages passes `uri(table)` and `delta_options(table)`."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, NoReturn, TypeVar

import pyarrow as pa
from deltalake import DeltaTable, QueryBuilder, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError
from filelock import FileLock, Timeout
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from assets_pkg.storage import Location, ObjectLocation, check_leases, delta_options, object_lease, uri

T = TypeVar("T")


def open_table(path: Location) -> DeltaTable | None:
    try:
        return DeltaTable(uri(path), storage_options=delta_options(path))
    except TableNotFoundError:
        return None


def read_table(path: Location, schema: pa.Schema, columns: list[str] | None = None, where: str | None = None) -> pa.Table:
    """The current snapshot (optionally filtered by a SQL `where`); an empty table before the first write."""
    return pa.Table.from_batches(list(scan(path, schema, columns, where)), schema=_project(schema, columns))


def scan(path: Location, schema: pa.Schema, columns: list[str] | None = None, where: str | None = None,
         ) -> Iterator[pa.RecordBatch]:
    """Stream record batches of a table through delta-rs's query engine, with filter pushdown.

    Why not `to_pyarrow_dataset()` filters: files that delta-rs rewrote (merge, delete) carry Arrow
    view types, and pyarrow's statistics pruning then fails comparing string with string_view.
    Batches come back cast to `schema`'s plain types. A nullable column the table does not have yet
    (added to the schema after the table was written) comes back as nulls.
    """
    target = _project(schema, columns)
    dt = open_table(path)
    if dt is None:
        return
    present = {field.name for field in dt.schema().fields}
    absent = [f.name for f in target if f.name not in present]
    if not_nullable := [name for name in absent if not target.field(name).nullable]:
        raise ValueError(f"table {path} has no column {', '.join(not_nullable)}")
    selected = ", ".join(f'"{name}"' for name in target.names if name in present)
    sql = f"SELECT {selected} FROM snapshot" + (f" WHERE {where}" if where else "")
    reader = pa.RecordBatchReader.from_stream(QueryBuilder().register("snapshot", dt).execute(sql))
    for batch in reader:
        if batch.num_rows == 0:  # the engine yields one batch per file, most of them empty under a filter
            continue
        if absent:
            batch = pa.RecordBatch.from_arrays(
                [batch.column(f.name) if f.name in present else pa.nulls(len(batch), f.type) for f in target],
                names=target.names)
        yield batch.cast(target)


def _project(schema: pa.Schema, columns: list[str] | None) -> pa.Schema:
    return schema if columns is None else pa.schema([schema.field(name) for name in columns])


def table_version(path: Location) -> int | None:
    dt = open_table(path)
    return None if dt is None else dt.version()


def row_count(path: Location) -> int | None:
    """Rows in the current snapshot, from the commit statistics in the log (no data file is read);
    None before the first write or when a file was written without statistics."""
    dt = open_table(path)
    if dt is None:
        return None
    counts = dt.get_add_actions(flatten=True).column("num_records").to_pylist()
    return None if any(c is None for c in counts) else int(sum(counts))


@contextmanager
def exclusive(path: Location, timeout_s: float = 3600) -> Iterator[None]:
    """Serialise read-compute-write syncs of one table across processes on this machine, or, for a
    table on object storage, across machines.

    Every sync reads the table's state, computes a diff and writes it; two at once would both
    append the same new rows (Delta appends never conflict). The OS lock dies with its process, so
    a killed run never leaves the table locked. On object storage the lock is a lease object beside
    the table (`storage.object_lease`: conditional put, heartbeat, taken over once it lapses), since
    a file lock only holds on one machine.
    """
    if isinstance(path, ObjectLocation):
        with object_lease(path, timeout_s):
            yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path.parent / f".{path.name}.lock"), timeout=timeout_s)
    try:
        lock.acquire()
    except Timeout:
        raise TimeoutError(f"another run has been writing {path} for over {timeout_s:.0f}s; "
                           "wait for it to finish or stop it") from None
    try:
        yield
    finally:
        lock.release()


def with_commit_retry(write: Callable[[], T], attempts: int = 8) -> T:
    """Run a Delta write, retrying when a concurrent writer won the optimistic-concurrency race.

    Every write here is a function of the table's current state, so re-running it after a
    conflict is safe; after `attempts` the conflict is raised with a message saying what happened.
    Before each attempt the caller's leases (tables on object storage) are checked: a run whose lease
    was taken over stops instead of committing (`storage.LeaseLost`).
    Full jitter (a random pause up to 0.1 s, 0.2 s, 0.4 s ... at most 2 s): writers that collided
    once come back at different moments instead of colliding again.
    """
    def checked_write() -> T:
        check_leases()
        return write()

    return Retrying(
        retry=retry_if_exception_type(CommitFailedError),
        stop=stop_after_attempt(attempts),
        wait=wait_random_exponential(multiplier=0.1, max=2.0),
        retry_error_callback=_give_up_committing,
    )(checked_write)


def _give_up_committing(state: RetryCallState) -> NoReturn:
    err = state.outcome.exception()
    raise CommitFailedError(f"gave up after {state.attempt_number} concurrent-commit conflicts: {err}") from err


def append(path: Location, data: pa.Table, **kwargs) -> None:
    if data.num_rows == 0:
        return
    with_commit_retry(lambda: write_deltalake(uri(path), data, mode="append", storage_options=delta_options(path),
                                              **kwargs))


def compact_when_fragmented(path: Location, max_files: int = 64) -> bool:
    """Rewrite the table's files into few once it has more than `max_files`; True when it did.

    A log appended one small commit at a time (the review log: one per button press) gains a file
    per commit, and every read pays per file (~0.7 ms each through the query engine on the 2-core
    box: 250 files made one review step 200 ms). Compaction keeps every row; the replaced files
    stay for time travel until a vacuum. Call it under the table's `exclusive` lock."""
    dt = open_table(path)
    if dt is None or len(dt.file_uris()) <= max_files:
        return False
    with_commit_retry(lambda: open_table(path).optimize.compact())
    return True


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def sql_in(column: str, values: Iterable[str]) -> str:
    """A SQL predicate `column IN (...)` for delta-rs and LanceDB, values quoted."""
    return f"{column} IN ({','.join(map(sql_literal, values))})"
