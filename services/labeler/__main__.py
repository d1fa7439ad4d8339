"""``python -m services.labeler``: the labeler and the curator (``KAIZEN_LABELER__ROLES`` picks roles).

``python -m services.labeler.curator`` runs the curator role alone. Containers use the same commands.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from services.labeler.settings import LabelerSettings
from shared.telemetry import configure_logging, serve_metrics


def main(roles: Sequence[str] | None = None) -> int:
    settings = LabelerSettings()
    if roles is not None:
        settings.labeler.roles = list(roles)  # type: ignore[arg-type]
    service = "curator" if settings.labeler.roles == ["curator"] else "labeler"
    configure_logging(service, settings.log_level)
    if settings.metrics_port is not None:
        serve_metrics(settings.metrics_port)
    from services.labeler.app import create_app  # after logging is configured

    asyncio.run(create_app(settings).run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
