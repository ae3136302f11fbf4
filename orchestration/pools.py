"""Dagster pool limits for the GPU step and the campaign step, set on the instance by `adrag ui`.

Dagster enforces a pool only once the instance has a limit for it (`dagster instance concurrency
set gpu 1` does the same by hand). `gpu`: embedding steps at once (ADRAG_GPU_CONCURRENCY).
`image_api`: one campaign step at a time; inside it, ADRAG_IMAGE_API_CONCURRENCY worker threads
are the generations in flight, so one step at a time makes that the instance's limit.
"""

from __future__ import annotations

import os
from typing import Mapping

import dagster as dg

from orchestration.resources import build_resources
from orchestration.settings import RESOURCE_SETTINGS

CAMPAIGN_STEPS_AT_ONCE = 1


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
