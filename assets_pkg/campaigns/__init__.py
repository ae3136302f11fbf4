"""Campaigns stage: segments, subject proposal, retrieval, contact sheets, generation, campaign tables."""
