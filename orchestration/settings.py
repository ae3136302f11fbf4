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
                   "images_dir": "ADRAG_IMAGES_DIR",  # default <data dir>/images; or s3://bucket/prefix
                   # Object storage (docs/deploy.md): the lake and the index may be s3:// URIs too, reached
                   # through the standard AWS variables (empty ones: the libraries' own credential chain).
                   "lake_uri": "ADRAG_LAKE_URI", "index_uri": "ADRAG_INDEX_URI",
                   "s3_endpoint_url": "AWS_ENDPOINT_URL", "s3_region": "AWS_REGION",
                   "s3_access_key_id": "AWS_ACCESS_KEY_ID", "s3_secret_access_key": "AWS_SECRET_ACCESS_KEY",
                   "s3_session_token": "AWS_SESSION_TOKEN", "s3_allow_http": "AWS_ALLOW_HTTP"},
    "clip": {"model_name": "ADRAG_CLIP_MODEL", "weights": "ADRAG_CLIP_WEIGHTS",  # weights: tag, file or "random"
             "device": "ADRAG_DEVICE",
             "max_concurrent": "ADRAG_GPU_CONCURRENCY",  # embedding steps at once on this machine
             # image embedding on Ray: empty = in-process, `local`, `auto`, `host:port` or `ray://host:port`
             "ray_address": "ADRAG_RAY_ADDRESS", "ray_actors": "ADRAG_RAY_ACTORS",
             "ray_cpus_per_actor": "ADRAG_RAY_CPUS_PER_ACTOR"},
    "image_generator": {"replicate_api_token": "REPLICATE_API_TOKEN",  # unset: the local compositor
                        "replicate_model": "ADRAG_REPLICATE_MODEL",
                        "replicate_base_url": "ADRAG_REPLICATE_BASE_URL",  # a proxy or a stand-in
                        "max_concurrent": "ADRAG_IMAGE_API_CONCURRENCY",  # generations in flight in a campaign step
                        # the ad quality bar (CLIP cosines) and the per-segment cost cap of falling back
                        "min_subject_score": "ADRAG_AD_MIN_SUBJECT_SCORE",
                        "min_seed_score": "ADRAG_AD_MIN_SEED_SCORE",
                        "min_brand_score": "ADRAG_AD_MIN_BRAND_SCORE",
                        "max_cost_per_segment_usd": "ADRAG_MAX_COST_PER_SEGMENT"},
    "mlflow_tracking": {"tracking_uri": "MLFLOW_TRACKING_URI",  # unset: SQLite under <data dir>/mlflow
                        "ui_url": "ADRAG_MLFLOW_UI_URL",  # the MLflow UI Dagster links runs to
                        "dagster_ui_url": "ADRAG_DAGSTER_UI_URL",  # the Dagster UI MLflow runs link back to
                        "artifact_root": "ADRAG_MLFLOW_ARTIFACT_ROOT"},  # unset: <data dir>/mlflow/artifacts
    "quarantine_limit": {"max_rate": "ADRAG_MAX_QUARANTINE_RATE"},  # quarantine-rate checks warn above it
    "candidate_diversity": {"mmr_lambda": "ADRAG_MMR_LAMBDA",  # 1 = plain top 3 by score, lower = more varied
                            # a photo this close (cosine) to a better, chosen one never takes a place
                            "near_duplicate_cosine": "ADRAG_NEAR_DUPLICATE_COSINE",
                            "pool": "ADRAG_CANDIDATE_POOL"},  # photos retrieved to choose the 3 from
}
# The vision chat model `adrag ask` answers with: not a resource (no Dagster run uses it), so the CLI reads
# these when asked. field of assets_pkg.answers.vision_model.VisionSettings -> environment variable; the base
# URL and key are the review agent's; the model is ADRAG_VISION_MODEL, else the review agent's ADRAG_LLM_MODEL
# (a server's text model may not take images: Ollama's llama3.2 does not, llama3.2-vision does).
VISION_MODEL_SETTINGS: dict[str, str] = {"base_url": "ADRAG_LLM_BASE_URL", "model": "ADRAG_VISION_MODEL",
                                         "api_key": "ADRAG_LLM_API_KEY"}
VISION_MODEL_FALLBACK = {"model": "ADRAG_LLM_MODEL"}
# Dagster's instance: the dagster.yaml `adrag` writes under DAGSTER_HOME (orchestration/instance_config.py).
# A postgresql+psycopg2:// URL puts run, event log and schedule storage on PostgreSQL; unset: SQLite under DAGSTER_HOME.
DAGSTER_PG_URL = "ADRAG_DAGSTER_PG_URL"
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


def vision_model_values(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The vision model's settings (VISION_MODEL_SETTINGS' fields) from the environment, blank when unset."""
    values = {}
    for field, name in VISION_MODEL_SETTINGS.items():
        fallback = VISION_MODEL_FALLBACK.get(field)
        values[field] = (environ.get(name) or "").strip() or (environ.get(fallback or "") or "").strip()
    return values


def missing_vision_model(values: Mapping[str, str]) -> str:
    """One line for `vision_model_values()` without a base URL or model: what to set, with examples
    for OpenAI, a local Ollama and a local vLLM server."""
    names = VISION_MODEL_SETTINGS
    missing = [] if values.get("base_url") else [names["base_url"]]
    if not values.get("model"):
        missing.append(f"{names['model']} (or {VISION_MODEL_FALLBACK['model']})")
    url, model, key = names["base_url"], names["model"], names["api_key"]
    return (f"no vision model configured: set {' and '.join(missing)} (and {key} if the server wants a key), "
            f"e.g. OpenAI: {url}=https://api.openai.com/v1 {model}=gpt-4o-mini {key}=sk-...; "
            f"Ollama: {url}=http://localhost:11434/v1 {model}=llama3.2-vision; "
            f"vLLM: {url}=http://localhost:8000/v1 {model}=Qwen/Qwen2.5-VL-7B-Instruct")
