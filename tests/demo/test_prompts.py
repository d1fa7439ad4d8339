"""The bundled prompt set: it loads, it is what the build makes, and bad files are refused clearly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from demo.workload.build import build_prompts
from demo.workload.prompts import (
    DEFAULT_PROMPTS,
    WorkloadError,
    chat_messages,
    load_prompts,
    select,
    to_jsonl,
)
from shared.evalsets import Decontaminator

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_the_bundled_prompts_load_with_contexts_and_a_held_out_share() -> None:
    prompts = load_prompts()
    assert len(prompts) >= 300
    assert len({prompt.id for prompt in prompts}) == len(prompts)
    assert all(1 <= len(prompt.contexts) <= 3 for prompt in prompts)
    assert all(context.strip() for prompt in prompts for context in prompt.contexts)
    held_out = select(prompts, "held_out")
    train = select(prompts, "train")
    assert len(held_out) + len(train) == len(prompts)
    assert 0.10 <= len(held_out) / len(prompts) <= 0.20
    assert {prompt.category for prompt in held_out} >= {"product", "policy"}
    with_reference = [prompt for prompt in prompts if prompt.reference]
    assert 0.8 * len(prompts) <= len(with_reference) < len(prompts)
    assert {len(prompt.contexts) for prompt in prompts} == {1, 2, 3}


def test_rebuilding_reproduces_the_committed_file_byte_for_byte(tmp_path: Path) -> None:
    assert to_jsonl(build_prompts()).encode() == DEFAULT_PROMPTS.read_bytes()
    output = tmp_path / "prompts.jsonl"
    subprocess.run(
        [sys.executable, "-m", "demo.workload.build", "--output", str(output)],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
    )
    assert output.read_bytes() == DEFAULT_PROMPTS.read_bytes()


def test_the_answer_is_in_the_contexts_of_product_questions() -> None:
    prompts = {prompt.id: prompt for prompt in load_prompts()}
    weight = prompts["product-ridgeline-2-weight"]
    assert weight.reference == "The Ridgeline 2 weighs 1.85 kg."
    assert any("It weighs 1.85 kg" in context for context in weight.contexts)
    fee = prompts["returns-fee-1"]
    assert any("flat 6 euros" in context for context in fee.contexts)


def test_no_workload_text_overlaps_the_evaluation_sets() -> None:
    """The curator drops training rows that share an 8-gram with an evaluation prompt or reference."""
    decontaminator = Decontaminator.for_evaluation_sets()
    contaminated = [
        prompt.id
        for prompt in load_prompts()
        if decontaminator.contaminated(prompt.prompt, prompt.reference or "", *prompt.contexts)
    ]
    assert contaminated == []


def test_chat_messages_carry_the_passages_and_the_question_only() -> None:
    prompt = next(prompt for prompt in load_prompts() if len(prompt.contexts) == 3)
    system, user = chat_messages(prompt)
    assert system["role"] == "system"
    for number, context in enumerate(prompt.contexts, start=1):
        assert f"[{number}] {context}" in system["content"]
    assert user == {"role": "user", "content": prompt.prompt}
    assert "60" not in system["content"] and "word" not in system["content"].lower()


def _line(**overrides: object) -> str:
    row: dict[str, object] = {
        "id": "x-1",
        "category": "policy",
        "source": "x",
        "held_out": False,
        "prompt": "Is it free?",
        "contexts": ["It is free."],
        "reference": None,
    }
    row.update(overrides)
    return json.dumps(row)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (_line() + "\n{not json\n", ":2: invalid prompt"),
        (_line(contexts=[]) + "\n", ":1: invalid prompt: contexts"),
        (_line(contexts=["a", "b", "c", "d"]) + "\n", ":1: invalid prompt: contexts"),
        (_line(contexts=["  "]) + "\n", "has an empty context"),
        (_line(category="weather") + "\n", ":1: invalid prompt: category"),
        (_line(extra=1) + "\n", ":1: invalid prompt: extra"),
        (_line() + "\n" + _line() + "\n", "duplicate prompt id 'x-1'"),
        ("\n", "holds no prompts"),
    ],
)
def test_a_broken_prompts_file_is_refused_with_the_line_and_field(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "prompts.jsonl"
    path.write_text(text)
    with pytest.raises(WorkloadError, match=None) as raised:
        load_prompts(path)
    assert message in str(raised.value)
    assert str(path) in str(raised.value)


def test_a_missing_prompts_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(WorkloadError, match="cannot be read"):
        load_prompts(tmp_path / "absent.jsonl")
