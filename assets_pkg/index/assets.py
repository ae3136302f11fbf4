"""Index asset: the LanceDB table of the current model key, in exact sync with the embeddings."""

import dagster as dg

from assets_pkg.catalog.assets import image_mirror, table_metadata
from assets_pkg.catalog.mirror import read_mirror_metadata
from assets_pkg.embeddings.assets import image_embeddings
from assets_pkg.embeddings.resources import ClipModel
from assets_pkg.embeddings.store import read_vectors
from assets_pkg.index.lance_index import index_schema, sync_index
from assets_pkg.resources import DataStore
from assets_pkg.storage import uri


@dg.asset(
    group_name="index",
    deps=[image_embeddings, image_mirror],
    kinds={"lancedb"},
    description="LanceDB vectors of the current model key with path and labels for filtering; IVF_SQ over "
                "cosine distance once large enough (flat search below), with partitions for the table size and "
                "search settings tuned after each build: the fewest probes (and, for vectors its codes cannot "
                "order, the refine factor) reaching recall@10 0.99 on a sample; retrained when the table has "
                "doubled or halved since training or after 8 incremental updates; compacted after changes.",
)
def image_index(context: dg.AssetExecutionContext, data_store: DataStore, clip: ClipModel) -> dg.MaterializeResult:
    layout = data_store.layout
    encoder = clip.encoder()
    vectors = read_vectors(layout.embeddings_table, encoder.model_key)
    changes = sync_index(layout.lance_dir, encoder.model_key, vectors, read_mirror_metadata(layout.mirror_table),
                         encoder.dim)
    metadata = {
        "model_key": encoder.model_key,
        "table": changes.table_name,
        "rows": changes.total,
        "added": changes.added,
        "removed": changes.removed,
        "metadata_updated": changes.updated,
        "lance_version": changes.version,
        "search": "flat (exact)" if changes.ann is None else changes.ann.index_type,
        **table_metadata(f"{uri(layout.lance_dir)}/{changes.table_name}.lance", index_schema(encoder.dim),
                         changes.total, changes.table_name),
    }
    if changes.ann is not None:  # its recall is measured by the index_recall_at_10 check
        metadata.update(num_partitions=changes.ann.num_partitions, nprobes=changes.ann.nprobes,
                        refine_factor=changes.ann.refine_factor, trained_rows=changes.ann.num_rows,
                        ann_trained=changes.ann_built)
        if changes.retrained_from is not None:
            metadata["retrained_from_rows"] = changes.retrained_from
    if changes.ann_dropped:
        metadata["ann_dropped"] = True
    return dg.MaterializeResult(metadata=metadata)
