"""Index stage: one LanceDB table per model key, kept in exact sync with the embeddings table."""
