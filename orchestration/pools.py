"""Dagster pool limits for the GPU step and the image API, from the same settings as the file-lock slots.

Dagster enforces a pool only once the instance has a limit for it (`dagster instance concurrency
set gpu 1` does the same by hand); `apply_pool_limits` sets `gpu` from ADRAG_GPU_CONCURRENCY and
`image_api` from ADRAG_IMAGE_API_CONCURRENCY so the UI shows and queues them. The file-lock slots
in `assets_pkg.slots` hold the same limits on this machine whether or not a pool has one.
"""

from __future__ import annotations

import os
from typing import Mapping

import dagster as dg

from orchestration.settings import setting

POOL_SETTINGS = {"gpu": "ADRAG_GPU_CONCURRENCY", "image_api": "ADRAG_IMAGE_API_CONCURRENCY"}


def pool_limits(environ: Mapping[str, str] = os.environ) -> dict[str, int]:
    limits = {}
    for pool, name in POOL_SETTINGS.items():
        value = setting(name, environ)
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"{name}={value!r}: expected a whole number of at least 1")
        limits[pool] = int(value)
    return limits


def apply_pool_limits(instance: dg.DagsterInstance, environ: Mapping[str, str] = os.environ) -> dict[str, int]:
    """Set each pool's limit on the instance (idempotent); returns the limits set."""
    limits = pool_limits(environ)
    for pool, limit in limits.items():
        instance.event_log_storage.set_concurrency_slots(pool, limit)
    return limits
