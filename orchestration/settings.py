"""Which environment variable sets which resource field, and the two settings read when the code loads.

Defaults are stated once, on the resource fields (which take them from the domain modules): a
variable that is unset or blank leaves its field at that default. A variable that is set is read
through `dg.EnvVar` when a run starts, so a secret (REPLICATE_API_TOKEN) never becomes a literal in
the run's configuration. (No `.env` file: `dagster dev` lets a `.env` override the environment,
which would undo `adrag --data-dir ... ui`.)
"""

from __future__ import annotations

import os
from typing import Mapping

# resource key -> {field -> environment variable}
RESOURCE_SETTINGS: dict[str, dict[str, str]] = {
    "data_store": {"data_dir": "ADRAG_DATA_DIR",  # images/, brand/, segments.yaml and the generated tables
                   "images_dir": "ADRAG_IMAGES_DIR"},  # default <data dir>/images
    "clip": {"model_name": "ADRAG_CLIP_MODEL", "weights": "ADRAG_CLIP_WEIGHTS",  # weights: tag, file or "random"
             "device": "ADRAG_DEVICE",
             "max_concurrent": "ADRAG_GPU_CONCURRENCY"},  # embedding steps at once on this machine
    "image_generator": {"replicate_api_token": "REPLICATE_API_TOKEN",  # unset: the local compositor
                        "replicate_model": "ADRAG_REPLICATE_MODEL",
                        "replicate_base_url": "ADRAG_REPLICATE_BASE_URL",  # a proxy or a stand-in
                        "max_concurrent": "ADRAG_IMAGE_API_CONCURRENCY"},  # generations in flight in a campaign step
    "mlflow_tracking": {"tracking_uri": "MLFLOW_TRACKING_URI",  # unset: SQLite under <data dir>/mlflow
                        "ui_url": "ADRAG_MLFLOW_UI_URL"},  # the MLflow UI Dagster links runs to
    "quarantine_limit": {"max_rate": "ADRAG_MAX_QUARANTINE_RATE"},  # quarantine-rate checks warn above it
    "candidate_diversity": {"mmr_lambda": "ADRAG_MMR_LAMBDA",  # 1 = plain top 3 by score, lower = more varied
                            # a photo this close (cosine) to a better, chosen one never takes a place
                            "near_duplicate_cosine": "ADRAG_NEAR_DUPLICATE_COSINE",
                            "pool": "ADRAG_CANDIDATE_POOL"},  # photos retrieved to choose the 3 from
}
# What Dagster needs when it loads the code location (a schedule's cron cannot be a run-time EnvVar).
LOCATION_DEFAULTS = {
    "ADRAG_REFRESH_CRON": "0 2 * * *",  # when the nightly refresh_catalog schedule runs
    "ADRAG_REFRESH_TIMEZONE": "UTC",  # its IANA timezone, e.g. Europe/Berlin
}


def is_set(name: str, environ: Mapping[str, str] = os.environ) -> bool:
    return bool(environ.get(name, "").strip())


def location_setting(name: str, environ: Mapping[str, str] = os.environ) -> str:
    """A load-time setting: the environment's value when set and not blank, else its default.
    Call it when the code location loads, never at import time."""
    return environ[name].strip() if is_set(name, environ) else LOCATION_DEFAULTS[name]
