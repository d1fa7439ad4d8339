"""Kaizen's closed-loop demo: the simulated production workload and the before/after report helpers."""
