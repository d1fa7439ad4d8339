"""Entry point of the HTTP intake, the same in a container and here: ``python -m services.ingest.http``.

Binds ``KAIZEN_INGEST__HOST:KAIZEN_INGEST__PORT`` (127.0.0.1:4318 by default; the image sets 0.0.0.0)
with ``KAIZEN_INGEST__HTTP_WORKERS`` uvicorn processes.
"""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from services.ingest.runtime import tune_gc
from services.ingest.settings import IngestSettings
from shared.telemetry import configure_logging


def create_tuned_app() -> FastAPI:
    """The app for one of several uvicorn worker processes (each reads its settings from the environment)."""
    from services.ingest.api.main import create_app

    app = create_app()
    tune_gc()
    return app


def main() -> None:
    settings = IngestSettings()
    configure_logging("ingest-http", settings.log_level)
    host, port = settings.ingest.host, settings.ingest.port
    if settings.ingest.http_workers > 1:
        uvicorn.run(
            "services.ingest.http:create_tuned_app",
            factory=True,
            workers=settings.ingest.http_workers,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            server_header=False,
        )
    else:
        from services.ingest.api.main import create_app

        app = create_app(settings)
        tune_gc()
        uvicorn.run(app, host=host, port=port, log_config=None, access_log=False, server_header=False)


if __name__ == "__main__":
    main()
