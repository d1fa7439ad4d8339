"""Labeler throughput: ``python -m bench.labeler`` (PYTHONPATH=. from the repository root).

1. The non-LLM path: every component computed in process (MiniLM context/reference similarity,
   string similarity, feedback, composite) for batches of realistic traces, as one labeler replica
   computes them, with MiniLM in float32 and in bfloat16 (how far the similarities move is printed).
   Responses are all distinct; contexts come from a pool of documents (RAG traffic
   retrieves the same documents again and again) and are embedded once.
2. The judge path: ragas faithfulness + answer relevancy and the rubric through an OpenAI-compatible
   server on loopback with a fixed latency per call (started here, in its own process), at judge
   concurrency 1 and 8.

Prints one table per path with the comparison it makes. Targets: >= 1,000 traces/s without the LLM;
>= 4x from concurrency 1 to 8 on the judge path.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request

from rich.console import Console
from rich.table import Table

from shared.rewards import FeedbackSignal, JudgeEndpoint, RewardInput, RewardScorer, load_reward_config
from shared.rewards.embeddings import SentenceEmbedder, resolve_precision

console = Console(width=170)  # the tables stay whole when printed to a file or a CI log
WORDS = [
    "return",
    "refund",
    "delivery",
    "boots",
    "jacket",
    "tent",
    "warranty",
    "shipping",
    "order",
    "parcel",
    "size",
    "exchange",
    "store",
    "battery",
    "stove",
    "fuel",
    "sleeping",
    "bag",
    "rating",
    "comfort",
    "temperature",
    "waterproof",
    "seam",
    "zip",
    "pole",
    "peg",
    "fleece",
    "layer",
    "hike",
    "trail",
    "map",
    "compass",
    "weather",
    "rain",
    "wind",
    "snow",
    "summit",
    "valley",
    "river",
    "camp",
    "pack",
    "strap",
    "hip",
    "belt",
]


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def traffic(count: int, seed: int = 7) -> list[RewardInput]:
    rng = random.Random(seed)
    documents = [" ".join(sentence(rng, 14) for _ in range(3)) for _ in range(64)]
    references = [sentence(rng, 16) for _ in range(32)]
    return [
        RewardInput(
            prompt=sentence(rng, 10).rstrip(".") + "?",
            response=" ".join(sentence(rng, 12) for _ in range(2)) + f" ({i})",
            contexts=tuple(rng.sample(documents, 2)),
            reference=rng.choice(references) if rng.random() < 0.3 else None,
        )
        for i in range(count)
    ]


async def non_llm(
    count: int, batch: int, *, embeddings: bool = True, precision: str = "auto"
) -> tuple[float, float, list[float]]:
    """Traces/s, seconds, and each trace's context similarity."""
    config = load_reward_config()
    if not embeddings:  # the same configuration without the MiniLM components
        weights = {
            k: v for k, v in config.weights.items() if k not in ("context_similarity", "reference_similarity")
        }
        config = config.model_copy(update={"weights": weights})
    embedder = SentenceEmbedder.shared(precision=precision) if embeddings else None
    scorer = RewardScorer.create(config, judge=None, embedder=embedder)
    items = traffic(count)
    await scorer.score(items[:batch])  # the model is loaded and warm; these responses are then cached
    items = items[batch:]
    feedback = [FeedbackSignal("f", "copy")]
    similarities: list[float] = []
    started = time.perf_counter()
    for start in range(0, len(items), batch):
        for components in await scorer.score(items[start : start + batch]):
            scorer.composite(components | {"feedback": scorer.feedback(feedback)})
            similarities.append(float(components.get("context_similarity") or 0.0))
    elapsed = time.perf_counter() - started
    return len(items) / elapsed, elapsed, similarities


def linear_layers_bound(count: int, batch: int, precision: str) -> tuple[float, float, float, float]:
    """What no replica on this CPU can beat with this model: traces/s if MiniLM ran nothing but the
    linear layers of its encoder. Returns traces/s, seconds, the GFLOPS those layers reached, and the
    padding share.

    The batch shapes are recorded from a real pass over the bench's responses, in the labeler's
    batches (sentence-transformers sorts and pads them); then only the encoder's linear layers, which
    carry almost all of its arithmetic, run on tensors of those shapes with the same weights, dtype
    and threads. The model does all of this and more (attention, layer norms, GELU, pooling,
    tokenization), so its rate is lower still. Also returns the share of those batches' tokens that
    are padding (work a packed encoder could skip).
    """
    import torch

    embedder = SentenceEmbedder(precision=precision)  # a fresh cache: every response hits the model
    encoder = embedder.model[0].auto_model
    shapes: list[tuple[int, int]] = []
    hook = encoder.embeddings.register_forward_hook(
        lambda _module, _inputs, output: shapes.append((int(output.shape[0]), int(output.shape[1])))
    )
    responses = [item.response for item in traffic(count)]
    try:
        for start in range(0, len(responses), batch):
            embedder.embed(responses[start : start + batch])
    finally:
        hook.remove()
    linears = [
        module
        for name, module in encoder.named_modules()
        if isinstance(module, torch.nn.Linear) and name.startswith("encoder.")
    ]
    dtype = linears[0].weight.dtype
    with torch.inference_mode():
        inputs = {
            width: [torch.randn(rows * tokens, width, dtype=dtype) for rows, tokens in shapes]
            for width in {linear.in_features for linear in linears}
        }

        def one_pass() -> None:
            for index in range(len(shapes)):
                for linear in linears:
                    linear(inputs[linear.in_features][index])

        one_pass()  # warm
        passes, started = 0, time.perf_counter()
        while passes < 3 or time.perf_counter() - started < 3.0:
            one_pass()
            passes += 1
        seconds = (time.perf_counter() - started) / passes
    flops = sum(
        2 * rows * tokens * linear.in_features * linear.out_features
        for rows, tokens in shapes
        for linear in linears
    )
    real = sum(len(ids) for ids in embedder.model.tokenizer(responses)["input_ids"])
    padding = 1 - real / sum(rows * tokens for rows, tokens in shapes)
    return len(responses) / seconds, seconds, flops / seconds / 1e9, padding


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_judge(latency_s: float) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.services.labeler.judge_server",
            "--port",
            str(port),
            "--latency",
            str(latency_s),
        ],
        env=os.environ | {"PYTHONPATH": os.getcwd()},
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/docs", timeout=1)
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError("the loopback judge did not start") from None
            time.sleep(0.2)
    return process, f"http://127.0.0.1:{port}/v1"


async def judge_path(base_url: str, concurrency: int, count: int) -> tuple[float, float, int]:
    config = load_reward_config()
    endpoint = JudgeEndpoint(
        base_url=base_url, model="bench", concurrency=concurrency, timeout_s=30, retries=1
    )
    scorer = RewardScorer.create(config, judge=endpoint)
    items = traffic(count, seed=concurrency)
    try:
        await scorer.score(items[:1])  # connections and models warm
        started = time.perf_counter()
        results = await scorer.score(items)
        elapsed = time.perf_counter() - started
    finally:
        await scorer.close()
    missing = sum(1 for row in results for name in ("faithfulness", "helpfulness") if row.get(name) is None)
    return len(items) / elapsed, elapsed, missing


def torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--traces", type=int, default=1024, help="traces on the non-LLM path")
    parser.add_argument("--batch", type=int, default=256, help="traces scored together (the labeler's batch)")
    parser.add_argument(
        "--latencies", default="0.1,0.5", help="judge latencies per call to measure, seconds, comma-separated"
    )
    parser.add_argument("--judge-traces", type=int, default=16, help="traces at concurrency 1 (x4 at 8)")
    args = parser.parse_args()

    table = Table(
        "components",
        "MiniLM",
        "traces",
        "seconds",
        "traces/s",
        "vs float32",
        "context similarity vs float32",
        "target",
        title="labeler: non-LLM path (one process; MiniLM's auto precision on this CPU: "
        f"{resolve_precision('auto', 'cpu')})",
    )
    minilm = "all non-LLM (MiniLM similarities, string, feedback, composite)"
    full = asyncio.run(non_llm(args.traces, args.batch, precision="float32"))
    half = asyncio.run(non_llm(args.traces, args.batch, precision="bfloat16"))
    bare = asyncio.run(non_llm(args.traces * 16, args.batch, embeddings=False))
    for label, precision, count, (rate, elapsed, similarities) in (
        (minilm, "float32", args.traces, full),
        (minilm, "bfloat16", args.traces, half),
        ("without the MiniLM components (string, feedback, composite)", "-", args.traces * 16, bare),
    ):
        drift = (
            f"max |diff| {max(abs(a - b) for a, b in zip(similarities, full[2], strict=True)):.4f}"
            if precision != "-"
            else "-"
        )
        table.add_row(
            label,
            precision,
            str(count - args.batch),
            f"{elapsed:.2f}",
            f"{rate:,.0f}",
            f"{rate / full[0]:.1f}x",
            drift,
            ">= 1,000",
        )
    bound, bound_s, gflops, padding = linear_layers_bound(args.traces, args.batch, "auto")
    table.add_row(
        "upper bound: MiniLM's linear layers alone, same batches (no attention, norms, tokenizer)",
        resolve_precision("auto", "cpu"),
        str(args.traces),
        f"{bound_s:.2f}",
        f"{bound:,.0f}",
        f"{bound / full[0]:.1f}x",
        "-",
        ">= 1,000",
    )
    console.print(table)
    auto = resolve_precision("auto", "cpu")
    same = half if auto == "bfloat16" else full
    console.print(
        f"The encoder's linear layers ran at {gflops:,.0f} GFLOPS on {torch_threads()} threads: no replica "
        f"of this model on this CPU scores more than {bound:,.0f} traces/s (target 1,000); the whole "
        f"non-LLM path reached {same[0] / bound:.0%} of that bound in {auto}. {padding:.0%} of the tokens "
        "in those batches are padding."
    )

    calls = 3 + load_reward_config().ragas.answer_relevancy_strictness
    table = Table(
        "latency per call",
        "judge concurrency",
        "traces",
        "seconds",
        "traces/s",
        "missing",
        "speed-up",
        title=f"labeler: judge path (ragas + rubric, {calls} judge calls per trace), target >= 4x",
    )
    for latency in (float(x) for x in args.latencies.split(",")):
        process, base_url = start_judge(latency)
        try:
            low = asyncio.run(judge_path(base_url, 1, args.judge_traces))
            high = asyncio.run(judge_path(base_url, 8, args.judge_traces * 4))
        finally:
            process.terminate()
            process.wait(timeout=10)
        ms = f"{latency * 1000:.0f} ms"
        table.add_row(ms, "1", str(args.judge_traces), f"{low[1]:.2f}", f"{low[0]:.2f}", str(low[2]), "1.0x")
        table.add_row(
            ms,
            "8",
            str(args.judge_traces * 4),
            f"{high[1]:.2f}",
            f"{high[0]:.2f}",
            str(high[2]),
            f"{high[0] / low[0]:.1f}x",
        )
    console.print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
