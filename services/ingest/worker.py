"""Entry point of the ingest worker, the same in a container and here: ``python -m services.ingest.worker``.

Runs the FastStream app of ``services.ingest.app`` (equivalently: ``faststream run
services.ingest.app:app``) on uvloop when it is installed.
"""

from __future__ import annotations

import asyncio

from services.ingest.settings import IngestSettings
from shared.telemetry import configure_logging


def main() -> None:
    settings = IngestSettings()
    configure_logging("ingest-worker", settings.log_level)
    from services.ingest.app import app
    from services.ingest.runtime import WORKER_YOUNG_THRESHOLD, tune_gc

    tune_gc(WORKER_YOUNG_THRESHOLD)

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        asyncio.run(app.run())
    else:
        uvloop.run(app.run())


if __name__ == "__main__":
    main()
