"""Ingest throughput benchmark: python -m bench.ingest."""
