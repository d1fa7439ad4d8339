"""``python -m services.rollout``: the canary controller. ``python -m services.rollout.gateway``: the gateway.

Containers use the same commands (deploy/helm/kaizen/values.yaml: rollout-controller, gateway-*).
"""

from __future__ import annotations

import asyncio

from services.rollout.settings import RolloutSettings
from shared.telemetry import configure_logging, serve_metrics


def main() -> int:
    settings = RolloutSettings()
    configure_logging("rollout", settings.log_level)
    if settings.metrics_port is not None:
        serve_metrics(settings.metrics_port)
    from services.rollout.app import create_app  # after logging is configured

    asyncio.run(create_app(settings).run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
