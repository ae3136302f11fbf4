"""Index asset: the LanceDB table of the current model key, in exact sync with the embeddings."""

import dagster as dg

from assets_pkg.catalog.assets import image_mirror
from assets_pkg.catalog.mirror import read_mirror_metadata
from assets_pkg.embeddings.assets import image_embeddings
from assets_pkg.embeddings.resources import ClipModel
from assets_pkg.embeddings.store import read_vectors
from assets_pkg.index.lance_index import sync_index
from assets_pkg.resources import DataStore

@dg.asset(
    group_name="index",
    deps=[image_embeddings, image_mirror],
    kinds={"lancedb"},
    description="LanceDB vectors of the current model key with path and labels for filtering; IVF_PQ over "
                "cosine distance once large enough (flat search below), compacted after changes.",
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
        "search": "flat (exact)" if changes.ann is None else "IVF_PQ",
    }
    if changes.ann is not None:  # its recall is measured by the index_recall_at_10 check
        metadata.update(num_partitions=changes.ann.num_partitions, num_sub_vectors=changes.ann.num_sub_vectors,
                        nprobes=changes.ann.nprobes, refine_factor=changes.ann.refine_factor,
                        ann_rebuilt=changes.ann_built)
    return dg.MaterializeResult(metadata=metadata)
