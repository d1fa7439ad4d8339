"""Serving precision: SmolLM2-135M-Instruct answering through the gateway's engine in float32 and bfloat16.

    python -m bench.rollout.precision [--batch 8] [--new-tokens 64] [--rounds 2] [--threads 1]

One process, one torch thread by default (as each gateway replica runs in the demo). The engine
(``services.rollout.engine.ChatEngine``) answers a batch of the demo's held-out chats (system message
with the retrieved passages, as the workload sends them) with greedy decoding, once per precision per
round, the two precisions alternating so a busy machine weighs on both alike. It prints seconds per
batch (the fastest of the rounds), answers per second, the speed-up, and how many greedy answers are
word for word the same in both precisions. A benchmark, never a timed test.
"""

from __future__ import annotations

import argparse
import time

from rich.console import Console
from rich.table import Table


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.rollout.precision", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--batch", type=int, default=8, help="Chats answered together in one batch.")
    parser.add_argument("--new-tokens", type=int, default=64, help="Tokens generated per answer.")
    parser.add_argument("--rounds", type=int, default=2, help="Batches per precision (alternated).")
    parser.add_argument("--threads", type=int, default=1, help="torch threads.")
    options = parser.parse_args()

    import torch

    from demo.workload.prompts import chat_messages, load_prompts, select
    from services.rollout.engine import ChatEngine, Sampling
    from services.rollout.routing import BASE_VERSION
    from shared.models import resolve_precision

    torch.set_num_threads(options.threads)
    if resolve_precision("auto") != "bfloat16":
        Console().print("[yellow]this CPU has no native bfloat16 (AVX512-BF16 or AMX): expect no gain")
    chats = [chat_messages(prompt) for prompt in select(load_prompts(), "held_out")[: options.batch]]
    sampling = Sampling(max_tokens=options.new_tokens, temperature=0.0)
    engines = {
        precision: ChatEngine("smollm2-135m-instruct", max_batch_size=options.batch, precision=precision)
        for precision in ("float32", "bfloat16")
    }
    seconds: dict[str, list[float]] = {name: [] for name in engines}
    answers: dict[str, list[str]] = {}
    tokens: dict[str, int] = {}
    for _ in range(options.rounds):
        for name, engine in engines.items():
            started = time.perf_counter()
            futures = [engine.submit(chat, BASE_VERSION, sampling) for chat in chats]
            completions = [future.result() for future in futures]
            seconds[name].append(time.perf_counter() - started)
            answers[name] = [completion.text for completion in completions]
            tokens[name] = sum(completion.completion_tokens for completion in completions)
    fastest = {name: min(values) for name, values in seconds.items()}
    same = sum(a == b for a, b in zip(answers["float32"], answers["bfloat16"], strict=True))

    table = Table(
        title=f"SmolLM2-135M through ChatEngine: {len(chats)} held-out chats per batch, greedy, "
        f"{options.new_tokens} new tokens at most, {options.threads} torch thread(s), "
        f"{options.rounds} round(s)"
    )
    for column in (
        "precision",
        "seconds per batch (fastest)",
        "all rounds",
        "answers/s",
        "tokens/s",
        "speed-up",
    ):
        table.add_column(column, justify="right")
    for name in engines:
        table.add_row(
            name,
            f"{fastest[name]:.2f}",
            " ".join(f"{value:.2f}" for value in seconds[name]),
            f"{len(chats) / fastest[name]:.2f}",
            f"{tokens[name] / fastest[name]:.1f}",
            f"{fastest['float32'] / fastest[name]:.2f}x",
        )
    console = Console()
    console.print(table)
    console.print(f"greedy answers word for word the same in both precisions: {same} of {len(chats)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
