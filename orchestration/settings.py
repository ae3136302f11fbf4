"""Environment variables the resources read (through dg.EnvVar, at run time), and their defaults.

`dg.EnvVar` fails on an unset variable, so every setting has a default here; the CLI applies them
with `setdefault` (a value in the environment always wins) before it runs anything or starts
`dagster dev`, whose code server and runs inherit them. (No `.env` file: `dagster dev` lets a
`.env` override the environment, which would undo `adrag --data-dir ... ui`.)
"""

from __future__ import annotations

import os
from typing import Mapping, MutableMapping

DEFAULTS = {
    "ADRAG_DATA_DIR": "data",  # the local volume: images/, brand/, segments.yaml and generated tables
    "ADRAG_IMAGES_DIR": "",  # empty: <data dir>/images
    "ADRAG_CLIP_MODEL": "ViT-B-32",
    "ADRAG_CLIP_WEIGHTS": "laion2b_s34b_b79k",  # a pretrained tag, a checkpoint file path, or "random"
    "ADRAG_DEVICE": "auto",
    "REPLICATE_API_TOKEN": "",  # empty: the local compositor makes the ads
    "ADRAG_REPLICATE_BASE_URL": "",  # empty: Replicate's API; else a proxy or a stand-in
    "MLFLOW_TRACKING_URI": "",  # empty: SQLite store under <data dir>/mlflow
    "ADRAG_MLFLOW_UI_URL": "http://127.0.0.1:5000",  # the MLflow UI (`adrag mlflow`) Dagster links runs to
    "ADRAG_GPU_CONCURRENCY": "1",  # embedding steps running at once on this machine, across all runs
    "ADRAG_IMAGE_API_CONCURRENCY": "4",  # generations in flight at once on this machine, across all runs
    "ADRAG_REFRESH_CRON": "0 2 * * *",  # when the nightly refresh_catalog schedule runs (read when the code loads)
    "ADRAG_REFRESH_TIMEZONE": "UTC",  # the schedule's IANA timezone, e.g. Europe/Berlin
    "ADRAG_MAX_QUARANTINE_RATE": "0.05",  # quarantine-rate checks warn above this share of the folder's files
}
OFFLINE = {"ADRAG_CLIP_MODEL": "adrag-tiny-clip", "ADRAG_CLIP_WEIGHTS": "random"}


def apply_defaults(environ: MutableMapping[str, str] = os.environ) -> None:
    for name, value in DEFAULTS.items():
        environ.setdefault(name, value)


def setting(name: str, environ: Mapping[str, str] = os.environ) -> str:
    """A setting's value now: the environment's when set and not blank, else the default.

    For what Dagster needs when it loads the code location (the schedule's cron and timezone),
    which no `dg.EnvVar` can supply. Call it at load time, never at import time.
    """
    value = environ.get(name, "").strip()
    return value or DEFAULTS[name]

