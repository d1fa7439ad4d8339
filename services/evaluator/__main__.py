"""Entry point of the evaluator, the same in a container and here: ``python -m services.evaluator``.

It consumes ``checkpoint.trained`` (group ``evaluator``) and runs the evaluation worker in the same
process. Approvals: ``python -m services.evaluator.approve <version>``.
"""

from __future__ import annotations

import asyncio

from services.evaluator.settings import EvaluatorSettings
from shared.telemetry import configure_logging


def main() -> None:
    settings = EvaluatorSettings()
    configure_logging("evaluator", settings.log_level)
    from services.evaluator.app import create_app  # after logging is configured

    asyncio.run(create_app(settings).run())


if __name__ == "__main__":
    main()
