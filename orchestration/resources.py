"""Resource wiring: every external thing configured from environment variables at run time."""

from __future__ import annotations

import os
from typing import Callable

import dagster as dg

from assets_pkg.campaigns.resources import ImageGeneratorResource
from assets_pkg.embeddings.resources import ClipModel
from assets_pkg.resources import DataStore, MlflowTracking


def build_resources(setting: Callable[[str], str] = dg.EnvVar,
                    number: Callable[[str], int] = dg.EnvVar.int) -> dict:
    """The resources, each field from an environment variable.

    Definitions pass `dg.EnvVar` (read when a run starts); the CLI passes the environment's current
    values to use the same resources outside a run (search, the data layout).
    """
    return {
        "data_store": DataStore(data_dir=setting("ADRAG_DATA_DIR"), images_dir=setting("ADRAG_IMAGES_DIR")),
        "clip": ClipModel(model_name=setting("ADRAG_CLIP_MODEL"), weights=setting("ADRAG_CLIP_WEIGHTS"),
                          device=setting("ADRAG_DEVICE"), max_concurrent=number("ADRAG_GPU_CONCURRENCY")),
        "image_generator": ImageGeneratorResource(replicate_api_token=setting("REPLICATE_API_TOKEN"),
                                                  replicate_base_url=setting("ADRAG_REPLICATE_BASE_URL"),
                                                  max_concurrent=number("ADRAG_IMAGE_API_CONCURRENCY")),
        "mlflow_tracking": MlflowTracking(tracking_uri=setting("MLFLOW_TRACKING_URI"),
                                          ui_url=setting("ADRAG_MLFLOW_UI_URL")),
    }


def resources_from_environment() -> dict:
    return build_resources(os.environ.__getitem__, lambda name: int(os.environ[name]))
