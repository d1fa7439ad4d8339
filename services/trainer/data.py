"""A dataset snapshot as the TRL trainers read it.

``dataset.ready`` names an Iceberg snapshot of the ``datasets`` table; the rows of one dataset id in that
snapshot are the dataset (train, replay and eval splits). The trainer trains on train + replay, in
TRL's conversational format when the tokenizer has a chat template (SmolLM2-Instruct does), so the
adapter learns answers the way the served model is prompted: a row's ``messages`` (the chat as served,
system prompt and retrieved passages included) is the prompt when the row has it, else the ``prompt``
column alone as one user turn. Without a chat template the turns are joined as plain text.

- dpo:  ``prompt`` / ``chosen`` / ``rejected`` (rows of kind dpo);
- sft:  ``prompt`` / ``completion`` (rows of kind sft; the chosen answers of dpo rows when there are none);
- grpo: ``prompt`` plus what the reward functions read: ``reward_components``, ``contexts`` and a
  ``reference`` answer when the row has one (rows of kind grpo; any rows when there are none).

The curator writes all three kinds into one dataset, so each algorithm first selects its own rows
(:func:`rows_for`).

A dataset with no train rows is ``DatasetEmpty``; a snapshot that cannot be read, or rows that miss what
the algorithm needs, is ``DatasetBroken``: both fail the job at once, with the reason recorded.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyiceberg.expressions import EqualTo

from services.trainer.errors import DatasetBroken, DatasetEmpty
from shared.events import prompt_chat
from shared.store import DATASETS, IcebergStore

if TYPE_CHECKING:
    from datasets import Dataset

TRAIN_SPLITS = ("train", "replay")

# The kinds each algorithm trains on, in order of preference: the first kind the dataset has wins.
KINDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "dpo": (("dpo",),),
    "sft": (("sft",), ("dpo",)),
    "grpo": (("grpo",), ("dpo", "sft")),
}


@dataclass(frozen=True)
class LoadedDataset:
    """The rows of one dataset, split into what the job trains on and what it holds out."""

    dataset_id: str
    train: list[dict[str, Any]]
    eval: list[dict[str, Any]]

    @property
    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "eval": len(self.eval)}


def read_dataset(store: IcebergStore, dataset_id: str, snapshot_id: int | None) -> LoadedDataset:
    """The rows of ``dataset_id`` as of ``snapshot_id`` (the latest snapshot when None)."""
    only_this = EqualTo("dataset_id", dataset_id)  # type: ignore[call-arg,misc]
    try:
        if snapshot_id is None:
            table = store.read(DATASETS, only_this)
        else:
            table = store.read_snapshot(DATASETS, snapshot_id, only_this)
    except Exception as exc:  # a snapshot that is gone, a table that does not exist, a catalog error
        raise DatasetBroken(
            f"cannot read dataset {dataset_id!r} at snapshot {snapshot_id}: {type(exc).__name__}: {exc}"
        ) from exc
    # Sorted by item id: the same snapshot gives the same order, so a resumed job sees the same batches.
    rows = sorted(table.to_pylist(), key=lambda row: str(row.get("item_id")))
    train = [row for row in rows if row.get("split") in TRAIN_SPLITS]
    held_out = [row for row in rows if row.get("split") == "eval"]
    return LoadedDataset(dataset_id=dataset_id, train=train, eval=held_out)


def _text(row: dict[str, Any], name: str) -> str:
    value = row.get(name)
    return value if isinstance(value, str) else ""


def _messages(row: dict[str, Any]) -> list[dict[str, str]] | None:
    """The row's served chat, None when it has none; a value that is not a chat breaks the dataset."""
    raw = row.get("messages")
    if not raw:
        return None
    chat = prompt_chat(raw)
    if chat is None:
        raise DatasetBroken(
            f"item {row.get('item_id')!r}: messages is not a JSON list of {{role, content}} ending with a "
            f"user turn: {str(raw)[:80]!r}"
        )
    return chat


def _components(row: dict[str, Any], default: Sequence[str]) -> list[str]:
    raw = row.get("reward_components")
    if not raw:
        return list(default)
    try:
        value = json.loads(raw)
    except (TypeError, ValueError) as exc:
        raise DatasetBroken(f"item {row.get('item_id')!r}: reward_components is not JSON: {raw!r}") from exc
    if isinstance(value, dict):
        value = list(value)
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise DatasetBroken(f"item {row.get('item_id')!r}: reward_components must be a list of names")
    return value or list(default)


def rows_for(rows: Sequence[dict[str, Any]], algorithm: str) -> list[dict[str, Any]]:
    """The rows ``algorithm`` trains on: those of its preferred kind present in ``rows`` (see KINDS)."""
    if algorithm not in KINDS:
        raise DatasetBroken(f"unknown algorithm {algorithm!r} (one of {', '.join(KINDS)})")
    for kinds in KINDS[algorithm]:
        selected = [row for row in rows if row.get("kind") in kinds]
        if selected:
            return selected
    return []


def training_records(
    rows: Sequence[dict[str, Any]],
    algorithm: str,
    *,
    conversational: bool,
    default_components: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """The records TRL's trainer for ``algorithm`` reads, from dataset rows; broken rows fail the job."""

    def prompt_of(row: dict[str, Any], text: str) -> Any:
        chat = _messages(row) or [{"role": "user", "content": text}]
        return chat if conversational else "\n\n".join(message["content"] for message in chat)

    def answer_of(text: str) -> Any:
        return [{"role": "assistant", "content": text}] if conversational else text

    records: list[dict[str, Any]] = []
    for row in rows:
        item = row.get("item_id")
        prompt = _text(row, "prompt")
        if not prompt.strip():
            raise DatasetBroken(f"item {item!r} has an empty prompt")
        if algorithm == "dpo":
            chosen, rejected = _text(row, "chosen"), _text(row, "rejected")
            if row.get("kind") != "dpo" or not chosen or not rejected:
                raise DatasetBroken(
                    f"item {item!r} (kind {row.get('kind')!r}) is not a preference pair: DPO needs "
                    "chosen and rejected answers"
                )
            records.append(
                {
                    "prompt": prompt_of(row, prompt),
                    "chosen": answer_of(chosen),
                    "rejected": answer_of(rejected),
                }
            )
        elif algorithm == "sft":
            completion = _text(row, "completion") or (
                _text(row, "chosen") if row.get("kind") == "dpo" else ""
            )
            if not completion:
                raise DatasetBroken(f"item {item!r} (kind {row.get('kind')!r}) has no completion to imitate")
            records.append({"prompt": prompt_of(row, prompt), "completion": answer_of(completion)})
        elif algorithm == "grpo":
            records.append(
                {
                    "prompt": prompt_of(row, prompt),
                    "reward_components": _components(row, default_components),
                    "contexts": list(row.get("contexts") or []),
                    "reference": _text(row, "completion") or _text(row, "chosen"),
                }
            )
        else:
            raise DatasetBroken(f"unknown algorithm {algorithm!r}")
    return records


def to_hf_dataset(
    loaded: LoadedDataset,
    algorithm: str,
    *,
    conversational: bool,
    min_items: int = 1,
    default_components: Sequence[str] = (),
) -> Dataset:
    """The train split as a ``datasets.Dataset`` for TRL, or ``DatasetEmpty`` below ``min_items`` rows."""
    from datasets import Dataset

    rows = rows_for(loaded.train, algorithm)
    if len(rows) < max(1, min_items):
        kinds = " or ".join("/".join(group) for group in KINDS.get(algorithm, ()))
        raise DatasetEmpty(
            f"dataset {loaded.dataset_id!r} has {len(rows)} train items of kind {kinds} for {algorithm} "
            f"(at least {max(1, min_items)} needed; {len(loaded.train)} train items of any kind, "
            f"eval items: {len(loaded.eval)})"
        )
    records = training_records(
        rows, algorithm, conversational=conversational, default_components=default_components
    )
    return Dataset.from_list(records)
