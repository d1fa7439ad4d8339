"""A dataset snapshot becomes the records TRL reads; an empty or broken one fails the job with its reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from services.trainer.data import LoadedDataset, read_dataset, rows_for, to_hf_dataset, training_records
from services.trainer.errors import DatasetBroken, DatasetEmpty
from shared.settings import KaizenSettings
from shared.store import IcebergStore
from tests.services.trainer.support import dpo_rows, write_dataset

pytestmark = pytest.mark.integration


def test_train_and_replay_items_are_trained_eval_items_held_out(settings: KaizenSettings) -> None:
    rows = dpo_rows("ds-1", settings.project_id, 4) + dpo_rows("ds-1", settings.project_id, 2, split="eval")
    rows[1]["split"] = "replay"
    for index, row in enumerate(rows):
        row["item_id"] = f"item-{index}"
    snapshot = write_dataset(settings, rows + dpo_rows("ds-other", settings.project_id, 3))
    loaded = read_dataset(IcebergStore(settings), "ds-1", snapshot)
    assert loaded.sizes == {"train": 4, "eval": 2}
    dataset = to_hf_dataset(loaded, "dpo", conversational=True)
    assert len(dataset) == 4
    first = dataset[0]
    assert first["prompt"] == [{"role": "user", "content": rows[0]["prompt"]}]
    assert first["chosen"] == [{"role": "assistant", "content": rows[0]["chosen"]}]
    assert first["rejected"] == [{"role": "assistant", "content": rows[0]["rejected"]}]


def test_a_dataset_without_train_items_is_empty(settings: KaizenSettings) -> None:
    snapshot = write_dataset(settings, dpo_rows("ds-eval-only", settings.project_id, 2, split="eval"))
    loaded = read_dataset(IcebergStore(settings), "ds-eval-only", snapshot)
    with pytest.raises(DatasetEmpty, match="0 train items") as failure:
        to_hf_dataset(loaded, "dpo", conversational=True)
    assert failure.value.reason == "empty_dataset"
    nothing = read_dataset(IcebergStore(settings), "ds-that-does-not-exist", snapshot)
    with pytest.raises(DatasetEmpty):
        to_hf_dataset(nothing, "dpo", conversational=True)


def test_a_snapshot_that_cannot_be_read_is_broken(settings: KaizenSettings) -> None:
    write_dataset(settings, dpo_rows("ds-2", settings.project_id, 2))
    with pytest.raises(DatasetBroken, match="snapshot 12345") as failure:
        read_dataset(IcebergStore(settings), "ds-2", 12345)
    assert failure.value.reason == "broken_dataset"


def test_rows_that_miss_what_the_algorithm_needs_are_broken() -> None:
    now = datetime.now(UTC)
    pair = {
        "item_id": "a",
        "kind": "dpo",
        "prompt": "Q?",
        "chosen": "A.",
        "rejected": None,
        "created_at": now,
    }
    with pytest.raises(DatasetBroken, match="not a preference pair"):
        training_records([pair], "dpo", conversational=False)
    with pytest.raises(DatasetBroken, match="empty prompt"):
        training_records([{**pair, "prompt": " ", "rejected": "B."}], "dpo", conversational=False)
    sft = {"item_id": "b", "kind": "sft", "prompt": "Q?", "completion": None}
    with pytest.raises(DatasetBroken, match="no completion"):
        training_records([sft], "sft", conversational=False)
    grpo = {"item_id": "c", "kind": "grpo", "prompt": "Q?", "reward_components": "not json"}
    with pytest.raises(DatasetBroken, match="reward_components"):
        training_records([grpo], "grpo", conversational=False)


def test_sft_and_grpo_records() -> None:
    pair = {"item_id": "a", "kind": "dpo", "prompt": "Q?", "chosen": "A.", "rejected": "B."}
    assert training_records([pair], "sft", conversational=False) == [{"prompt": "Q?", "completion": "A."}]
    prompt = {
        "item_id": "b",
        "kind": "grpo",
        "prompt": "Q?",
        "contexts": ["doc"],
        "completion": "ref",
        "reward_components": json.dumps(["string_similarity"]),
    }
    assert training_records(
        [prompt, {**prompt, "reward_components": None}],
        "grpo",
        conversational=True,
        default_components=["context_similarity"],
    ) == [
        {
            "prompt": [{"role": "user", "content": "Q?"}],
            "reward_components": ["string_similarity"],
            "contexts": ["doc"],
            "reference": "ref",
        },
        {
            "prompt": [{"role": "user", "content": "Q?"}],
            "reward_components": ["context_similarity"],
            "contexts": ["doc"],
            "reference": "ref",
        },
    ]


def test_each_algorithm_selects_its_own_kind_from_a_curated_dataset() -> None:
    rows = [
        {"item_id": "d", "kind": "dpo", "prompt": "Q?", "chosen": "A.", "rejected": "B."},
        {"item_id": "s", "kind": "sft", "prompt": "Q?", "completion": "S."},
        {"item_id": "g", "kind": "grpo", "prompt": "Q?", "completion": "G.", "contexts": []},
    ]
    assert [row["item_id"] for row in rows_for(rows, "dpo")] == ["d"]
    assert [row["item_id"] for row in rows_for(rows, "sft")] == ["s"]
    assert [row["item_id"] for row in rows_for(rows, "grpo")] == ["g"]
    # without sft rows, SFT imitates the chosen answers; without grpo rows, GRPO uses every prompt
    assert [row["item_id"] for row in rows_for(rows[:1], "sft")] == ["d"]
    assert [row["item_id"] for row in rows_for(rows[:2], "grpo")] == ["d", "s"]
    assert rows_for(rows[1:], "dpo") == []
    loaded = LoadedDataset("ds", train=rows[1:], eval=[])
    with pytest.raises(DatasetEmpty, match="0 train items of kind dpo for dpo"):
        to_hf_dataset(loaded, "dpo", conversational=False)
    assert to_hf_dataset(LoadedDataset("ds", train=rows, eval=[]), "dpo", conversational=False).num_rows == 1
    with pytest.raises(DatasetBroken, match="unknown algorithm 'ppo'"):
        rows_for(rows, "ppo")


def test_items_are_prompted_with_the_chat_as_served() -> None:
    served = [
        {"role": "system", "content": "Answer from the passages.\n[1] The tent weighs 1.85 kg."},
        {"role": "user", "content": "How much does the tent weigh?"},
    ]
    pair = {
        "item_id": "a",
        "kind": "dpo",
        "prompt": "How much does the tent weigh?",
        "chosen": "1.85 kg.",
        "rejected": "About two kilos, I think.",
        "messages": json.dumps(served),
    }
    (chat,) = training_records([pair], "dpo", conversational=True)
    assert chat["prompt"] == served
    assert chat["chosen"] == [{"role": "assistant", "content": "1.85 kg."}]
    (plain,) = training_records([pair], "sft", conversational=False)
    assert plain["prompt"] == served[0]["content"] + "\n\n" + served[1]["content"]
    # Without messages (a dataset written before they were kept), the prompt alone is the user turn.
    (bare,) = training_records([{**pair, "messages": None}], "dpo", conversational=True)
    assert bare["prompt"] == [{"role": "user", "content": "How much does the tent weigh?"}]
    with pytest.raises(DatasetBroken, match="messages is not a JSON list"):
        training_records([{**pair, "messages": "{oops"}], "dpo", conversational=True)
    with pytest.raises(DatasetBroken, match="ending with a user turn"):
        training_records([{**pair, "messages": json.dumps(served[:1])}], "dpo", conversational=True)
