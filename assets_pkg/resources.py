"""Resources shared by every stage: where the data lives, and the MLflow store."""

from __future__ import annotations

import dagster as dg

from assets_pkg.layout import DataLayout
from assets_pkg.tracking import MlflowStore, default_tracking_uri


class DataStore(dg.ConfigurableResource):
    """The local "volume": source images, brand image, segments file, and the generated tables."""

    data_dir: str = "data"
    images_dir: str = ""  # default: <data_dir>/images
    brand_image: str = ""  # default: <data_dir>/brand/brand.png
    segments_file: str = ""  # default: <data_dir>/segments.yaml

    @property
    def layout(self) -> DataLayout:
        return DataLayout.under(self.data_dir, self.images_dir or None, self.brand_image or None,
                                self.segments_file or None)


class MlflowTracking(dg.ConfigurableResource):
    """MLflow tracking; the default is an embedded SQLite store with artifacts under <data_dir>/mlflow."""

    tracking_uri: str = ""
    ui_url: str = "http://127.0.0.1:5000"  # the MLflow UI serving this store (`adrag mlflow`); empty: no links
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
            artifact_root=layout.mlflow_dir / "artifacts",
            lock_file=layout.mlflow_dir / ".lock",
            ui_url=self.ui_url,
        )
