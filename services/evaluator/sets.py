"""The three evaluation sets a candidate is measured on, as one list of ``EvalItem``.

- ``heldout``: the eval split of the dataset that produced the checkpoint (``datasets`` table, rows with
  ``split == "eval"``), one item per distinct prompt; its reference answer is the item's chosen answer
  (DPO) or completion (SFT, GRPO); it is asked in the chat the serving model answered (the item's
  ``messages``) when the item has it.
- ``golden``: the golden set versioned in the repo (prompts, contexts, reference answers).
- ``regression``: the regression and safety prompts with rule checks (``shared.evalsets.check_rules``).

Counts are bounded by the settings so a test (or a quick check) evaluates a few items of each.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyiceberg.expressions import And, EqualTo

from services.evaluator.errors import EvaluationError
from services.evaluator.settings import EvaluationSettings
from shared.evalsets import RegressionItem, load_golden, load_regression
from shared.events import prompt_chat
from shared.store import DATASETS, IcebergStore

HELDOUT, GOLDEN, REGRESSION = "heldout", "golden", "regression"
SET_NAMES = (HELDOUT, GOLDEN, REGRESSION)


@dataclass(frozen=True)
class EvalItem:
    """One prompt both models answer."""

    set_name: str
    item_id: str
    prompt: str
    contexts: tuple[str, ...] = ()
    reference: str | None = None
    system: str | None = None
    checks: Mapping[str, Any] = field(default_factory=dict)
    served: tuple[tuple[str, str], ...] = ()
    """The chat as the serving model saw it, (role, content) per turn: a dataset item's messages."""

    @property
    def scored(self) -> bool:
        """Whether the item is scored with the reward components and the pairwise judge (not rules)."""
        return self.set_name != REGRESSION

    def messages(self, include_contexts: bool = True) -> list[dict[str, str]]:
        """The chat the model answers: the served chat when the item has one; else the system prompt
        when the item has one, then the user turn (with the contexts when asked)."""
        if self.served:
            return [{"role": role, "content": content} for role, content in self.served]
        user = self.prompt
        if include_contexts and self.contexts:
            joined = "\n\n".join(self.contexts)
            user = f"Context:\n{joined}\n\nQuestion: {self.prompt}"
        messages = [{"role": "system", "content": self.system}] if self.system else []
        return [*messages, {"role": "user", "content": user}]

    def regression_item(self) -> RegressionItem:
        return RegressionItem(
            id=self.item_id, prompt=self.prompt, checks=dict(self.checks), system=self.system
        )


def _served(raw: Any) -> tuple[tuple[str, str], ...]:
    """A dataset item's served chat; empty when it has none or it is not a chat ending with a user turn
    (the item is then asked in the evaluator's own format)."""
    chat = prompt_chat(raw) if raw else None
    return tuple((m["role"], m["content"]) for m in chat) if chat else ()


def heldout_items(rows: Sequence[Mapping[str, Any]], limit: int) -> list[EvalItem]:
    """One item per distinct prompt of a dataset's eval rows, in item-id order, at most ``limit``."""
    seen: set[str] = set()
    items: list[EvalItem] = []
    for row in sorted(rows, key=lambda r: str(r.get("item_id"))):
        prompt = row.get("prompt") or ""
        if row.get("split") != "eval" or not prompt.strip() or prompt in seen:
            continue
        seen.add(prompt)
        reference = row.get("chosen") if row.get("kind") == "dpo" else row.get("completion")
        items.append(
            EvalItem(
                set_name=HELDOUT,
                item_id=str(row.get("item_id")),
                prompt=prompt,
                contexts=tuple(row.get("contexts") or ()),
                reference=reference or row.get("chosen") or None,
                served=_served(row.get("messages")),
            )
        )
        if len(items) >= limit:
            break
    return items


def read_heldout(store: IcebergStore, dataset_id: str, limit: int) -> list[EvalItem]:
    """The held-out items of ``dataset_id`` (none when the dataset or the table does not exist)."""
    if limit == 0:
        return []
    try:
        table = store.read(DATASETS, And(EqualTo("dataset_id", dataset_id), EqualTo("split", "eval")))  # type: ignore[call-arg,misc]
    except Exception as exc:  # no table yet, a catalog error: say which dataset could not be read
        if type(exc).__name__ in ("NoSuchTableError", "NoSuchNamespaceError"):
            return []
        raise EvaluationError(f"cannot read the held-out split of dataset {dataset_id!r}: {exc}") from exc
    return heldout_items(table.to_pylist(), limit)


def golden_items(settings: EvaluationSettings) -> list[EvalItem]:
    items = load_golden(settings.golden_path)
    limit = len(items) if settings.golden_limit is None else settings.golden_limit
    return [
        EvalItem(set_name=GOLDEN, item_id=g.id, prompt=g.prompt, contexts=g.contexts, reference=g.reference)
        for g in items[:limit]
    ]


def regression_items(settings: EvaluationSettings) -> list[EvalItem]:
    items = load_regression(settings.regression_path)
    limit = len(items) if settings.regression_limit is None else settings.regression_limit
    return [
        EvalItem(set_name=REGRESSION, item_id=r.id, prompt=r.prompt, system=r.system, checks=r.checks)
        for r in items[:limit]
    ]


def evaluation_items(settings: EvaluationSettings, store: IcebergStore, dataset_id: str) -> list[EvalItem]:
    """Every item of the three sets for the checkpoint of ``dataset_id``."""
    items = [
        *read_heldout(store, dataset_id, settings.heldout_limit),
        *golden_items(settings),
        *regression_items(settings),
    ]
    if not items:
        raise EvaluationError("no evaluation items: every set is empty or limited to 0")
    return items
