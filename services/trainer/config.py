"""The training configuration: one dataclass, help text on every field (TRL's ``*_config.py`` style).

A job's configuration is the deployment's defaults (``KAIZEN_TRAINING__<FIELD>``) with the algorithm taken
from ``dataset.ready`` unless pinned. Fields left ``None`` are resolved for the device the job runs on
(``TrainingConfig.resolve``); the resolved configuration is what the job logs, hashes and saves with
every checkpoint.

Kaizen's defaults are TRL's, with three exceptions, each for the CPU or for LoRA:

- ``micro_batch_size`` is 2 on a CPU (1 for an odd ``batch_size``): each forward pass carries two items (two
  preference pairs, four sequences), and gradient accumulation fills the configured ``batch_size``. Two
  items per pass keep the matrix products wide enough to run as fast as TRL's whole batch per pass (one
  item per pass was 7% slower in ``bench.trainer``). The gradient is the same (TRL divides each micro-batch's
  loss by the accumulation steps); the activation peak is a fraction of a full batch's.
- ``bf16`` and ``gradient_checkpointing`` are off on a CPU (TRL turns both on by default).
- ``learning_rate`` is 2e-5 with LoRA (TRL's 1e-6 is meant for full fine-tuning).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import field
from typing import Any, Literal

from pydantic.dataclasses import dataclass

from shared.models import DEFAULT_BASE_MODEL

Algorithm = Literal["dpo", "grpo", "sft"]
ALGORITHMS: tuple[Algorithm, ...] = ("dpo", "grpo", "sft")
DPO_LOSS_TYPES = ("sigmoid", "ipo", "hinge", "robust")
GRPO_LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")

TRL_LEARNING_RATES: dict[str, float] = {"dpo": 1e-6, "grpo": 1e-6, "sft": 2e-5}
"""TRL 1.16's default learning rates (``DPOConfig``, ``GRPOConfig``, ``SFTConfig``), for full fine-tuning."""
LORA_LEARNING_RATE = 2e-5
CPU_MICRO_BATCH = 2
"""Items per forward pass on a CPU unless configured (1 when it does not divide batch_size)."""


@dataclass
class TrainingConfig:
    """How a job trains: model, adapter, algorithm, batch, checkpoints. Every field has help text."""

    # Model
    base_model: str = field(
        default=DEFAULT_BASE_MODEL,
        metadata={
            "help": "Base model: 'smollm2-135m-instruct' (offline default), 'tiny-random-llama', a Hugging "
            "Face model directory, or an MLflow model URI (models:/name/version, runs:/id/path)."
        },
    )
    algorithm: Algorithm | None = field(
        default=None,
        metadata={"help": "dpo, grpo or sft; None trains with the algorithm dataset.ready suggests."},
    )
    use_lora: bool = field(
        default=True,
        metadata={
            "help": "Train a LoRA adapter (PEFT); the DPO reference is then the base with the adapter "
            "disabled, no second copy of the model. False fine-tunes every weight (DPO then keeps a frozen "
            "reference copy)."
        },
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling numerator (scale = alpha / r)."})
    lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the LoRA input."})
    lora_target_modules: str = field(
        default="all-linear",
        metadata={
            "help": "Modules that get an adapter: 'all-linear' (every linear layer but the LM head) or a "
            "comma-separated list of module names (q_proj,v_proj)."
        },
    )

    # Optimization
    learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "Peak AdamW learning rate. None: 2e-5 with LoRA; TRL's default with full fine-tuning "
            "(1e-6 for DPO and GRPO, 2e-5 for SFT)."
        },
    )
    lr_scheduler_type: str = field(default="linear", metadata={"help": "transformers scheduler name."})
    warmup_steps: float = field(
        default=0.0,
        metadata={"help": "Linear warmup: a number of steps, or a share of all steps when below 1."},
    )
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm."})
    num_train_epochs: float = field(default=1.0, metadata={"help": "Passes over the train split."})
    max_steps: int = field(
        default=-1, metadata={"help": "Optimizer steps to run; -1 derives them from num_train_epochs."}
    )
    batch_size: int = field(
        default=8,
        metadata={
            "help": "Items per optimizer step on each device (TRL's default 8): preference pairs (DPO), "
            "sampled completions (GRPO: a multiple of num_generations) or examples (SFT)."
        },
    )
    micro_batch_size: int | None = field(
        default=None,
        metadata={
            "help": "Items per forward pass; gradient accumulation fills batch_size with the same gradient. "
            "None: 2 on a CPU, 1 for an odd batch_size (a fraction of the activation memory), batch_size on "
            "a GPU. Must divide batch_size."
        },
    )
    max_length: int | None = field(
        default=1024, metadata={"help": "Longest prompt + completion in tokens; longer ones are truncated."}
    )
    seed: int = field(default=42, metadata={"help": "Seed of the adapter init, data order and sampling."})
    bf16: bool | None = field(
        default=None, metadata={"help": "Train in bfloat16. None: on a GPU that supports it, off on a CPU."}
    )
    gradient_checkpointing: bool | None = field(
        default=None,
        metadata={"help": "Recompute activations in the backward pass. None: on a GPU, off on a CPU."},
    )

    # DPO
    beta: float = field(
        default=0.1,
        metadata={"help": "DPO: strength of the pull to the reference (IPO: the regularization tau)."},
    )
    dpo_loss_type: list[str] = field(
        default_factory=lambda: ["sigmoid"],
        metadata={
            "help": "DPO loss types: sigmoid, ipo, hinge, robust; several are summed with loss_weights."
        },
    )
    dpo_loss_weights: list[float] | None = field(
        default=None, metadata={"help": "One weight per DPO loss type; None weighs each 1."}
    )
    label_smoothing: float = field(
        default=0.0,
        metadata={"help": "Robust DPO: probability that a preference label is flipped, [0, 0.5)."},
    )

    # GRPO
    num_generations: int = field(
        default=4,
        metadata={
            "help": "GRPO: completions sampled per prompt (the group); must divide the generation batch."
        },
    )
    max_completion_length: int = field(
        default=256, metadata={"help": "GRPO: longest sampled completion in tokens."}
    )
    grpo_loss_type: str = field(
        default="dapo", metadata={"help": "GRPO aggregation: grpo, bnpo, dr_grpo or dapo (TRL's default)."}
    )
    grpo_beta: float = field(
        default=0.0,
        metadata={
            "help": "GRPO: weight of the k3 KL to the reference (the base, adapter disabled); 0 skips it."
        },
    )
    epsilon: float = field(default=0.2, metadata={"help": "GRPO: lower clip of the importance ratio."})
    epsilon_high: float | None = field(
        default=None, metadata={"help": "GRPO: upper clip of the importance ratio; None uses epsilon."}
    )
    scale_rewards: str = field(
        default="group", metadata={"help": "GRPO: advantage scaling: group, batch or none."}
    )
    temperature: float = field(default=1.0, metadata={"help": "GRPO: sampling temperature."})
    reward_components: list[str] = field(
        default_factory=lambda: ["reference_similarity", "context_similarity"],
        metadata={
            "help": "GRPO: reward components used when a dataset item names none (its reward_components "
            "column takes precedence)."
        },
    )

    # SFT
    completion_only_loss: bool | None = field(
        default=None,
        metadata={
            "help": "SFT: train on the completion tokens only. None: TRL's choice (yes for prompt and "
            "completion records)."
        },
    )

    # Checkpoints and logging
    save_steps: int = field(
        default=50,
        metadata={"help": "Save a checkpoint every N optimizer steps; a killed job resumes from the newest."},
    )
    save_total_limit: int = field(default=2, metadata={"help": "Checkpoints kept on disk (the newest ones)."})
    logging_steps: int = field(default=1, metadata={"help": "Log metrics to MLflow every N optimizer steps."})
    min_train_items: int = field(
        default=1, metadata={"help": "A dataset with fewer train items fails the job as empty_dataset."}
    )

    def resolve(self, algorithm: str, *, cuda: bool, bf16_supported: bool = False) -> TrainingConfig:
        """The configuration a job runs with: the algorithm fixed and every None resolved for the device."""
        chosen = self.algorithm or algorithm
        if chosen not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {chosen!r}")
        micro = self.micro_batch_size or (self.batch_size if cuda else CPU_MICRO_BATCH)
        if not self.micro_batch_size and not cuda and self.batch_size % micro:
            micro = 1
        if self.batch_size % micro:
            raise ValueError(f"micro_batch_size {micro} must divide batch_size {self.batch_size}")
        if chosen == "grpo" and self.batch_size % self.num_generations:
            # For GRPO, an item is one completion, and a step's batch holds whole groups of them.
            raise ValueError(
                f"GRPO's batch_size {self.batch_size} must be a multiple of num_generations "
                f"{self.num_generations}"
            )
        if learning_rate := self.learning_rate:
            rate = learning_rate
        else:
            rate = LORA_LEARNING_RATE if self.use_lora else TRL_LEARNING_RATES[chosen]
        unknown = [name for name in self.dpo_loss_type if name not in DPO_LOSS_TYPES]
        if unknown:
            raise ValueError(f"dpo_loss_type must be among {DPO_LOSS_TYPES}, got {unknown}")
        if self.grpo_loss_type not in GRPO_LOSS_TYPES:
            raise ValueError(f"grpo_loss_type must be one of {GRPO_LOSS_TYPES}, got {self.grpo_loss_type!r}")
        return dataclasses.replace(
            self,
            algorithm=chosen,  # type: ignore[arg-type]
            micro_batch_size=micro,
            learning_rate=rate,
            bf16=self.bf16 if self.bf16 is not None else (cuda and bf16_supported),
            gradient_checkpointing=(
                self.gradient_checkpointing if self.gradient_checkpointing is not None else cuda
            ),
        )

    @property
    def gradient_accumulation_steps(self) -> int:
        return max(1, self.batch_size // (self.micro_batch_size or self.batch_size))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def config_hash(self) -> str:
        """A short, stable hash of the configuration (logged as an MLflow param and on the model version)."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @classmethod
    def help(cls) -> dict[str, str]:
        """Every field's help text, by name."""
        return {item.name: str(item.metadata.get("help", "")) for item in dataclasses.fields(cls)}
