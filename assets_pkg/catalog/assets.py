"""Catalog assets: the image manifest (scan + validate + quarantine) and the Delta mirror."""

import dagster as dg
import pyarrow as pa

from assets_pkg.catalog.manifest import read_manifest, refresh_manifest
from assets_pkg.catalog.mirror import sync_mirror
from assets_pkg.catalog.quarantine import replace_stage_quarantine
from assets_pkg.delta_tables import row_count, table_version
from assets_pkg.layout import MANIFEST_SCHEMA, MIRROR_SCHEMA
from assets_pkg.resources import DataStore
from assets_pkg.storage import uri


@dg.asset(
    group_name="catalog",
    kinds={"deltalake", "pillow"},
    description="Every file in the source image folder: content hash, size, format, size as displayed, labels. "
                "Files that fail validation go to the quarantine table with their reason.",
)
def image_manifest(context: dg.AssetExecutionContext, data_store: DataStore) -> dg.MaterializeResult:
    layout = data_store.layout
    scan, wrote = refresh_manifest(layout.manifest_table, layout.images_dir)
    quarantined = replace_stage_quarantine(layout.quarantine_table, "catalog",
                                           [(r.path, r.image_id, r.reason) for r in scan.rejected])
    for rejected in scan.rejected:
        context.log.warning(f"quarantined {rejected.path!r}: {rejected.reason}")
    return dg.MaterializeResult(metadata={
        "source_folder": dg.MetadataValue.path(str(layout.images_dir)),
        "files": scan.manifest.num_rows,
        "distinct_images": len(set(scan.manifest["image_id"].to_pylist())),
        "probed": scan.probed,
        "reused_unchanged": scan.reused,
        "quarantined": quarantined,
        "table_written": wrote,
        "table_version": table_version(layout.manifest_table),
        **table_metadata(uri(layout.manifest_table), MANIFEST_SCHEMA, scan.manifest.num_rows, "image_manifest"),
    })


@dg.asset(
    group_name="catalog",
    deps=[image_manifest],
    kinds={"deltalake"},
    description="One row per distinct image (sha256): metadata and current paths in the table, bytes in an "
                "append-only table beside it (`image_mirror_bytes`). Incremental: writes the bytes of new images only; "
                "deletes and renames rewrite only the small metadata table; deleted images' bytes are compacted "
                "away once they make up half of the batch they were written in.",
)
def image_mirror(context: dg.AssetExecutionContext, data_store: DataStore) -> dg.MaterializeResult:
    layout = data_store.layout
    changes = sync_mirror(layout.mirror_table, read_manifest(layout.manifest_table), layout.images_dir)
    if changes.changed_on_disk:
        context.log.warning(f"{len(changes.changed_on_disk)} file(s) changed after the scan; "
                            "they are picked up on the next run: " + ", ".join(changes.changed_on_disk[:5]))
    return dg.MaterializeResult(metadata={
        "added": len(changes.added),
        "removed": len(changes.removed),
        "paths_updated": len(changes.moved),
        "unchanged": changes.unchanged,
        "bytes_added": changes.bytes_added,
        "deleted_bytes_dropped": changes.bytes_dropped,
        "live_bytes_rewritten": changes.bytes_rewritten,
        "deleted_bytes_kept": changes.dead_bytes,
        "changed_after_scan": len(changes.changed_on_disk),
        "table_written": changes.wrote,
        "table_version": table_version(layout.mirror_table),
        "bytes_table_version": table_version(layout.mirror_bytes_table),
        **table_metadata(uri(layout.mirror_table), MIRROR_SCHEMA, row_count(layout.mirror_table), "image_mirror"),
    })


def table_metadata(uri: str, schema: pa.Schema, row_count: int | None, name: str | None = None) -> dict:
    """Dagster's standard table metadata, for every asset that writes a table: the keys of its
    TableMetadataSet and UriMetadataSet (not exported by `dagster` 1.13), which the asset page shows as
    the row count, the Columns tab and the location."""
    metadata = {"dagster/uri": uri, "dagster/column_schema": dg.TableSchema(columns=[
        dg.TableColumn(field.name, str(field.type), constraints=dg.TableColumnConstraints(nullable=field.nullable))
        for field in schema])}
    if row_count is not None:
        metadata["dagster/row_count"] = row_count
    if name:
        metadata["dagster/table_name"] = name
    return metadata
