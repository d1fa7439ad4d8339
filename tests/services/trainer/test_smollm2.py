"""With the real SmolLM2-135M-Instruct weights, DPO-LoRA on 16 pairs whose chosen answers are short and
rejected answers long teaches the model to answer shorter: on held-out prompts, the adapter's answers
are shorter on average than the base model's.

The base model rambles on open questions like these (its answers run to the token cap). Each pair's
rejected answer is the base model's own long answer to the prompt and its chosen answer is that answer's
first sentence, so what DPO can learn is to stop after saying the point, not to avoid a phrase. Greedy
decoding, the same held-out prompts and the same cap for both models: the comparison is deterministic,
and an adapter that did not learn the preference leaves the lengths at the cap (a pair design whose
rejected answers shared one memorizable ramble did exactly that).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from datasets import Dataset

from services.trainer.config import TrainingConfig
from services.trainer.job import build_trainer
from shared.kernels.torch_backend import TorchBackend
from shared.models import load_causal_lm

pytestmark = pytest.mark.slow

MAX_NEW_TOKENS = 48
BASE_ANSWERS = {
    "Explain what a volcano is.": (
        "A volcano is a geological feature that forms when magma rises to the surface of the Earth's "
        "crust. It is a volcanic eruption that occurs when magma from the Earth's crust rises to the "
        "surface, often in the form of a shield volcano. The volcano is a volcanic eruption that "
        "occurs"
    ),
    "Describe how rain forms.": (
        "Rain is formed when warm air rises and cools down due to the Earth's atmosphere's uneven "
        "heat distribution. This process is known as atmospheric circulation. The warm air rises and "
        "cools down, causing the air to expand and become lighter. As the air rises, it cools down "
        "and cond"
    ),
    "Explain what photosynthesis is.": (
        "Photosynthesis is a vital biological process that occurs in plants, algae, and some "
        "bacteria, where they convert light energy from the sun into chemical energy stored in "
        "glucose and oxygen. This process is essential for life on Earth as it provides the primary "
        "energy source for nearly all ecosystems.\n"
    ),
    "Describe what a library is.": (
        "A library is a vast and diverse community that offers a wide range of resources and "
        "services to help people access information, support, and services. It encompasses various "
        "aspects, including books, movies, music, art, technology, and more. Libraries are often "
        'referred to as "digital libraries'
    ),
    "Explain why we need sleep.": (
        "Sleep is essential for maintaining optimal bodily functions, including physical and mental "
        "health, and it's crucial for the well-being of our minds, bodies, and spirits. Without "
        "adequate sleep, we can experience fatigue, decreased productivity, and impaired cognitive "
        "function. Sleep plays a vital role in"
    ),
    "Describe the moon.": (
        "The moon is a celestial body that orbits the Earth, and it is a breathtaking sight in the "
        "night sky. It is a rocky, barren, and often unforgiving world that is composed of a solid, "
        "rocky core surrounded by a gas mantle. The moon's surface is composed"
    ),
    "Explain what gravity does.": (
        "Gravity is a fundamental concept in physics that describes the force that causes objects to "
        "move towards each other. It's a fundamental aspect of the universe, shaping the behavior of "
        "celestial bodies and the behavior of matter itself. Gravity is a result of the curvature of "
        "spacetime caused by the presence"
    ),
    "Describe a desert.": (
        "The desert is a vast and unforgiving realm of unforgiving beauty. It is a place where the "
        "very fabric of reality is torn apart, leaving behind a desolation of unforgiving beauty. "
        "The desert is a place of endless darkness, where the only light comes from"
    ),
    "Explain what a computer does.": (
        "A computer is a device that processes information using algorithms and software. It's a "
        "complex machine that can perform tasks, store data, and communicate with other devices "
        "through internet. Computers can perform tasks such as processing information, executing "
        "instructions, storing data, and communicating with other devices. They"
    ),
    "Describe how bees make honey.": (
        'Bees make honey using a process called "beekeeping." They collect nectar from flowers and '
        "convert it into honey using a specialized enzyme that's found in their digestive system. "
        "This enzyme is called \"beehocarboxylic acid\" and it's produced by the bees'"
    ),
    "Explain what an election is.": (
        "An election is a democratic process where citizens vote for a representative to make "
        "decisions for a government or a government-sponsored entity. It's a democratic process "
        "where citizens can choose their leaders and make decisions that affect their lives, "
        "society, and the economy. In a democratic system, the"
    ),
    "Describe a rainbow.": (
        "A rainbow is a celestial wonder born from the intersection of the Earth's atmosphere and "
        "the sun's rays. It is a brilliant, shimmering color that appears in the sky when the Earth "
        "is tilted at a specific angle, specifically 180 degrees. This angle is known as"
    ),
    "Explain what a vaccine does.": (
        "A vaccine is a medical device that protects against a specific disease by introducing a "
        "weakened or killed form of the virus into the body. The primary purpose of a vaccine is to "
        "provide immunity against a particular disease by introducing a harmless form of the virus "
        "into the body. This process is called"
    ),
    "Describe the ocean.": (
        "The ocean is a vast and mysterious realm that surrounds the planet Earth. It is a vast and "
        "mysterious realm that is home to countless species, from tiny plankton to majestic whales. "
        "The ocean is a delicate and complex ecosystem that supports life on Earth. It is a vast and "
        "mysterious realm"
    ),
    "Explain what money is for.": (
        "Money is a fundamental concept in economics that has been debated by philosophers and "
        "economists for centuries. At its core, money is a medium of exchange that allows "
        "individuals to settle transactions and manage their resources. It's a tool used to "
        "facilitate transactions, facilitate trade, and create a global economy"
    ),
    "Describe how a bicycle works.": (
        "A bicycle is a marvel of modern technology that has transformed the way people travel. The "
        "basic components of a bicycle include the frame, wheels, pedals, and brakes. The frame is "
        "made of a lightweight material called carbon fiber, which provides exceptional strength and "
        "durability. The wheels are"
    ),
}
"""The base model's own greedy answers to the training prompts (56 new tokens), recorded once."""


def first_sentence(text: str) -> str:
    end = text.find(". ")
    return text[: end + 1] if end > 0 else text


HELD_OUT = [
    "Explain what a glacier is.",
    "Describe how wind forms.",
    "Explain what a museum is for.",
    "Describe a forest.",
    "Explain what electricity is.",
    "Describe how a boat floats.",
]


def mean_answer_length(model: torch.nn.Module, tokenizer: object, prompts: list[str]) -> float:
    """Mean number of generated tokens (up to the end-of-turn token), greedy, all prompts in one batch."""
    tokenizer.padding_side = "left"  # type: ignore[attr-defined]
    texts = [
        tokenizer.apply_chat_template(  # type: ignore[attr-defined]
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
        )
        for prompt in prompts
    ]
    batch = tokenizer(texts, return_tensors="pt", padding=True)  # type: ignore[operator]
    model.eval()
    with torch.no_grad():
        generated = model.generate(  # type: ignore[operator]
            **batch,
            max_new_tokens=MAX_NEW_TOKENS,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,  # type: ignore[attr-defined]
        )
    completions = generated[:, batch["input_ids"].shape[1] :]
    stops = {tokenizer.eos_token_id, tokenizer.pad_token_id}  # type: ignore[attr-defined]
    lengths = []
    for row in completions.tolist():
        length = next((index for index, token in enumerate(row) if token in stops), len(row))
        lengths.append(length)
    return sum(lengths) / len(lengths)


def test_dpo_lora_on_short_vs_long_pairs_shortens_answers_on_held_out_prompts(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model, tokenizer = load_causal_lm("smollm2-135m-instruct")
    base_length = mean_answer_length(model, tokenizer, HELD_OUT)
    assert base_length > MAX_NEW_TOKENS * 0.6, f"the base model should ramble here ({base_length})"

    config = TrainingConfig(
        batch_size=8,
        micro_batch_size=4,
        num_train_epochs=1,
        learning_rate=1e-3,
        max_length=96,
        save_steps=1000,
    ).resolve("dpo", cuda=False)
    pairs = Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": prompt}],
                "chosen": [{"role": "assistant", "content": first_sentence(answer)}],
                "rejected": [{"role": "assistant", "content": answer}],
            }
            for prompt, answer in BASE_ANSWERS.items()
        ]
    )
    tokenizer.padding_side = "left"
    trainer = build_trainer(config, model, tokenizer, pairs, TorchBackend(), tmp_path / "smollm2")
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert logged[-1]["rewards/margins"] > 0, logged

    tuned_length = mean_answer_length(trainer.model, tokenizer, HELD_OUT)
    print(f"mean answer length: base {base_length:.1f} tokens, adapter {tuned_length:.1f} tokens")
    assert tuned_length < base_length * 0.75, (base_length, tuned_length)
