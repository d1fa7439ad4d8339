"""Structured logs and Prometheus metrics, the same in every service.

``configure_logging`` gives one JSON line per record when stderr is not a terminal (containers, CI,
the local stack's log files) and readable lines on a terminal. ``serve_metrics`` exposes the process's
Prometheus registry on ``/metrics``; the bus adds its message and lag metrics to that registry.
"""

from __future__ import annotations

import logging
import sys
from typing import ClassVar

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, start_http_server
from pythonjsonlogger.json import JsonFormatter

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def configure_logging(service: str, level: str = "INFO", *, json: bool | None = None) -> logging.Logger:
    """Configure the root handler once and return the service's logger (``kaizen.<service>``)."""
    use_json = (not sys.stderr.isatty()) if json is None else json
    handler = logging.StreamHandler(sys.stderr)
    if use_json:
        handler.setFormatter(
            JsonFormatter(
                LOG_FORMAT,
                rename_fields={"asctime": "ts", "levelname": "level", "name": "logger"},
                static_fields={"service": service},
            )
        )
    else:
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logger = logging.getLogger(f"kaizen.{service}")
    logging.getLogger("kaizen").setLevel(level.upper())
    return logger


def serve_metrics(port: int, registry: CollectorRegistry = REGISTRY) -> None:
    """Serve ``/metrics`` on 0.0.0.0:port in a background thread (port 0 picks a free one)."""
    start_http_server(port, registry=registry)


class BusMetrics:
    """What the bus measures beyond FastStream's own message metrics: lag and dead letters.

    One instance per registry (``BusMetrics.of(registry)``): several brokers in one process share it,
    told apart by the ``service`` label.
    """

    _by_registry: ClassVar[dict[int, BusMetrics]] = {}

    @classmethod
    def of(cls, registry: CollectorRegistry = REGISTRY) -> BusMetrics:
        found = cls._by_registry.get(id(registry))
        if found is None:
            found = cls._by_registry[id(registry)] = cls(registry)
        return found

    def __init__(self, registry: CollectorRegistry) -> None:
        self.consumer_lag = Gauge(
            "kaizen_consumer_lag_messages",
            "Messages behind the end of the partition after the last handled message",
            ["service", "topic", "partition", "group"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "kaizen_dead_letters_total",
            "Messages sent to <topic>.dlq, by reason (invalid or exhausted retries)",
            ["service", "topic", "reason"],
            registry=registry,
        )
        self.retries = Counter(
            "kaizen_handler_retries_total",
            "Handler attempts that failed and were retried",
            ["service", "topic"],
            registry=registry,
        )
