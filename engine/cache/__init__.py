"""Memoized pipeline stages: the content-addressed stage cache, its statistics and model checkpoints."""
