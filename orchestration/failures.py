"""The run-failure log: one row per failed Dagster run in a Delta table users can read.

`lake/run_failures` holds the run id, the job, the partition (segment), when it failed, which steps
failed and why, with secrets scrubbed from the message. It is what the run-failure sensor writes and
what a person (or `read_failures`) reads to see what broke overnight without opening every run.
No Dagster here: the sensor turns Dagster's events into a `RunFailure`.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Mapping

import pyarrow as pa

from assets_pkg.delta_tables import append, exclusive, read_table, sql_literal
from assets_pkg.layout import FAILURES_SCHEMA

MAX_ERROR_CHARS = 4000
REDACTED = "[redacted]"
# Environment variables whose values are secrets wherever they show up in a message.
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL", re.I)
# Secret-looking text; group 1 is what stays (a header name, a "token=" prefix), the rest is replaced.
SECRET_PATTERNS = [
    re.compile(r"()\br8_[A-Za-z0-9]{16,}"),                                    # Replicate API tokens
    re.compile(r"(?i)(\b(?:bearer|basic|token)\s+)[A-Za-z0-9._~+/=-]{12,}"),   # Authorization headers
    re.compile(r"(://)[^/\s:@]+:[^/\s@]+(?=@)"),                               # user:password@ in URLs
    re.compile(r"(?i)(\b(?:api[_-]?key|token|secret|password)[\"']?\s*[:=]\s*[\"']?)[^\s\"',;&]{6,}"),
]


@dataclass(frozen=True)
class RunFailure:
    run_id: str
    job_name: str
    partition_key: str | None
    failed_at: datetime
    failed_steps: list[str] = field(default_factory=list)
    error: str = ""


def scrub_secrets(text: str, environ: Mapping[str, str] = os.environ) -> str:
    """The text with secret-looking values replaced by [redacted], cut to MAX_ERROR_CHARS."""
    for name, value in environ.items():
        if SECRET_NAME.search(name) and len(value) >= 6:
            text = text.replace(value, REDACTED)
    for pattern in SECRET_PATTERNS:
        text = pattern.sub(lambda match: match.group(1) + REDACTED, text)
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + " [truncated]"


def record_failure(table: Path, failure: RunFailure, environ: Mapping[str, str] = os.environ) -> bool:
    """Append the failure (secrets scrubbed) unless its run is already recorded; True when written."""
    with exclusive(table):
        if read_table(table, FAILURES_SCHEMA, ["run_id"], f"run_id = {sql_literal(failure.run_id)}").num_rows:
            return False
        row = {**asdict(failure), "error": scrub_secrets(failure.error, environ)}
        append(table, pa.Table.from_pylist([row], schema=FAILURES_SCHEMA))
        return True


def read_failures(table: Path, limit: int | None = None) -> list[dict]:
    """Recorded failures, newest first."""
    rows = read_table(table, FAILURES_SCHEMA).sort_by([("failed_at", "descending")]).to_pylist()
    return rows[:limit] if limit is not None else rows
