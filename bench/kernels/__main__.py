"""Benchmark of the kernel ops, printed as one table.

For each op at several sizes it times, taking the median (p50) of many runs:

- Rust compute: the op alone inside the server (the Bench RPC times it there: no gRPC, no wire decoding
  or encoding), on the server's compute threads;
- round trip: the same op through the ``grpc`` backend, the way the trainer calls it (tensor conversion,
  gRPC over loopback, decoding);
- torch: the same op through the in-process ``torch`` backend (TRL's formulas, autograd for gradients,
  ``torch.optim`` for the steps), with 1 thread and with all threads.

The request each Rust measurement times is the one the grpc backend sends, captured, so all four
columns compute the same outputs. Ratios below 1 mean Rust (or the round trip) is faster.

    python -m bench.kernels               # float32, about a minute
    python -m bench.kernels --dtype float64 --seconds 0.1
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from google.protobuf.message import Message

from shared.kernels._proto import kernels_pb2 as pb
from shared.kernels.client import KernelClient
from shared.kernels.grpc_backend import GrpcBackend
from shared.kernels.local import LocalKernelServer, build_kernels
from shared.kernels.torch_backend import TorchBackend

BENCH_FIELDS = {
    "Softmax": "softmax",
    "LogSoftmax": "log_softmax",
    "CrossEntropy": "cross_entropy",
    "SelectiveLogSoftmax": "selective_log_softmax",
    "DpoLoss": "dpo_loss",
    "GroupAdvantages": "group_advantages",
    "GrpoLoss": "grpo_loss",
    "KlK3": "kl_k3",
    "AdamWStep": "adamw_step",
    "SgdStep": "sgd_step",
}


@dataclass(frozen=True)
class Case:
    op: str
    """The backend method."""
    size: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


def cases(dtype: torch.dtype) -> list[Case]:
    g = torch.Generator().manual_seed(0)

    def randn(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)

    out: list[Case] = []
    for rows, vocab in ((8, 4096), (8, 49152), (32, 49152)):
        size = f"{rows}x{vocab}"
        logits = randn(rows, vocab, scale=3.0)
        labels = torch.randint(0, vocab, (rows,), generator=g)
        out.append(Case("softmax", size, (logits,), {}))
        out.append(Case("log_softmax", size, (logits,), {}))
        out.append(Case("cross_entropy", size, (logits, labels), {}))
        out.append(Case("selective_log_softmax", size, (logits, labels, randn(rows)), {}))
    for pairs in (64, 1024, 16384):
        logps = [randn(pairs, scale=20.0) - 100 for _ in range(4)]
        out.append(Case("dpo_loss", f"{pairs} pairs", tuple(logps), {"beta": 0.1}))
    for n, group in ((64, 8), (1024, 16), (16384, 16)):
        out.append(Case("group_advantages", f"{n}/{group}", (randn(n),), {"num_generations": group}))
    for batch in (8, 64, 256):
        logps = -randn(batch, 512).abs()
        kwargs = {
            "old_per_token_logps": logps + randn(batch, 512, scale=0.1),
            "ref_per_token_logps": logps + randn(batch, 512, scale=0.1),
            "beta": 0.04,
            "epsilon_high": 0.28,
        }
        mask = (torch.rand(batch, 512, generator=g) < 0.9).to(dtype)
        out.append(Case("grpo_loss", f"{batch}x512", (logps, randn(batch), mask), kwargs))
    for tokens in (64 * 512, 256 * 512, 1024 * 512):
        logps = -randn(tokens).abs()
        out.append(Case("kl_k3", f"{tokens}", (logps, logps + randn(tokens, scale=0.1), randn(tokens)), {}))
    for n in (10_000, 100_000, 1_000_000):
        params, grads = randn(n), randn(n, scale=0.01)
        out.append(Case("adamw_step", f"{n}", (params, grads), {}))
        out.append(Case("sgd_step", f"{n}", (params, grads), {"momentum": 0.9, "lr": 0.01}))
    return out


class _Captured(Exception):
    def __init__(self, method: str, request: Message) -> None:
        super().__init__(method)
        self.method = method
        self.request = request


class _CapturingClient(KernelClient):
    """Records the request the grpc backend would send, instead of sending it."""

    def call(self, method: str, request: Message, response_type: Any) -> Any:
        raise _Captured(method, request)


def bench_request(case: Case) -> pb.BenchRequest:
    backend = GrpcBackend(_CapturingClient("127.0.0.1:1"))
    try:
        getattr(backend, case.op)(*case.args, **case.kwargs)
    except _Captured as captured:
        request = pb.BenchRequest()
        getattr(request, BENCH_FIELDS[captured.method]).CopyFrom(captured.request)
        return request
    finally:
        backend.close()
    raise RuntimeError(f"{case.op} sent no request")


ROUNDS = 5
"""Each measurement is split into rounds that alternate between the four columns, so a burst of load
from elsewhere on the machine does not land on one column only."""


def runs_for(fn: Callable[[], object], seconds: float, limit: int = 5000) -> int:
    """How many runs of ``fn`` fill about ``seconds`` (after one warm-up run)."""
    fn()
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-7)
    return int(min(max(seconds / once, 3), limit))


def samples(fn: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def rust_samples(client: KernelClient, request: pb.BenchRequest, runs: int) -> list[float]:
    request.iterations, request.warmup = runs, 1
    return list(client.call("Bench", request, pb.BenchResponse).seconds)


def rust_runs_for(client: KernelClient, request: pb.BenchRequest, seconds: float) -> int:
    probe = rust_samples(client, request, 3)
    return int(min(max(seconds / max(statistics.median(probe), 1e-8), 3), 100_000))


def measure(
    client: KernelClient, grpc_backend: GrpcBackend, torch_backend: TorchBackend, case: Case, seconds: float
) -> tuple[float, float, float, float]:
    """p50 seconds of: Rust compute, round trip, torch with 1 thread, torch with all threads."""
    all_threads = os.cpu_count() or 1
    request = bench_request(case)
    per_round = seconds / ROUNDS

    def trip() -> object:
        return getattr(grpc_backend, case.op)(*case.args, **case.kwargs)

    def local() -> object:
        return getattr(torch_backend, case.op)(*case.args, **case.kwargs)

    rust_runs = rust_runs_for(client, request, per_round)
    trip_runs = runs_for(trip, per_round)
    torch.set_num_threads(1)
    one_runs = runs_for(local, per_round)
    torch.set_num_threads(all_threads)
    many_runs = runs_for(local, per_round)
    columns: list[list[float]] = [[], [], [], []]
    for _ in range(ROUNDS):
        columns[0] += rust_samples(client, request, rust_runs)
        columns[1] += samples(trip, trip_runs)
        torch.set_num_threads(1)
        columns[2] += samples(local, one_runs)
        torch.set_num_threads(all_threads)
        columns[3] += samples(local, many_runs)
    rust, round_trip, one, many = (statistics.median(column) for column in columns)
    return rust, round_trip, one, many


def fmt_ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.4f}" if ms < 0.1 else f"{ms:.3f}" if ms < 10 else f"{ms:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.kernels", description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--seconds", type=float, default=0.5, help="time spent per measurement (all rounds)")
    parser.add_argument("--ops", default="", help="comma-separated ops to run (default: all)")
    args = parser.parse_args(argv)
    dtype = getattr(torch, args.dtype)
    all_threads = os.cpu_count() or 1
    wanted = {op for op in args.ops.split(",") if op}

    with tempfile.TemporaryDirectory() as tmp:
        server = LocalKernelServer(build_kernels(), Path(tmp), extra_args=("--enable-bench",))
        server.start()
        client = KernelClient(server.address, deadline_s=600.0)
        grpc_backend, torch_backend = GrpcBackend(client), TorchBackend()
        rows: list[tuple[Case, float, float, float, float]] = []
        try:
            first = bench_request(cases(dtype)[0])
            first.iterations = 1
            probe = client.call("Bench", first, pb.BenchResponse)
            header = (
                f"kernels benchmark: {args.dtype}, p50 in ms; Rust on {probe.threads} server threads "
                f"({probe.simd}), torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()}) "
                f"with 1 and {all_threads} threads"
            )
            for case in cases(dtype):
                if wanted and case.op not in wanted:
                    continue
                rows.append((case, *measure(client, grpc_backend, torch_backend, case, args.seconds)))
                print(f"  {case.op} {case.size}: done", file=sys.stderr, flush=True)
        finally:
            torch.set_num_threads(all_threads)
            client.close()
            server.stop()

    print(header)
    columns = (
        "op",
        "size",
        "rust",
        "round trip",
        "torch x1",
        f"torch x{all_threads}",
        "rust/x1",
        "rust/xN",
        "trip/x1",
    )
    table: list[tuple[str, ...]] = [columns]
    for case, rust, trip, one, many in rows:
        table.append(
            (
                case.op,
                case.size,
                fmt_ms(rust),
                fmt_ms(trip),
                fmt_ms(one),
                fmt_ms(many),
                f"{rust / one:.2f}",
                f"{rust / many:.2f}",
                f"{trip / one:.2f}",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    for index, row in enumerate(table):
        print(
            "  ".join(
                cell.ljust(w) if i < 2 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if index == 0:
            print("  ".join("-" * w for w in widths))

    def find(op: str, size: str) -> tuple[Case, float, float, float, float] | None:
        return next((row for row in rows if row[0].op == op and row[0].size == size), None)

    print()
    dpo = find("dpo_loss", "64 pairs")
    if dpo:
        round_trip = dpo[2]
        verdict = "met" if round_trip <= 0.5e-3 else "NOT met"
        print(f"round-trip p50, 64-pair DPO loss: {fmt_ms(round_trip)} ms (target <= 0.5 ms: {verdict})")
    for op, size in (("log_softmax", "8x49152"), ("grpo_loss", "64x512")):
        found = find(op, size)
        if found:
            _, rust, _, one, many = found
            verdict = "met" if rust <= one else "NOT met"
            print(
                f"Rust/torch, {op} {size}: {rust / one:.2f} vs 1 thread, {rust / many:.2f} vs "
                f"{all_threads} threads (target <= 1 vs 1 thread: {verdict})"
            )
    slower = [f"{c.op} {c.size}" for c, rust, _, one, _ in rows if rust > one]
    verdict = "yes" if not slower else "no: " + ", ".join(slower)
    print(f"Rust compute at least as fast as 1-thread torch on every op: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
