"""Resources shared by every stage: where the data lives, and the MLflow store."""

from __future__ import annotations

import os

import dagster as dg

from assets_pkg.layout import DataLayout
from assets_pkg.storage import S3Connection, is_object_uri, refuse_unsafe_rename
from assets_pkg.tracking import MlflowStore, default_tracking_uri


class DataStore(dg.ConfigurableResource):
    """The local "volume": source images, brand image, segments file, and the generated tables.

    The lake (Delta tables), the LanceDB index and the source image folder can each be an `s3://` URI
    on any S3-compatible store (assets_pkg/storage.py); the `s3_*` fields say how to reach it and are
    set from the standard AWS variables. Empty ones are left to the libraries' own credential chain.
    """

    data_dir: str = "data"
    images_dir: str = ""  # default: <data_dir>/images; or s3://bucket/prefix
    brand_image: str = ""  # default: <data_dir>/brand/brand.png
    segments_file: str = ""  # default: <data_dir>/segments.yaml
    lake_uri: str = ""  # default: <data_dir>/lake; or s3://bucket/prefix
    index_uri: str = ""  # default: <data_dir>/lance; or s3://bucket/prefix
    s3_endpoint_url: str = ""  # AWS_ENDPOINT_URL (MinIO, Ceph, R2 ...); empty: AWS
    s3_region: str = ""
    s3_access_key_id: str = ""
    s3_secret_access_key: str = ""
    s3_session_token: str = ""
    s3_allow_http: str = ""  # "true" for an http:// endpoint

    @property
    def connection(self) -> S3Connection:
        return S3Connection.from_settings(
            self.s3_endpoint_url, self.s3_region, self.s3_access_key_id, self.s3_secret_access_key,
            self.s3_session_token, self.s3_allow_http)

    @property
    def layout(self) -> DataLayout:
        remote = [v for v in (self.images_dir, self.lake_uri, self.index_uri) if is_object_uri(v)]
        if remote:  # delta-rs would read it from the environment itself: refuse rather than commit unsafely
            refuse_unsafe_rename(os.environ)
        return DataLayout.under(self.data_dir, self.images_dir or None, self.brand_image or None,
                                self.segments_file or None, self.lake_uri or None, self.index_uri or None,
                                self.connection if remote else None)


class MlflowTracking(dg.ConfigurableResource):
    """MLflow tracking; the default is an embedded SQLite store with artifacts under <data_dir>/mlflow.

    `artifact_root` (e.g. s3://bucket/mlflow) is where experiments this project creates keep their
    artifacts; MLflow's own S3 artifact repository (boto3) reads the standard AWS variables and
    MLFLOW_S3_ENDPOINT_URL for a non-AWS endpoint. Experiments that exist keep the location they were
    created with."""

    tracking_uri: str = ""
    ui_url: str = "http://127.0.0.1:5000"  # the MLflow UI serving this store (`adrag mlflow`); empty: no links
    artifact_root: str = ""  # default: <data_dir>/mlflow/artifacts
    dagster_ui_url: str = "http://127.0.0.1:3000"  # the Dagster UI (`adrag ui`) MLflow runs link back to

    def dagster_run_tags(self, run_id: str) -> dict[str, str]:
        """The Dagster run's id, and a run description (MLflow renders it as Markdown) linking to the run."""
        tags = {"dagster_run_id": run_id}
        if self.dagster_ui_url:
            link = f"{self.dagster_ui_url.rstrip('/')}/runs/{run_id}"
            tags["mlflow.note.content"] = f"Made by Dagster run [{run_id[:8]}]({link})"
        return tags

    def store(self, layout: DataLayout) -> MlflowStore:
        return MlflowStore(
            tracking_uri=self.tracking_uri or default_tracking_uri(layout.mlflow_dir),
            artifact_root=self.artifact_root.strip() or layout.mlflow_dir / "artifacts",
            lock_file=layout.mlflow_dir / ".lock",
            ui_url=self.ui_url,
        )
