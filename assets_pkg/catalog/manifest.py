"""The manifest table: what the last scan found, one row per image file (no bytes)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from deltalake import write_deltalake

from assets_pkg.catalog.scan import ScanResult, scan_folder
from assets_pkg.delta_tables import exclusive, read_table, with_commit_retry
from assets_pkg.layout import MANIFEST_SCHEMA


def read_manifest(table: Path) -> pa.Table:
    return read_table(table, MANIFEST_SCHEMA)


def refresh_manifest(table: Path, images_dir: Path) -> tuple[ScanResult, bool]:
    """Scan the folder and replace the manifest when it differs; an unchanged folder writes nothing."""
    with exclusive(table):
        previous = read_manifest(table)
        scan = scan_folder(images_dir, previous)
        if previous.sort_by("path").equals(scan.manifest.sort_by("path")):
            return scan, False
        with_commit_retry(lambda: write_deltalake(str(table), scan.manifest, mode="overwrite"))
        return scan, True
