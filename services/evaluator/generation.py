"""Answers of one model to the evaluation prompts: the same chat formatting and decoding for every model.

Both the candidate and the champion go through ``generate_answers`` with the same ``Decoding``: greedy
by default (deterministic, so a candidate identical to the champion answers identically), batched, left
padded, the item's chat turned into the model's prompt by its own chat template.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from services.evaluator.errors import EvaluationError
from services.evaluator.sets import EvalItem
from services.evaluator.settings import EvaluationSettings

log = logging.getLogger("kaizen.evaluator.generation")


@dataclass(frozen=True)
class Decoding:
    max_new_tokens: int = 256
    do_sample: bool = False
    temperature: float = 0.7
    top_p: float = 1.0
    batch_size: int = 8
    seed: int = 0
    include_contexts: bool = True

    @classmethod
    def of(cls, settings: EvaluationSettings) -> Decoding:
        return cls(
            max_new_tokens=settings.max_new_tokens,
            do_sample=settings.do_sample,
            temperature=settings.temperature,
            top_p=settings.top_p,
            batch_size=settings.batch_size,
            seed=settings.seed,
            include_contexts=settings.include_contexts,
        )


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def prompt_text(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """The prompt a model sees for a chat: its chat template, or the turns joined when it has none."""
    if getattr(tokenizer, "chat_template", None):
        return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    return "\n\n".join(message["content"] for message in messages) + "\n\n"


def generate_answers(model: Any, tokenizer: Any, items: Sequence[EvalItem], decoding: Decoding) -> list[str]:
    """One answer per item, in order."""
    import torch

    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    device = next(model.parameters()).device
    answers: list[str] = []
    for start in range(0, len(items), decoding.batch_size):
        batch = items[start : start + decoding.batch_size]
        prompts = [prompt_text(tokenizer, item.messages(decoding.include_contexts)) for item in batch]
        encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        options: dict[str, Any] = {
            "max_new_tokens": decoding.max_new_tokens,
            "do_sample": decoding.do_sample,
            "pad_token_id": tokenizer.pad_token_id,
        }
        if decoding.do_sample:
            torch.manual_seed(decoding.seed + start)
            options.update(temperature=decoding.temperature, top_p=decoding.top_p)
        else:  # greedy: no sampling knobs, whatever the model's generation_config says
            options.update(temperature=None, top_p=None, top_k=None)
        try:
            with torch.inference_mode():
                output = model.generate(**encoded, **options)
        except (RuntimeError, ValueError) as exc:
            raise EvaluationError(
                f"generation failed on items {start}..{start + len(batch) - 1}: {exc}"
            ) from exc
        new_tokens = output[:, encoded["input_ids"].shape[1] :]
        answers += [text.strip() for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
    return answers


def generate_with(
    spec: str, items: Sequence[EvalItem], decoding: Decoding, device: str | None, precision: str = "float32"
) -> list[str]:
    """Load a model spec (adapter or full model) in ``precision``, answer every item, free the model."""
    import gc

    from shared.models import ModelError, load_model_version, torch_dtype

    device = device or default_device()
    try:
        model, tokenizer = load_model_version(spec, device=device, dtype=torch_dtype(precision, device))
    except (ModelError, OSError, ValueError) as exc:
        raise EvaluationError(f"cannot load model {spec!r}: {exc}") from exc
    try:
        return generate_answers(model, tokenizer, items, decoding)
    finally:
        del model
        gc.collect()
