"""The manifest table: what the last scan found, one row per image file (no bytes)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from deltalake import write_deltalake

from assets_pkg.catalog.scan import MANIFEST_SCHEMA
from assets_pkg.delta_tables import read_table, with_commit_retry


def read_manifest(table: Path) -> pa.Table:
    return read_table(table, MANIFEST_SCHEMA)


def write_manifest_if_changed(table: Path, previous: pa.Table, manifest: pa.Table) -> bool:
    """Replace the manifest when the scan differs from it; an unchanged folder writes nothing."""
    if previous.sort_by("path").equals(manifest.sort_by("path")):
        return False
    with_commit_retry(lambda: write_deltalake(str(table), manifest, mode="overwrite"))
    return True
