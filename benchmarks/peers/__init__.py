"""Helpers of benchmarks/cpu_vs_peers.py: peer installs, shared data, timed runs, the report."""
