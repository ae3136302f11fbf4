"""Dagster's standard table metadata for the assets that write tables: `dagster/row_count`,
`dagster/column_schema`, `dagster/uri` and `dagster/table_name`, the keys the asset page shows as the
row count, the Columns tab and the location (the namespaced keys of Dagster's TableMetadataSet and
UriMetadataSet, spelled out: those classes are not exported by `dagster` 1.13)."""

from __future__ import annotations

import dagster as dg
import pyarrow as pa


def table_metadata(uri: str, schema: pa.Schema, row_count: int | None, name: str | None = None) -> dict:
    metadata = {"dagster/uri": uri, "dagster/column_schema": column_schema(schema)}
    if row_count is not None:
        metadata["dagster/row_count"] = row_count
    if name:
        metadata["dagster/table_name"] = name
    return metadata


def column_schema(schema: pa.Schema) -> dg.TableSchema:
    return dg.TableSchema(columns=[
        dg.TableColumn(field.name, str(field.type), constraints=dg.TableColumnConstraints(nullable=field.nullable))
        for field in schema])
