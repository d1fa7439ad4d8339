"""Dataset building: labeled traces become DPO pairs, GRPO prompt sets and SFT examples.

Pure functions over rows (no Kafka, no Redis, no Iceberg): the curator reads the rows and writes what
``build_dataset`` returns in one append. In order:

1. the latest label of each trace; consent checked again against the ``traces`` table (a trace that is
   missing there or has any row without consent is dropped);
2. filters: prompt and response length bounds, decontamination against every evaluation set (n-gram
   overlap of prompt or response), exact duplicates (the best-rewarded copy stays);
3. prompt groups: the same normalized prompt, merged with near-duplicates by MiniLM cosine; each item
   keeps the chat its (chosen) answer followed, as served, so training sees what the model saw;
4. the held-out split by prompt hash: a prompt whose hash falls under ``eval_fraction`` is held out and
   takes its whole group with it, so no prompt (nor a near-duplicate) is in both splits;
5. items per group: DPO pairs (retry pairs from one session first, then best against worst) whose
   composite margin is at least ``dpo_margin``; one GRPO prompt with its contexts and the reward
   components to use; SFT examples of the traces rewarded at least ``sft_min_reward``;
6. replay: a ``replay_ratio`` share of the training items drawn from earlier datasets' training items
   (their consent, contamination and split checked again);
7. lineage on every item: source trace ids, their label versions, the configuration hash.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from services.labeler.settings import CuratorSettings
from shared.evalsets import Decontaminator
from shared.events import prompt_chat

Algorithm = Literal["dpo", "grpo", "sft"]
Embed = Callable[[Sequence[str]], npt.NDArray[np.float32]]

TRAIN, EVAL, REPLAY = "train", "eval", "replay"
DPO, GRPO, SFT = "dpo", "grpo", "sft"


@dataclass(frozen=True)
class Sample:
    """One labeled, consented trace as the curator sees it."""

    trace_id: str
    label_version: int
    composite_reward: float
    gated_by: str | None
    prompt: str
    response: str
    session_id: str | None
    contexts: tuple[str, ...]
    labeled_at: datetime | None = None
    messages: str | None = None
    """The chat the response followed, as served (JSON list of {role, content}), when the trace has it."""


@dataclass
class DatasetBuild:
    rows: list[dict[str, Any]]
    sizes: dict[str, int]
    algorithm: Algorithm
    dropped: dict[str, int] = field(default_factory=dict)


def normalize_prompt(prompt: str) -> str:
    return re.sub(r"\s+", " ", prompt.strip().lower())


def prompt_bucket(prompt: str) -> float:
    """A stable number in [0, 1) from a prompt's normalized text: the split decision."""
    digest = hashlib.sha256(normalize_prompt(prompt).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def served_messages(raw: Any, prompt: str) -> str | None:
    """The trace's input messages as JSON when they are a chat whose last user turn is ``prompt`` (what
    the model answered, system prompt and retrieved passages included); else None, and the dataset
    falls back to the prompt alone."""
    chat = prompt_chat(raw) if raw else None
    if chat is None or normalize_prompt(chat[-1]["content"]) != normalize_prompt(prompt):
        return None
    return json.dumps(chat, ensure_ascii=False)


def is_held_out(prompt: str, eval_fraction: float) -> bool:
    return prompt_bucket(prompt) < eval_fraction


def latest_labels(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The newest label version of every trace (duplicates of a version are the same label)."""
    best: dict[str, Mapping[str, Any]] = {}
    for row in rows:
        found = best.get(row["trace_id"])
        if found is None or row["label_version"] > found["label_version"]:
            best[row["trace_id"]] = row
    return [best[trace_id] for trace_id in sorted(best)]


def consented(trace_rows: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """trace id -> its row, for traces every row of which carries consent (one row without drops it)."""
    rows: dict[str, Mapping[str, Any]] = {}
    refused: set[str] = set()
    for row in trace_rows:
        if not row.get("consent"):
            refused.add(row["trace_id"])
        else:
            rows.setdefault(row["trace_id"], row)
    return {trace_id: row for trace_id, row in rows.items() if trace_id not in refused}


def _group_prompts(samples: Sequence[Sample], embed: Embed, threshold: float) -> list[list[Sample]]:
    """Groups of samples with the same or a near-duplicate prompt (union-find over prompt cosines)."""
    by_prompt: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_prompt[normalize_prompt(sample.prompt)].append(sample)
    prompts = sorted(by_prompt)
    parent = list(range(len(prompts)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    if len(prompts) > 1:
        vectors = embed(prompts)
        for start in range(0, len(prompts), 512):
            block = vectors[start : start + 512] @ vectors.T
            for offset, row in enumerate(block):
                i = start + offset
                for j in np.nonzero(row >= threshold)[0]:
                    if j > i:
                        a, b = find(i), find(int(j))
                        if a != b:
                            parent[max(a, b)] = min(a, b)
    groups: dict[int, list[Sample]] = defaultdict(list)
    for index, prompt in enumerate(prompts):
        groups[find(index)].extend(by_prompt[prompt])
    return [sorted(group, key=lambda s: s.trace_id) for _, group in sorted(groups.items())]


def _pairs(group: Sequence[Sample], config: CuratorSettings) -> list[tuple[Sample, Sample, str]]:
    """(chosen, rejected, origin) pairs of one prompt group, each trace used once, margin >= dpo_margin."""
    pairs: list[tuple[Sample, Sample, str]] = []
    used: set[str] = set()

    def eligible_chosen(sample: Sample) -> bool:
        return sample.gated_by is None and sample.composite_reward >= config.min_reward

    def greedy(candidates: Sequence[Sample], origin: str) -> None:
        ranked = sorted(candidates, key=lambda s: (-s.composite_reward, s.trace_id))
        top, bottom = 0, len(ranked) - 1
        while top < bottom and len(pairs) < config.max_pairs_per_prompt:
            chosen, rejected = ranked[top], ranked[bottom]
            if chosen.composite_reward - rejected.composite_reward < config.dpo_margin:
                break
            if eligible_chosen(chosen):
                pairs.append((chosen, rejected, origin))
                used.update((chosen.trace_id, rejected.trace_id))
                bottom -= 1
            top += 1

    sessions: dict[str, list[Sample]] = defaultdict(list)
    for sample in group:
        if sample.session_id:
            sessions[sample.session_id].append(sample)
    for session_id in sorted(sessions):
        if len(sessions[session_id]) > 1:
            greedy(sessions[session_id], "retry")
    greedy([s for s in group if s.trace_id not in used], "prompt")
    return pairs


def _item_id(kind: str, *parts: str) -> str:
    return f"{kind}-" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:20]


def build_dataset(
    *,
    dataset_id: str,
    project_id: str,
    labels: Sequence[Mapping[str, Any]],
    traces: Sequence[Mapping[str, Any]],
    earlier_items: Sequence[Mapping[str, Any]],
    config: CuratorSettings,
    decontaminator: Decontaminator,
    embed: Embed,
    reward_components: Sequence[str],
    config_hash: str,
    created_at: datetime,
) -> DatasetBuild:
    """The items of one dataset, ready for one append (see the module doc for the steps)."""
    dropped: dict[str, int] = defaultdict(int)
    allowed = consented(traces)
    samples: list[Sample] = []
    for label in latest_labels(labels):
        trace = allowed.get(label["trace_id"])
        if trace is None:
            dropped["no_consent"] += 1
            continue
        prompt = label.get("prompt") or trace.get("prompt") or ""
        response = label.get("response") or trace.get("response") or ""
        if not (config.min_prompt_chars <= len(prompt) <= config.max_prompt_chars) or not (
            config.min_response_chars <= len(response) <= config.max_response_chars
        ):
            dropped["length"] += 1
            continue
        if decontaminator.contaminated(prompt, response):
            dropped["contaminated"] += 1
            continue
        samples.append(
            Sample(
                trace_id=label["trace_id"],
                label_version=int(label["label_version"]),
                composite_reward=float(label["composite_reward"]),
                gated_by=label.get("gated_by"),
                prompt=prompt,
                response=response,
                session_id=label.get("session_id") or trace.get("session_id"),
                contexts=tuple(trace.get("contexts") or ()),
                labeled_at=label.get("labeled_at"),
                messages=served_messages(trace.get("input_messages"), prompt),
            )
        )
    unique: dict[tuple[str, str], Sample] = {}
    for sample in sorted(samples, key=lambda s: (-s.composite_reward, s.trace_id)):
        key = (normalize_prompt(sample.prompt), sample.response.strip())
        if key in unique:
            dropped["duplicate"] += 1
        else:
            unique[key] = sample
    groups = _group_prompts(list(unique.values()), embed, config.near_duplicate_similarity)

    rows: list[dict[str, Any]] = []
    eval_prompts: set[str] = set()

    def add(
        kind: str, split: str, item_id: str, prompt: str, sources: Sequence[Sample], **extra: Any
    ) -> None:
        rows.append(
            {
                "dataset_id": dataset_id,
                "project_id": project_id,
                "item_id": item_id,
                "split": split,
                "kind": kind,
                "prompt": prompt,
                "contexts": list(sources[0].contexts),
                "messages": sources[0].messages,
                "source_trace_ids": [s.trace_id for s in sources],
                "label_versions": [s.label_version for s in sources],
                "config_hash": config_hash,
                "created_at": created_at,
                **extra,
            }
        )

    components_json = json.dumps(list(reward_components))
    for group in groups:
        split = EVAL if any(is_held_out(s.prompt, config.eval_fraction) for s in group) else TRAIN
        if split == EVAL:
            eval_prompts.update(normalize_prompt(s.prompt) for s in group)
        for chosen, rejected, origin in _pairs(group, config):
            add(
                DPO,
                split,
                _item_id(f"{DPO}-{origin}", chosen.trace_id, rejected.trace_id),
                chosen.prompt,
                [chosen, rejected],
                chosen=chosen.response,
                rejected=rejected.response,
                chosen_reward=chosen.composite_reward,
                rejected_reward=rejected.composite_reward,
            )
        best = max(group, key=lambda s: (s.composite_reward, s.trace_id))
        if best.gated_by is None and best.composite_reward >= config.min_reward:
            add(
                GRPO,
                split,
                _item_id(GRPO, *(s.trace_id for s in group)),
                best.prompt,
                [best, *(s for s in group if s is not best)],
                completion=best.response,
                chosen_reward=best.composite_reward,
                reward_components=components_json,
            )
        for sample in group:
            if sample.gated_by is None and sample.composite_reward >= max(
                config.sft_min_reward, config.min_reward
            ):
                add(
                    SFT,
                    split,
                    _item_id(SFT, sample.trace_id),
                    sample.prompt,
                    [sample],
                    completion=sample.response,
                    chosen_reward=sample.composite_reward,
                )

    train_count = sum(1 for row in rows if row["split"] == TRAIN)
    rows += _replay(
        dataset_id=dataset_id,
        earlier_items=earlier_items,
        train_count=train_count,
        config=config,
        allowed=allowed,
        eval_prompts=eval_prompts,
        decontaminator=decontaminator,
        created_at=created_at,
        dropped=dropped,
    )
    sizes: dict[str, int] = defaultdict(int)
    for row in rows:
        sizes[row["split"]] += 1
        sizes[row["kind"]] += 1
        sizes[f"{row['split']}_{row['kind']}"] += 1
    sizes["total"] = len(rows)
    return DatasetBuild(
        rows=rows, sizes=dict(sizes), algorithm=suggest_algorithm(sizes, config), dropped=dict(dropped)
    )


def replay_count(train_count: int, ratio: float) -> int:
    """Replayed items so that replay / (train + replay) is ``ratio`` (rounded to whole items)."""
    if ratio <= 0 or train_count == 0:
        return 0
    return round(ratio * train_count / (1.0 - ratio))


def _replay(
    *,
    dataset_id: str,
    earlier_items: Sequence[Mapping[str, Any]],
    train_count: int,
    config: CuratorSettings,
    allowed: Mapping[str, Mapping[str, Any]],
    eval_prompts: set[str],
    decontaminator: Decontaminator,
    created_at: datetime,
    dropped: dict[str, int],
) -> list[dict[str, Any]]:
    wanted = replay_count(train_count, config.replay_ratio)
    if wanted == 0:
        return []
    candidates = []
    for item in sorted(earlier_items, key=lambda row: (row["dataset_id"], row["item_id"])):
        if item["split"] != TRAIN:
            continue
        if any(trace_id not in allowed for trace_id in item["source_trace_ids"] or ()):
            dropped["replay_no_consent"] += 1
            continue
        if normalize_prompt(item["prompt"]) in eval_prompts or is_held_out(
            item["prompt"], config.eval_fraction
        ):
            dropped["replay_held_out"] += 1
            continue
        texts = [item["prompt"], *(item.get(name) or "" for name in ("chosen", "rejected", "completion"))]
        if decontaminator.contaminated(*texts):
            dropped["replay_contaminated"] += 1
            continue
        candidates.append(item)
    chosen = random.Random(dataset_id).sample(candidates, min(wanted, len(candidates)))
    replayed = []
    for item in chosen:
        row = dict(item)
        row.update(
            dataset_id=dataset_id,
            item_id=f"replay-{item['dataset_id']}-{item['item_id']}",
            split=REPLAY,
            source_dataset_id=item["dataset_id"],
            created_at=created_at,
        )
        replayed.append(row)
    return replayed


def suggest_algorithm(sizes: Mapping[str, int], config: CuratorSettings) -> Algorithm:
    if sizes.get(f"{TRAIN}_{DPO}", 0) >= config.min_dpo_pairs:
        return "dpo"
    if sizes.get(f"{TRAIN}_{GRPO}", 0) >= config.min_grpo_prompts:
        return "grpo"
    return "sft"
