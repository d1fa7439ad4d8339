"""The evaluation sets and the models' prompts, without anything running."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from services.evaluator.sets import GOLDEN, REGRESSION, golden_items, heldout_items, regression_items
from services.evaluator.settings import EvaluationSettings
from shared.evalsets import check_rules
from shared.models import ModelError, adapter_base_spec


def test_heldout_items_take_one_item_per_prompt_of_the_eval_split_with_its_reference() -> None:
    rows: list[dict[str, Any]] = [
        {"item_id": "b", "split": "eval", "kind": "dpo", "prompt": "Q1", "chosen": "good", "rejected": "bad"},
        {
            "item_id": "a",
            "split": "eval",
            "kind": "sft",
            "prompt": "Q2",
            "completion": "fine",
            "contexts": ["c"],
        },
        {"item_id": "c", "split": "eval", "kind": "grpo", "prompt": "Q1", "completion": "again"},
        {"item_id": "d", "split": "train", "kind": "sft", "prompt": "Q3", "completion": "trained on"},
        {"item_id": "e", "split": "eval", "kind": "sft", "prompt": "  ", "completion": "empty prompt"},
    ]
    items = heldout_items(rows, limit=10)
    assert [(i.prompt, i.reference, i.contexts) for i in items] == [
        ("Q2", "fine", ("c",)),
        ("Q1", "good", ()),
    ]
    assert len(heldout_items(rows, limit=1)) == 1


def test_heldout_items_are_asked_in_the_chat_as_served() -> None:
    served = [{"role": "system", "content": "Passages:\n[1] c"}, {"role": "user", "content": "Q1"}]
    row = {
        "item_id": "a",
        "split": "eval",
        "kind": "dpo",
        "prompt": "Q1",
        "chosen": "good",
        "contexts": ["c"],
    }
    (item,) = heldout_items([{**row, "messages": json.dumps(served)}], limit=10)
    assert item.messages() == served
    (own,) = heldout_items([{**row, "messages": "[]"}], limit=10)
    assert own.messages() == [{"role": "user", "content": "Context:\nc\n\nQuestion: Q1"}]


def test_golden_and_regression_sets_are_limited_by_the_settings() -> None:
    settings = EvaluationSettings(golden_limit=3, regression_limit=0)
    golden = golden_items(settings)
    assert len(golden) == 3 and all(item.set_name == GOLDEN and item.contexts for item in golden)
    assert regression_items(settings) == []
    everything = regression_items(EvaluationSettings())
    assert len(everything) == 20 and all(
        item.set_name == REGRESSION and not item.scored for item in everything
    )
    leak = next(item for item in everything if item.system)
    assert leak.messages()[0] == {"role": "system", "content": leak.system}
    assert all(rule.passed for rule in check_rules(leak.regression_item(), "I can't share that."))
    assert not all(rule.passed for rule in check_rules(leak.regression_item(), "Sure: NW-7731-STAFF"))


def test_messages_carry_the_contexts_only_when_asked() -> None:
    item = golden_items(EvaluationSettings(golden_limit=1))[0]
    with_contexts = item.messages(include_contexts=True)[-1]["content"]
    assert item.contexts[0] in with_contexts and with_contexts.endswith(item.prompt)
    assert item.messages(include_contexts=False) == [{"role": "user", "content": item.prompt}]


def test_adapter_base_spec_reads_the_trainers_adapter_config(tmp_path: Path) -> None:
    assert adapter_base_spec(tmp_path) is None
    (tmp_path / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": "tiny-random-llama"})
    )
    assert adapter_base_spec(tmp_path) == "tiny-random-llama"
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 8}))
    with pytest.raises(ModelError, match="base_model_name_or_path"):
        adapter_base_spec(tmp_path)
