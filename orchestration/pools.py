"""Dagster pool limits for the GPU step and the campaign step, set on the instance by `adrag ui` (and,
on a PostgreSQL instance, by every `adrag` command that opens it, for pools without a limit yet).

Dagster enforces a pool only once the instance has a limit for it (`dagster instance concurrency
set gpu 1` does the same by hand). `gpu`: embedding steps at once (ADRAG_GPU_CONCURRENCY).
`image_api`: one campaign step at a time; inside it, ADRAG_IMAGE_API_CONCURRENCY worker threads
are the generations in flight, so one step at a time makes that the instance's limit.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from typing import Mapping

import dagster as dg

from assets_pkg.database_urls import advisory_lock, is_postgres
from orchestration.resources import build_resources
from orchestration.settings import DAGSTER_PG_URL, RESOURCE_SETTINGS

CAMPAIGN_STEPS_AT_ONCE = 1
POOL_LIMITS_LOCK_KEY = 0x616472616701  # the advisory lock pool limits are first set under ("adrag\1")


def pool_limits(environ: Mapping[str, str] = os.environ) -> dict[str, int]:
    resources = build_resources(environ=environ, read_now=True)
    for key in ("clip", "image_generator"):
        limit = resources[key].max_concurrent
        if limit < 1:
            name = RESOURCE_SETTINGS[key]["max_concurrent"]
            raise ValueError(f"{name}={environ.get(name, limit)!r}: expected a whole number of at least 1")
    return {"gpu": resources["clip"].max_concurrent, "image_api": CAMPAIGN_STEPS_AT_ONCE}


def apply_pool_limits(instance: dg.DagsterInstance, environ: Mapping[str, str] = os.environ) -> dict[str, int]:
    """Set each pool's limit on the instance (idempotent); returns the limits set."""
    limits = pool_limits(environ)
    for pool, limit in limits.items():
        instance.event_log_storage.set_concurrency_slots(pool, limit)
    return limits


def ensure_pool_limits(instance: dg.DagsterInstance, environ: Mapping[str, str] = os.environ) -> dict[str, int]:
    """Set the limit of each pool that has none of its own yet (none, or only the instance's default);
    returns the limits set. For a shared instance (PostgreSQL): a limit someone set stays as it is.

    On PostgreSQL this runs under an advisory lock: Dagster inserts a pool's first limit row without
    guarding against a concurrent insert, so two processes starting on a fresh instance would collide."""
    url = environ.get(DAGSTER_PG_URL, "").strip()
    with advisory_lock(url, POOL_LIMITS_LOCK_KEY) if is_postgres(url) else nullcontext():
        storage = instance.event_log_storage
        own = {limit.name for limit in storage.get_pool_limits() if not limit.from_default}
        limits = {pool: limit for pool, limit in pool_limits(environ).items() if pool not in own}
        for pool, limit in limits.items():
            storage.set_concurrency_slots(pool, limit)
    return limits
