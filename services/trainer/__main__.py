"""Entry point of the trainer's consumer, the same in a container and here: ``python -m services.trainer``.

The workers that train run as ``python -m services.trainer.worker``; one dataset's job can also be run
to its end with ``python -m services.trainer.job --dataset-id <id>``.
"""

from __future__ import annotations

import asyncio

from services.trainer.app import create_app
from services.trainer.settings import TrainerSettings
from shared.telemetry import configure_logging


def main() -> None:
    settings = TrainerSettings()
    configure_logging("trainer", settings.log_level)
    asyncio.run(create_app(settings).run())


if __name__ == "__main__":
    main()
