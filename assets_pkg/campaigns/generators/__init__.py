"""Image generators: turn a seed photo, a brand image and a prompt into an ad PNG (local compositor, Replicate)."""
