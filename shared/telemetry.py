"""Structured logs and Prometheus metrics, the same in every service.

``configure_logging`` gives one JSON line per record when stderr is not a terminal (containers, CI,
the local stack's log files) and readable lines on a terminal. ``serve_metrics`` exposes the process's
Prometheus registry on ``/metrics``; the bus adds its message and lag metrics to that registry.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, ClassVar, Self, cast

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server
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


class RegistryMetrics:
    """A service's metrics, created once per Prometheus registry: ``Metrics.of(registry)`` builds them on
    first use and returns the same instance after (several apps in one process share a registry)."""

    _instances: ClassVar[dict[tuple[type, int], Any]] = {}

    @classmethod
    def of(cls, registry: CollectorRegistry = REGISTRY) -> Self:
        key = (cls, id(registry))
        found = RegistryMetrics._instances.get(key)
        if found is None:
            found = RegistryMetrics._instances[key] = cls(registry)
        return cast(Self, found)

    def __init__(self, registry: CollectorRegistry) -> None:
        raise NotImplementedError


class BusMetrics(RegistryMetrics):
    """What the bus measures beyond FastStream's own message metrics: lag and dead letters.

    One instance per registry (``BusMetrics.of(registry)``): several brokers in one process share it,
    told apart by the ``service`` label.
    """

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


HTTP_REQUESTS = "kaizen_http_requests_total"
"""Requests of every HTTP service: the series the Kubernetes prometheus-adapter rule turns into the HPAs'
``kaizen_http_requests_per_second`` (deploy/helm/kaizen/prometheus-adapter.yaml)."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class HttpMetrics(RegistryMetrics):
    """Requests and response times of an HTTP service, one instance per registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            HTTP_REQUESTS.removesuffix("_total"),
            "HTTP requests by service, route and status",
            ["service", "route", "status"],
            registry=registry,
        )
        self.seconds = Histogram(
            "kaizen_http_response_start_seconds",
            "Time from a request's arrival to the start of its response, by service and route",
            ["service", "route"],
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
        )


class RequestMetrics:
    """ASGI middleware counting requests by route and status (a plain ASGI wrapper: no per-request task).

    The route is the request path when the app routed it to an endpoint, else ``unmatched`` (so scans of
    unknown paths cannot blow up the label set).
    """

    def __init__(self, app: ASGIApp, service: str, registry: CollectorRegistry = REGISTRY) -> None:
        self.app = app
        self.service = service
        self.metrics = HttpMetrics.of(registry)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                route = str(scope.get("path", "?")) if scope.get("endpoint") is not None else "unmatched"
                self.metrics.requests.labels(self.service, route, str(message["status"])).inc()
                self.metrics.seconds.labels(self.service, route).observe(time.perf_counter() - started)
            await send(message)

        await self.app(scope, receive, counting_send)
