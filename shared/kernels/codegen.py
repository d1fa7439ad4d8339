"""Regenerates the committed protobuf stubs in ``shared/kernels/_proto`` from the kernel service's proto.

The stubs are committed so that the kernel client needs no build step; ``tests/kernels/test_stubs.py``
fails when they drift from ``kernels/proto``. After editing the proto, run::

    python -m shared.kernels.codegen

Needs grpcio-tools (a development dependency).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROTO_ROOT = REPO / "kernels" / "proto"
PROTO = "kaizen/kernels/v1/kernels.proto"
STUBS = Path(__file__).resolve().parent / "_proto"
GENERATED = ("kernels_pb2.py", "kernels_pb2.pyi")


class CodegenError(RuntimeError):
    """protoc failed on the proto."""


def generate(out_dir: Path) -> list[Path]:
    """Writes the stubs for the proto into ``out_dir`` and returns their paths."""
    from grpc_tools import protoc  # a development dependency, only needed here

    with tempfile.TemporaryDirectory() as tmp:
        status = protoc.main(
            ["grpc_tools.protoc", f"-I{PROTO_ROOT}", f"--python_out={tmp}", f"--pyi_out={tmp}", PROTO]
        )
        if status != 0:
            raise CodegenError(f"protoc exited with {status} on {PROTO_ROOT / PROTO}")
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for name in GENERATED:
            target = out_dir / name
            shutil.copyfile(Path(tmp) / Path(PROTO).parent / name, target)
            written.append(target)
    return written


def main() -> int:
    for path in generate(STUBS):
        print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
