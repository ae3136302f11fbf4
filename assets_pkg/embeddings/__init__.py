"""Embeddings stage: open_clip loading, decoding, batched encoding, the embeddings Delta table."""
