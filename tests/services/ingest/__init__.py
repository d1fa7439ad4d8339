"""Tests of the ingest service: HTTP intake, worker, client."""
