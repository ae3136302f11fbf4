"""Resource wiring: every external thing configured from the environment (`settings.RESOURCE_SETTINGS`)."""

from __future__ import annotations

import os
from typing import Mapping

import dagster as dg

from assets_pkg.campaigns.resources import CandidateDiversity, ImageGeneratorResource
from assets_pkg.catalog.resources import QuarantineLimit
from assets_pkg.embeddings.resources import ClipModel
from assets_pkg.resources import DataStore, MlflowTracking
from orchestration.settings import RESOURCE_SETTINGS, is_set

RESOURCE_TYPES = {"data_store": DataStore, "clip": ClipModel, "image_generator": ImageGeneratorResource,
                  "mlflow_tracking": MlflowTracking, "quarantine_limit": QuarantineLimit,
                  "candidate_diversity": CandidateDiversity}


def build_resources(overrides: Mapping[str, str] | None = None, environ: Mapping[str, str] = os.environ,
                    read_now: bool = False) -> dict[str, dg.ConfigurableResource]:
    """The resources. A field takes, in order: `overrides[variable]` (the CLI's flags), the variable
    from `environ` (through `dg.EnvVar`, read when a run starts; its value now when `read_now`, for
    use outside a run), else the field's default."""
    overrides = overrides or {}
    resources = {}
    for key, fields in RESOURCE_SETTINGS.items():
        resource_type = RESOURCE_TYPES[key]
        values = {}
        for field, name in fields.items():
            is_int = resource_type.model_fields[field].annotation in (int, "int")
            if name in overrides:
                values[field] = int(overrides[name]) if is_int else overrides[name]
            elif is_set(name, environ):
                if read_now:
                    values[field] = int(environ[name]) if is_int else environ[name]
                else:
                    values[field] = dg.EnvVar.int(name) if is_int else dg.EnvVar(name)
        resources[key] = resource_type(**values)
    return resources
