"""MLflow tracking for every stage: one run per campaign generation or embedding materialization.

Stages record what happened as plain data (`RunRecord`, with timed `Step`s), and `MlflowStore.log`
writes it in one short burst under a file lock. Why: the embedded default store is SQLite, which
fails with "database is locked" (and races on creating the schema and experiments) when several
partition processes write at once; holding the lock only while logging keeps generations parallel.
A server database (`MLFLOW_TRACKING_URI=postgresql://...`, MLflow's SQLAlchemy store) takes concurrent
writers from every machine: no file lock there (it would hold on one machine only); the schema is
created under a PostgreSQL advisory lock, and a lost race to create an experiment reads the winner's.
Steps become an MLflow trace attached to the run, with their real start and end times; a step may name
its span type (MLflow's `SpanType`: LLM, TOOL, RETRIEVER, ...) and an earlier step as its parent.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

from filelock import FileLock

from assets_pkg.database_urls import advisory_lock, is_postgres, is_sqlite

PARAM_LIMIT = 500  # MLflow's portable limit for a param value; longer text goes in as an artifact
# What the MLflow UI opens an experiment on (its `mlflow.experimentKind` tag): the runs table, or the GenAI
# overview of traces. Unset, MLflow 3 guesses, and an experiment of traced runs opened on an empty overview.
RUNS_EXPERIMENT = "custom_model_development"
TRACES_EXPERIMENT = "genai_development"


@dataclass
class Step:
    name: str
    start_ns: int
    end_ns: int = 0
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    span_type: str = "UNKNOWN"  # an mlflow.entities.SpanType value; plain text so this module imports no mlflow
    parent: str | None = None  # the name of an earlier step this one ran inside; None: under the root span


@dataclass
class RunRecord:
    experiment: str
    run_name: str
    experiment_description: str = ""  # shown on the experiment's page; set when the experiment is made
    experiment_kind: str = RUNS_EXPERIMENT
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)  # artifact file name -> content
    files: list[Path] = field(default_factory=list)  # files logged as artifacts
    steps: list[Step] = field(default_factory=list)
    status: str = "FINISHED"  # MLflow run status: FINISHED or FAILED
    span_type: str = "UNKNOWN"  # the trace's root span type (e.g. AGENT for a review turn)
    trace_inputs: dict[str, Any] | None = None  # the root span's inputs; None: the run name
    trace_outputs: dict[str, Any] | None = None
    trace_tags: dict[str, str] = field(default_factory=dict)  # searchable on the trace itself

    @contextmanager
    def step(self, name: str, span_type: str = "UNKNOWN", **inputs: Any) -> Iterator[dict[str, Any]]:
        """Time a step; the caller fills the yielded dict with the step's outputs."""
        current = Step(name=name, start_ns=time.time_ns(), inputs=inputs, span_type=span_type)
        try:
            yield current.outputs
        finally:
            current.end_ns = time.time_ns()
            self.steps.append(current)


def default_tracking_uri(mlflow_dir: Path) -> str:
    return f"sqlite:///{(mlflow_dir / 'mlflow.db').resolve()}"


class MlflowStore:
    def __init__(self, tracking_uri: str, artifact_root: Path | str, lock_file: Path, ui_url: str = ""):
        self.tracking_uri = tracking_uri
        # A local folder, or a URI MLflow's artifact repositories take (s3://bucket/prefix).
        self.artifact_root = artifact_root if "://" in str(artifact_root) else Path(artifact_root)
        self.ui_url = ui_url.rstrip("/")  # where users browse this store (an `mlflow ui` / server)
        # Only a local store (SQLite, MLflow's file store) needs writers in turn, and a file lock holds on one
        # machine only: a server database (PostgreSQL) or tracking server takes concurrent writers itself.
        self.lock = FileLock(str(lock_file)) if _is_local_store(tracking_uri) else nullcontext()
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        self._experiment_of_run: dict[str, str] = {}
        self._writer: ThreadPoolExecutor | None = None  # `submit`'s one thread, made on first use
        self._writer_lock = threading.Lock()

    def run_url(self, run_id: str) -> str | None:
        """The run's page in the MLflow UI, for a run this store logged; None without a UI address."""
        experiment_id = self._experiment_of_run.get(run_id)
        if not self.ui_url or experiment_id is None:
            return None
        return f"{self.ui_url}/#/experiments/{experiment_id}/runs/{run_id}"

    def compare_url(self, run_ids: list[str]) -> str | None:
        """MLflow's compare view of runs this store logged (params, metrics side by side); None without a UI."""
        experiments = sorted({self._experiment_of_run.get(run_id) for run_id in run_ids} - {None})
        if not self.ui_url or not run_ids or not experiments:
            return None
        compact = {"separators": (",", ":")}
        query = f"runs={quote(json.dumps(run_ids, **compact))}&experiments={quote(json.dumps(experiments, **compact))}"
        return f"{self.ui_url}/#/compare-runs?{query}"

    def log(self, record: RunRecord) -> str:
        """Write the record as one MLflow run (with a trace of its steps); returns the run id."""
        # Export traces in the calling thread: the async exporter's flush waits ~2 s per run, and that wait
        # would be spent holding the lock every partition process queues on. MLflow 3.17 reads this switch
        # only from the environment (mlflow/tracing/config.py: "TODO: move ... async logging ... here").
        os.environ.setdefault("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "false")
        from mlflow.entities import Metric, Param

        # The file lock (local stores only) spans processes; the thread lock spans this process's threads (a
        # studio logs review turns on a background thread while a run's step logs its ad: both once raced to
        # create the schema), and keeps MLflow's process-wide tracer on one store at a time on any backend.
        with _process_lock(self.tracking_uri), self.lock:
            client = _client(self.tracking_uri)
            experiment_id = self._experiment_id(client, record)
            run = client.create_run(experiment_id, run_name=record.run_name, tags={**source_tags(record), **record.tags})
            run_id = run.info.run_id
            status = record.status
            try:
                now_ms = int(time.time() * 1000)
                client.log_batch(run_id, params=[Param(k, _param(v)) for k, v in record.params.items()],
                                 metrics=[Metric(k, float(v), now_ms, 0) for k, v in record.metrics.items()])
                for name, text in record.texts.items():
                    client.log_text(run_id, text, name)
                for path in record.files:
                    client.log_artifact(run_id, str(path))
                if record.steps:
                    with _tracer_exporting_to(self.tracking_uri):
                        _log_trace(client, record, experiment_id, run_id)
            except BaseException:
                status = "FAILED"
                raise
            finally:
                client.set_terminated(run_id, status=status)
            self._experiment_of_run[run_id] = experiment_id
            return run_id

    def submit(self, record: RunRecord) -> Future[str]:
        """Log the record on this store's one background thread, in submission order; returns at once.

        For what a person waits on (a review turn): the turn is already in its own log, and its MLflow
        run and trace follow within a second. `flush` waits for what was submitted; the interpreter
        waits for it at exit too (the executor's threads are joined then)."""
        with self._writer_lock:
            if self._writer is None:
                self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="adrag-mlflow")
            future = self._writer.submit(self.log, record)
        future.add_done_callback(_warn_if_failed)
        return future

    def flush(self) -> None:
        """Wait until every submitted record is logged (their errors are the futures')."""
        with self._writer_lock:
            writer = self._writer
        if writer is not None:
            writer.submit(lambda: None).result()

    def _experiment_id(self, client, record: RunRecord) -> str:
        """The experiment's id, made on first use with its description and kind (added to one made earlier
        without them)."""
        name = record.experiment
        tags = {"mlflow.experimentKind": record.experiment_kind}
        if record.experiment_description:
            tags["mlflow.note.content"] = record.experiment_description
        existing = client.get_experiment_by_name(name)
        if existing is None:
            if isinstance(self.artifact_root, str):  # an object store's URI (s3://...)
                location = f"{self.artifact_root.rstrip('/')}/{quote(name)}"
            else:
                self.artifact_root.mkdir(parents=True, exist_ok=True)
                location = (self.artifact_root / name).resolve().as_uri()
            try:
                return client.create_experiment(name, artifact_location=location, tags=tags)
            except Exception:  # noqa: BLE001 -- another machine's writer created it first (no lock spans machines)
                existing = client.get_experiment_by_name(name)
                if existing is None:
                    raise
        for key, value in tags.items():
            if key not in existing.tags:
                client.set_experiment_tag(existing.experiment_id, key, value)
        return existing.experiment_id


_PROCESS_LOCKS: dict[str, threading.Lock] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()
_SCHEMA_READY: set[str] = set()  # PostgreSQL stores this process has opened once (schema created or checked)
SCHEMA_LOCK_KEY = 0x616472616700  # the advisory lock MLflow's schema is created under ("adrag\0")


def _is_local_store(tracking_uri: str) -> bool:
    return is_sqlite(tracking_uri) or "://" not in tracking_uri or tracking_uri.lower().startswith("file:")


def _client(tracking_uri: str):
    """An MlflowClient; on PostgreSQL, the first in this process opens the store under an advisory lock:
    opening an empty database creates MLflow's schema, which two first writers would otherwise both do."""
    from mlflow import MlflowClient

    if not is_postgres(tracking_uri) or tracking_uri in _SCHEMA_READY:
        return MlflowClient(tracking_uri)
    with advisory_lock(tracking_uri, SCHEMA_LOCK_KEY):
        client = MlflowClient(tracking_uri)  # opens the store: creates or checks the schema
    _SCHEMA_READY.add(tracking_uri)
    return client


def _process_lock(tracking_uri: str) -> threading.Lock:
    with _PROCESS_LOCKS_GUARD:
        return _PROCESS_LOCKS.setdefault(tracking_uri, threading.Lock())


@contextmanager
def _tracer_exporting_to(tracking_uri: str) -> Iterator[None]:
    """Point MLflow's process-wide tracer at this store while a trace is written (under the locks).

    `mlflow.set_tracking_uri` also writes MLFLOW_TRACKING_URI into os.environ, for subprocesses to
    inherit; left there, our own settings (and every process started later: `adrag ui`, a test's
    studio) would read it as the user's choice and log to whichever store wrote last. Put it back."""
    import mlflow

    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(tracking_uri)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = before


def _warn_if_failed(future: Future) -> None:
    if (error := future.exception()) is not None:
        logging.getLogger(__name__).warning("an MLflow run could not be logged: %s: %s", type(error).__name__, error)


def _log_trace(client, record: RunRecord, experiment_id: str, run_id: str) -> None:
    steps = sorted(record.steps, key=lambda s: s.start_ns)  # stable: a parent listed first stays first
    inputs = {"run": record.run_name} if record.trace_inputs is None else _jsonable(record.trace_inputs)
    root = client.start_trace(name=record.run_name, span_type=record.span_type, inputs=inputs,
                              tags=record.trace_tags or None, experiment_id=experiment_id, run_id=run_id,
                              start_time_ns=steps[0].start_ns)
    # A span with steps inside it stays open until they have ended; every other span ends at once, as before.
    parents = {s.parent for s in steps if s.parent}
    started: dict[str, str] = {}
    waiting = []
    for step in steps:
        parent_id = started.get(step.parent, root.span_id) if step.parent else root.span_id
        span = client.start_span(name=step.name, trace_id=root.trace_id, parent_id=parent_id,
                                 span_type=step.span_type, inputs=_jsonable(step.inputs), start_time_ns=step.start_ns)
        started[step.name] = span.span_id
        if step.name in parents:
            waiting.append((step, span))
        else:
            client.end_span(trace_id=root.trace_id, span_id=span.span_id, outputs=_jsonable(step.outputs),
                            end_time_ns=step.end_ns)
    for step, span in reversed(waiting):
        client.end_span(trace_id=root.trace_id, span_id=span.span_id, outputs=_jsonable(step.outputs),
                        end_time_ns=step.end_ns)
    client.end_trace(trace_id=root.trace_id, end_time_ns=max(s.end_ns for s in steps),
                     outputs=None if record.trace_outputs is None else _jsonable(record.trace_outputs))


def source_tags(record: RunRecord) -> dict[str, str]:
    """What the MLflow UI shows as a run's source and user. MlflowClient.create_run resolves neither (the
    fluent API would take the process's script: dagster's, adrag's or pytest's, by how the run started),
    so they are named here, the same from the UI, the CLI, a schedule or the studio."""
    return {"mlflow.source.type": "JOB", "mlflow.source.name": f"adrag/{record.experiment}",
            "mlflow.user": _os_user()}


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container's uid with no passwd entry and no USER variable
        return "unknown"


def _param(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= PARAM_LIMIT else text[:PARAM_LIMIT - 1] + "…"


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(values, default=str))
