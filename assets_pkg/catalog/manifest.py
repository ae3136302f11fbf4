"""The manifest table: what the last scan found, one row per image file (no bytes)."""

from __future__ import annotations

import pyarrow as pa
from deltalake import write_deltalake

from assets_pkg.catalog.object_source import scan_objects
from assets_pkg.catalog.scan import ScanResult, scan_folder
from assets_pkg.delta_tables import exclusive, read_table, with_commit_retry
from assets_pkg.layout import MANIFEST_SCHEMA
from assets_pkg.storage import Location, ObjectLocation, delta_options, uri


def read_manifest(table: Location) -> pa.Table:
    return read_table(table, MANIFEST_SCHEMA)


def scan_source(images_dir: Location, previous: pa.Table | None = None) -> ScanResult:
    """Scan the source folder: a local folder, or a bucket prefix on object storage."""
    if isinstance(images_dir, ObjectLocation):
        return scan_objects(images_dir, previous)
    return scan_folder(images_dir, previous)


def refresh_manifest(table: Location, images_dir: Location) -> tuple[ScanResult, bool]:
    """Scan the folder and replace the manifest when it differs; an unchanged folder writes nothing."""
    with exclusive(table):
        previous = read_manifest(table)
        scan = scan_source(images_dir, previous)
        if previous.sort_by("path").equals(scan.manifest.sort_by("path")):
            return scan, False
        # schema_mode: a manifest written before a column was added (etag) takes the current schema.
        with_commit_retry(lambda: write_deltalake(uri(table), scan.manifest, mode="overwrite", schema_mode="overwrite",
                                                  storage_options=delta_options(table)))
        return scan, True
