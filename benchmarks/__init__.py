"""Benchmarks: scripts that print tables (not timed tests). See benchmarks/efficiency.py."""
