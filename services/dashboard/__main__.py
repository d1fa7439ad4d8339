"""``python -m services.dashboard``: the dashboard page and its JSON API.

Binds ``KAIZEN_DASHBOARD__HOST:KAIZEN_DASHBOARD__PORT`` (127.0.0.1:8090 by default; a container sets
0.0.0.0). Prometheus metrics on ``KAIZEN_METRICS_PORT`` when it is set.
"""

from __future__ import annotations

import uvicorn

from services.dashboard.settings import DashboardSettings
from shared.telemetry import configure_logging, serve_metrics


def main() -> int:
    settings = DashboardSettings()
    configure_logging("dashboard", settings.log_level)
    if settings.metrics_port is not None:
        serve_metrics(settings.metrics_port)
    from services.dashboard.app import create_app  # after logging is configured

    uvicorn.run(
        create_app(settings),
        host=settings.dashboard.host,
        port=settings.dashboard.port,
        log_config=None,
        access_log=False,
        server_header=False,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
