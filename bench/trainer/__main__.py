"""DPO-LoRA step time and peak memory: ``python -m bench.trainer`` (PYTHONPATH=. from the repository root).

One run, the same data for both: SmolLM2-135M-Instruct, 4 preference pairs of 256 tokens each (prompt
plus answer, every chosen and rejected sequence truncated to exactly 256 tokens, so no variant gains
from padding), LoRA r=16 alpha=32 on every linear layer, AdamW, CPU settings (float32, or bfloat16
autocast with ``--bf16``; no gradient checkpointing), the same learning rate and seed.

- plain TRL: ``trl.DPOTrainer`` with the batch of 4 pairs in one forward pass (TRL's usual setting);
- Kaizen: ``services.trainer`` with its defaults (the loss in the ``torch`` kernel backend, or ``grpc``
  with ``--backend grpc --kernels-address host:port``), which on a CPU run two pairs per forward pass and
  accumulate gradients over the 4 pairs: the same gradient, a fraction of the activations.

Each variant runs in its own process; the table reports seconds per optimizer step (wall clock, the
median and the fastest of the timed steps after one warm-up step; with ``--rounds`` the variants
alternate, TRL, Kaizen, Kaizen, TRL, so a busy machine weighs on both alike), the process CPU seconds per
step (all threads: less sensitive than wall time to other work on a shared machine) and the process's
peak RSS from ``os.wait4`` (the child's own ``ru_maxrss``). Targets: step time at most 1.0x, peak RSS at
most 0.7x of plain TRL.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PAIRS = 4
TOKENS = 256
LEARNING_RATE = 2e-5
SEED = 42
REPO_ROOT = Path(__file__).resolve().parents[2]

SENTENCE = (
    "The customer asked about the return policy for the hiking boots bought last month, and the assistant "
    "explained the steps, the time limits, the refund options and what to do with the original receipt. "
)


def pairs(tokenizer: Any) -> list[dict[str, Any]]:
    """4 pairs whose prompt + answer run past 256 tokens, so truncation makes each exactly 256."""
    records = []
    for index in range(PAIRS):
        prompt = f"Question {index}: " + SENTENCE * 3 + "What should I do?"
        chosen = f"Answer {index}: " + SENTENCE * 12
        rejected = f"Other answer {index}: " + SENTENCE * 14
        records.append(
            {
                "prompt": [{"role": "user", "content": prompt}],
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}],
            }
        )
    return records


def child(
    variant: str, steps: int, backend_name: str, address: str, micro: int | None, out: Path, bf16: bool
) -> None:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback

    from shared.models import load_causal_lm

    torch.manual_seed(SEED)
    model, tokenizer = load_causal_lm("smollm2-135m-instruct")
    dataset = Dataset.from_list(pairs(tokenizer))
    times: list[float] = []

    cpu_times: list[float] = []

    class StepTimer(TrainerCallback):  # type: ignore[misc]
        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.started = time.perf_counter()
            self.cpu_started = time.process_time()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            times.append(time.perf_counter() - self.started)
            cpu_times.append(time.process_time() - self.cpu_started)

    work = out.with_suffix(".work")
    if variant == "trl":
        from trl import DPOConfig, DPOTrainer

        args = DPOConfig(
            output_dir=str(work),
            per_device_train_batch_size=PAIRS,
            gradient_accumulation_steps=1,
            max_steps=steps + 1,
            learning_rate=LEARNING_RATE,
            max_length=TOKENS,
            bf16=bf16,
            use_cpu=not torch.cuda.is_available(),
            activation_checkpointing=False,
            save_strategy="no",
            report_to="none",
            logging_steps=1,
            disable_tqdm=True,
            seed=SEED,
            dataloader_pin_memory=False,
        )
        lora = LoraConfig(
            r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"
        )
        trainer: Any = DPOTrainer(
            model=model,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=lora,
            callbacks=[StepTimer()],
        )
    else:
        from services.trainer.config import TrainingConfig
        from services.trainer.job import build_trainer
        from shared.kernels.backend import make_backend
        from shared.settings import KernelSettings

        config = TrainingConfig(
            batch_size=PAIRS,
            max_steps=steps + 1,
            learning_rate=LEARNING_RATE,
            max_length=TOKENS,
            save_steps=10_000,
            seed=SEED,
            micro_batch_size=micro,
            bf16=bf16,
        ).resolve("dpo", cuda=False)
        kernels = KernelSettings(backend=backend_name, address=address)  # type: ignore[call-arg]
        trainer = build_trainer(
            config, model, tokenizer, dataset, make_backend(kernels), work, callbacks=[StepTimer()]
        )
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    out.write_text(
        json.dumps(
            {
                "step_seconds": times[1:],
                "step_cpu_seconds": cpu_times[1:],
                "warmup_seconds": times[0],
                "losses": [entry["loss"] for entry in logged],
                "micro_batch_sequences": int(batch["input_ids"].shape[0]),
                "sequence_tokens": int(batch["input_ids"].shape[1]),
                "threads": torch.get_num_threads(),
            }
        )
    )


def run_variant(
    variant: str, steps: int, backend: str, address: str, micro: int | None, workdir: Path, bf16: bool
) -> dict[str, Any]:
    out = workdir / f"{variant}.json"
    command = [sys.executable, "-m", "bench.trainer", "--child", variant, "--steps", str(steps)]
    command += ["--backend", backend, "--kernels-address", address, "--out", str(out)]
    if micro:
        command += ["--micro-batch", str(micro)]
    if bf16:
        command += ["--bf16"]
    env = os.environ | {"PYTHONPATH": str(REPO_ROOT), "TQDM_DISABLE": "1"}
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert process.stderr is not None
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{variant} failed:\n{stderr.decode(errors='replace')[-3000:]}")
    result: dict[str, Any] = json.loads(out.read_text())
    result["peak_rss_mib"] = usage.ru_maxrss / 1024  # Linux reports KiB
    result["seconds_per_step"] = sum(result["step_seconds"]) / len(result["step_seconds"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.trainer", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, default=3, help="Timed optimizer steps (after one warm-up step)."
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="Runs of each variant, alternated (TRL, Kaizen, Kaizen, TRL, ...) so a busy machine weighs on "
        "both alike; step times are pooled, peak RSS is the largest.",
    )
    parser.add_argument(
        "--backend", default="torch", choices=["torch", "grpc"], help="Kaizen's kernel backend."
    )
    parser.add_argument("--kernels-address", default="127.0.0.1:50051", help="The kernel service, for grpc.")
    parser.add_argument(
        "--micro-batch",
        type=int,
        help="Kaizen's pairs per forward pass (default: the trainer's own, resolved for the CPU).",
    )
    parser.add_argument(
        "--bf16",
        action="store_true",
        help="Train both variants under bfloat16 autocast (on a CPU with AMX or AVX512-BF16), not float32.",
    )
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/kaizen-bench-trainer"))
    parser.add_argument("--child", choices=["trl", "kaizen"], help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        child(
            options.child,
            options.steps,
            options.backend,
            options.kernels_address,
            options.micro_batch,
            options.out,
            options.bf16,
        )
        return

    from rich.console import Console
    from rich.table import Table

    console = Console()
    options.workdir.mkdir(parents=True, exist_ok=True)
    order: list[str] = []
    for round_index in range(options.rounds):
        order += ["trl", "kaizen"] if round_index % 2 == 0 else ["kaizen", "trl"]
    runs: dict[str, list[dict[str, Any]]] = {"trl": [], "kaizen": []}
    for variant in order:
        console.print(f"running {variant} ({options.steps} timed steps + 1 warm-up) ...")
        run = run_variant(
            variant,
            options.steps,
            options.backend,
            options.kernels_address,
            options.micro_batch,
            options.workdir,
            options.bf16,
        )
        console.print(
            f"  {variant}: steps {' '.join(f'{t:.2f}' for t in run['step_seconds'])} s wall, "
            f"{' '.join(f'{t:.2f}' for t in run['step_cpu_seconds'])} s CPU, "
            f"peak RSS {run['peak_rss_mib']:.0f} MiB"
        )
        runs[variant].append(run)

    def summary(variant: str) -> dict[str, Any]:
        steps = sorted(t for run in runs[variant] for t in run["step_seconds"])
        cpu = sorted(t for run in runs[variant] for t in run["step_cpu_seconds"])
        first = runs[variant][0]
        return {
            "median": statistics.median(steps),
            "min": steps[0],
            "cpu": statistics.median(cpu),
            "rss": max(run["peak_rss_mib"] for run in runs[variant]),
            "shape": f"{first['micro_batch_sequences']} x {first['sequence_tokens']}",
            "losses": first["losses"],
            "threads": first["threads"],
        }

    trl, kaizen = summary("trl"), summary("kaizen")
    table = Table(
        title=f"DPO-LoRA on SmolLM2-135M, {PAIRS} pairs x {TOKENS} tokens, CPU ({trl['threads']} threads), "
        f"{'bfloat16 autocast' if options.bf16 else 'float32'}, {options.rounds} round(s)"
    )
    for column in (
        "",
        "plain TRL DPOTrainer",
        f"Kaizen ({options.backend} backend)",
        "Kaizen / TRL",
        "target",
    ):
        table.add_column(column, justify="right")
    table.add_row(
        "seconds per step (median)",
        f"{trl['median']:.2f}",
        f"{kaizen['median']:.2f}",
        f"{kaizen['median'] / trl['median']:.2f}x",
        "<= 1.0x",
    )
    table.add_row(
        "seconds per step (fastest)",
        f"{trl['min']:.2f}",
        f"{kaizen['min']:.2f}",
        f"{kaizen['min'] / trl['min']:.2f}x",
        "",
    )
    table.add_row(
        "CPU seconds per step (median)",
        f"{trl['cpu']:.2f}",
        f"{kaizen['cpu']:.2f}",
        f"{kaizen['cpu'] / trl['cpu']:.2f}x",
        "",
    )
    table.add_row(
        "peak RSS (MiB)",
        f"{trl['rss']:.0f}",
        f"{kaizen['rss']:.0f}",
        f"{kaizen['rss'] / trl['rss']:.2f}x",
        "<= 0.7x",
    )
    table.add_row("sequences x tokens per forward", trl["shape"], kaizen["shape"], "", "")
    table.add_row(
        "loss per step",
        " ".join(f"{loss:.4f}" for loss in trl["losses"]),
        " ".join(f"{loss:.4f}" for loss in kaizen["losses"]),
        "",
        "",
    )
    console.print(table)


if __name__ == "__main__":
    main()
