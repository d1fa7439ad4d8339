"""`make demo` (``python -m shared.demo``): the closed loop, run by the demo's driver.

Kept as the Makefile's historical entry point; the driver is ``python -m demo`` (``demo/__main__.py``):
the local stack, the kernel service and every service as processes, simulated users through the
gateway until a new champion serves 100%, then the before/after table and the HTML report.
"""

from __future__ import annotations

import sys


def main() -> int:
    import typer

    from demo.__main__ import main as demo_main

    sys.argv = [sys.argv[0], *sys.argv[1:]]
    typer.run(demo_main)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
