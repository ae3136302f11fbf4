"""The Dagster instance's `dagster.yaml`, written by `adrag` from its settings.

Always: telemetry off, freshness policies evaluated by the daemon.
Unset ADRAG_DAGSTER_PG_URL: Dagster's defaults (SQLite files under DAGSTER_HOME).
Set (a postgresql:// URL): run, event log and schedule storage on PostgreSQL (dagster-postgres), so
machines and processes that share the database share one instance; the queued run coordinator
(one `refresh_catalog` run at a time, `JOB_TAG`); the pools held per step (`gpu`, `image_api`,
`orchestration.pools`). The file names the variable, not the URL (`postgres_url: {env: ...}`):
Dagster reads it from the environment when it opens the instance, so no password lands in a file.

A file adrag wrote starts with `MARKER` and is rewritten when the settings change; a file without it
is the user's and is left alone.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from orchestration.settings import DAGSTER_PG_URL, is_set

JOB_TAG = "adrag/job"  # orchestration.jobs puts it on every refresh_catalog run (this module imports no Dagster)

MARKER = ("# adrag writes this file from its settings (orchestration/instance_config.py) "
          "and rewrites it when they change.")
KEEP = "# Delete the line above to keep your own edits: adrag then leaves the file alone."
TELEMETRY_OFF = "telemetry:\n  enabled: false\n"  # all adrag wrote before the marker: also its own
# The daemon evaluates freshness policies (the index's: orchestration/schedules.py); off by default in Dagster 1.13.
FRESHNESS_ON = "freshness:\n  enabled: true\n"
MAX_CONCURRENT_RUNS = 10  # Dagster's default; runs hold pool slots for their GPU and image-API steps

POSTGRES = f"""\
# Run, event log and schedule storage on PostgreSQL. Dagster reads the URL from the environment
# when it opens the instance: the password is in no file.
storage:
  postgres:
    postgres_url:
      env: {DAGSTER_PG_URL}
# Runs launched by the daemon (UI, schedule, sensors, backfills) queue here; `adrag` CLI runs and the
# studio's runs execute in their own process and skip the queue, but claim the same pool slots.
run_coordinator:
  module: dagster
  class: QueuedRunCoordinator
concurrency:
  runs:
    max_concurrent_runs: {MAX_CONCURRENT_RUNS}
    tag_concurrency_limits:
      - key: {JOB_TAG}
        value: refresh_catalog
        limit: 1  # the sensor, the schedule and a person may all ask for a refresh: one at a time
  pools:
    granularity: op  # a step waits for a slot of its pool, not the whole run
    # The pools' limits live in the database: gpu (embedding steps at once across every machine on this
    # instance) and image_api (campaign steps, each with ADRAG_IMAGE_API_CONCURRENCY generations in
    # flight). `adrag` sets a pool that has no limit yet from its settings (ADRAG_GPU_CONCURRENCY, 1);
    # change one for all machines with `dagster instance concurrency set gpu 4`. No default_limit:
    # Dagster 1.13 creates a default-limited pool racily on PostgreSQL (two first steps at once fail).
"""


def uses_postgres(environ: Mapping[str, str] = os.environ) -> bool:
    return is_set(DAGSTER_PG_URL, environ)


def instance_yaml(environ: Mapping[str, str] = os.environ) -> str:
    """The dagster.yaml for the settings in `environ` (never a URL or password from it)."""
    body = TELEMETRY_OFF + FRESHNESS_ON + (POSTGRES if uses_postgres(environ) else "")
    return f"{MARKER}\n{KEEP}\n{body}"


def write_instance_yaml(home: Path, environ: Mapping[str, str] = os.environ) -> str | None:
    """Write `home/dagster.yaml` unless it is the user's; returns a warning when the user's own file
    ignores a setting adrag would apply (a Postgres URL), else None."""
    path = home / "dagster.yaml"
    wanted = instance_yaml(environ)
    current = path.read_text() if path.exists() else None
    if current is None or current == TELEMETRY_OFF or current.startswith(MARKER):
        if current != wanted:
            path.write_text(wanted)
        return None
    if uses_postgres(environ) and "postgres" not in current:
        return (f"{path} is your own (no adrag marker line) and has no postgres storage: {DAGSTER_PG_URL} is "
                f"not used by it; add the storage block from docs/deploy.md or delete the file")
    return None
