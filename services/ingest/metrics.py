"""The ingest service's Prometheus metrics (the bus adds message, latency and lag metrics of its own)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from shared.telemetry import RegistryMetrics

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class IngestMetrics(RegistryMetrics):
    """One instance per registry (``IngestMetrics.of(registry)``), shared by intake and worker."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.spans_received = Counter(
            "kaizen_ingest_spans_received_total", "OTLP spans received", ["endpoint"], registry=registry
        )
        self.spans_accepted = Counter(
            "kaizen_ingest_spans_accepted_total",
            "OTLP spans accepted (durable in Kafka), by what they were",
            ["kind"],
            registry=registry,
        )
        self.spans_rejected = Counter(
            "kaizen_ingest_spans_rejected_total",
            "OTLP spans rejected, by reason",
            ["reason"],
            registry=registry,
        )
        self.feedback = Counter(
            "kaizen_ingest_feedback_total",
            "Feedback and scores received, by outcome (accepted or the rejection reason)",
            ["source", "outcome"],
            registry=registry,
        )
        self.publish_seconds = Histogram(
            "kaizen_ingest_publish_seconds",
            "Time from a request's records handed to Kafka to all acknowledged (acks=all)",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.records = Counter(
            "kaizen_ingest_records_total",
            "Records handled by the worker, by kind and outcome (stored, unconsented, duplicate, invalid...)",
            ["kind", "outcome"],
            registry=registry,
        )
        self.rows = Counter(
            "kaizen_ingest_rows_appended_total",
            "Rows appended to Iceberg, by table",
            ["table"],
            registry=registry,
        )
        self.commit_seconds = Histogram(
            "kaizen_ingest_batch_commit_seconds",
            "Iceberg append (one commit per batch) latency, by table",
            ["table"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.end_to_end_seconds = Histogram(
            "kaizen_ingest_end_to_end_seconds",
            "From a record's intake (its trace.raw / feedback.raw event time) to its announcement's ack",
            ["topic"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.redactions = Counter(
            "kaizen_ingest_redactions_total", "PII occurrences redacted", registry=registry
        )
