"""The model behind the gateway: one base model in memory, LoRA adapters of registered versions on top.

An adapter is a registered MLflow version whose artifact is a PEFT adapter directory
(``models:/<name>/<version>``, as the trainer registers it); its ``adapter_config.json`` names the base
model it applies to, which must be the base this engine holds. The version label ``base`` is the base
model itself (adapters disabled): the champion while no version holds the champion alias.

Generation runs in one worker thread, off the event loop, in batches: the requests waiting with the same
decoding settings share one ``generate`` call (left padded), each row under its own version through PEFT's
mixed-adapter batches, which on a CPU answers several users for little more than the time of one. Every
completion carries its token ids and the log-probs of those tokens under the serving model
(log-softmax of the raw logits, before temperature or top-p), which on-policy training needs.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import Gauge, Histogram

from services.rollout.errors import RolloutError
from services.rollout.routing import BASE_VERSION
from shared.models import resolve_model_dir

BATCH_ROWS = Histogram(
    "kaizen_gateway_batch_rows",
    "Completions generated together in one batch",
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32),
)
ADAPTERS_LOADED = Gauge(
    "kaizen_gateway_adapter_loaded", "1 for each version whose LoRA adapter is loaded", ["version"]
)
PEFT_BASE = "__base__"
"""PEFT's adapter name for "no adapter" in a mixed-adapter batch."""


class EngineError(RolloutError):
    """A model or adapter that cannot be served, or a request the model cannot answer."""


@dataclass(frozen=True)
class Sampling:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_token_ids: list[int]
    completion_logprobs: list[float]
    finish_reason: str
    started_ns: int = field(default_factory=time.time_ns)
    ended_ns: int = 0

    @property
    def completion_tokens(self) -> int:
        return len(self.completion_token_ids)


def adapter_base(adapter_dir: Path) -> str:
    """The base model an adapter directory was trained on (``base_model_name_or_path``)."""
    config = adapter_dir / "adapter_config.json"
    if not config.is_file():
        raise EngineError(f"{adapter_dir} holds no adapter_config.json: not a PEFT adapter")
    return str(json.loads(config.read_text()).get("base_model_name_or_path") or "")


class StopFilter:
    """Streamed text up to (not including) the first stop string.

    A piece is passed on at once unless its end could be the beginning of a stop string: that tail is
    held back until the next piece shows whether the stop string completes.
    """

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = [stop for stop in stops if stop]
        self.held = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        if self.stopped:
            return ""
        text = self.held + piece
        found = [text.index(stop) for stop in self.stops if stop in text]
        if found:
            self.stopped, self.held = True, ""
            return text[: min(found)]
        hold = max(
            (size for stop in self.stops for size in range(1, len(stop)) if text.endswith(stop[:size])),
            default=0,
        )
        self.held = text[len(text) - hold :]
        return text[: len(text) - hold]

    def flush(self) -> str:
        """What was held back when the stream ends without completing a stop string."""
        text, self.held = ("" if self.stopped else self.held), ""
        return text


@dataclass
class _Pending:
    """A completion waiting for its batch."""

    messages: list[dict[str, str]]
    version: str
    sampling: Sampling
    future: Future[Completion]
    started_ns: int = field(default_factory=time.time_ns)

    @property
    def key(self) -> tuple[Any, ...]:
        """Requests that can share one ``generate`` call: the same decoding (a seeded one runs alone)."""
        s = self.sampling
        return (s.max_tokens, s.temperature, s.top_p, s.stop, id(self) if s.seed is not None else None)


class ChatEngine:
    """A causal LM with named LoRA adapters; thread-safe. Completions are batched: the requests that
    arrived while the last batch generated (or within ``batch_wait_ms`` of the first) and share a decoding
    run as one batch, each row under its own version; a streamed completion runs alone."""

    def __init__(
        self,
        base_model: str,
        *,
        max_batch_size: int = 8,
        batch_wait_ms: float = 0.0,
        precision: str = "float32",
    ) -> None:
        from shared.models import load_causal_lm, resolve_precision, torch_dtype

        self.base_model = base_model
        self.precision = resolve_precision(precision)
        self.model, self.tokenizer = load_causal_lm(base_model, dtype=torch_dtype(self.precision))
        self.model.eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.adapters: set[str] = set()
        self.max_batch_size = max_batch_size
        self.batch_wait_s = batch_wait_ms / 1000.0
        self._lock = threading.Lock()
        self._pending: deque[_Pending] = deque()
        self._pending_ready = threading.Condition()
        self._worker: threading.Thread | None = None

    # ------------------------------------------------------------------ adapters

    def load_adapter(self, version: str, model_uri: str) -> None:
        """Load a registered version's adapter (``models:/name/version``) under the name ``version``."""
        if version == BASE_VERSION or version in self.adapters:
            return
        directory = resolve_model_dir(model_uri)
        base = adapter_base(directory)
        if base not in (self.base_model, str(resolve_model_dir(self.base_model))):
            raise EngineError(
                f"version {version} ({model_uri}) is an adapter of base model {base!r}, but this gateway "
                f"serves base {self.base_model!r}"
            )
        from peft import PeftModel

        with self._lock:
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(str(directory), adapter_name=version)
            else:
                self.model = PeftModel.from_pretrained(self.model, str(directory), adapter_name=version)
            self.model.eval()
            self.adapters.add(version)
        ADAPTERS_LOADED.labels(version).set(1)

    def unload_adapter(self, version: str) -> None:
        with self._lock:
            if version in self.adapters:
                self.model.delete_adapter(version)
                self.adapters.discard(version)
                with contextlib.suppress(KeyError):
                    ADAPTERS_LOADED.remove(version)

    # ------------------------------------------------------------------ generation

    def submit(self, messages: list[dict[str, str]], version: str, sampling: Sampling) -> Future[Completion]:
        """Queue a completion; the batch worker answers it together with others of the same sampling."""
        future: Future[Completion] = Future()
        with self._pending_ready:
            self._pending.append(_Pending(messages, version, sampling, future))
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._batches, name="generate-batches", daemon=True)
                self._worker.start()
            self._pending_ready.notify()
        return future

    def complete(self, messages: list[dict[str, str]], version: str, sampling: Sampling) -> Completion:
        """Answer in one piece (blocking: call it from a worker thread, or await ``submit``)."""
        return self.submit(messages, version, sampling).result()

    def _next_batch(self) -> list[_Pending]:
        """The oldest waiting request and up to ``max_batch_size - 1`` more with the same sampling,
        gathered for at most ``batch_wait_s`` after the oldest was taken; the others keep their order."""
        with self._pending_ready:
            while not self._pending:
                self._pending_ready.wait()
            deadline = time.monotonic() + self.batch_wait_s
            key = self._pending[0].key
            while sum(item.key == key for item in self._pending) < self.max_batch_size:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._pending_ready.wait(remaining):
                    break
            batch = [item for item in self._pending if item.key == key][: self.max_batch_size]
            taken = {id(item) for item in batch}
            self._pending = deque(item for item in self._pending if id(item) not in taken)
            return batch

    def _batches(self) -> None:
        while True:
            batch = [item for item in self._next_batch() if item.future.set_running_or_notify_cancel()]
            if not batch:
                continue
            try:
                completions = self._generate(batch, None)
            except BaseException as exc:  # the whole batch failed: every caller hears why
                for item in batch:
                    item.future.set_exception(exc)
                continue
            for item, completion in zip(batch, completions, strict=True):
                if isinstance(completion, BaseException):
                    item.future.set_exception(completion)
                else:
                    item.future.set_result(completion)

    def _prompt(self, messages: list[dict[str, str]]) -> str:
        try:
            return str(
                self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            )
        except Exception as exc:
            raise EngineError(f"messages cannot be rendered with the model's chat template: {exc}") from exc

    def _generate(self, batch: list[_Pending], streamer: Any) -> list[Completion | BaseException]:
        """One ``generate`` call for the batch (left padded; each row under its own adapter through
        PEFT's mixed-adapter batches). A row whose version is not loaded or whose messages cannot be
        rendered gets its error and the rest go on."""
        import torch
        from peft import PeftModel

        results: list[Completion | BaseException] = []
        rows: list[tuple[int, str]] = []
        for index, item in enumerate(batch):
            try:
                if item.version != BASE_VERSION and item.version not in self.adapters:
                    raise EngineError(f"version {item.version} is not loaded")
                rows.append((index, self._prompt(item.messages)))
                results.append(Completion("", 0, [], [], "stop", started_ns=item.started_ns))
            except EngineError as exc:
                results.append(exc)
        if not rows:
            return results
        sampling = batch[rows[0][0]].sampling
        inputs = self.tokenizer(
            [text for _, text in rows], return_tensors="pt", padding=True, add_special_tokens=False
        )
        padded_length = int(inputs["input_ids"].shape[1])
        options: dict[str, Any] = {
            "max_new_tokens": sampling.max_tokens,
            "return_dict_in_generate": True,
            "output_logits": True,
            "pad_token_id": self.tokenizer.pad_token_id,
            "streamer": streamer,
        }
        if sampling.temperature > 0:
            options |= {"do_sample": True, "temperature": sampling.temperature, "top_p": sampling.top_p}
        else:
            options |= {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        if any(sampling.stop):  # generation ends at a stop string (the text is cut before it below)
            options |= {"stop_strings": [stop for stop in sampling.stop if stop], "tokenizer": self.tokenizer}
        with self._lock, torch.inference_mode():
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
            if isinstance(self.model, PeftModel):
                options["adapter_names"] = [
                    PEFT_BASE if batch[index].version == BASE_VERSION else batch[index].version
                    for index, _ in rows
                ]
            output = self.model.generate(**inputs, **options)
        BATCH_ROWS.observe(len(rows))
        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        for row, (index, _) in enumerate(rows):
            completion = results[index]
            assert isinstance(completion, Completion)
            token_ids = output.sequences[row, padded_length:].tolist()
            finish = "length"
            if eos is not None and eos in token_ids:
                token_ids = token_ids[: token_ids.index(eos) + 1]
                finish = "stop"
            elif any(sampling.stop):  # a row that ended on a stop string before the others is padded
                while len(token_ids) > 1 and token_ids[-1] == pad:
                    token_ids.pop()
            steps = torch.stack([output.logits[step][row] for step in range(len(token_ids))]).float()
            chosen = torch.log_softmax(steps, dim=-1).gather(1, torch.tensor(token_ids)[:, None])
            completion.text = self.tokenizer.decode(token_ids, skip_special_tokens=True)
            completion.prompt_tokens = int(inputs["attention_mask"][row].sum())
            completion.completion_token_ids = token_ids
            completion.completion_logprobs = chosen[:, 0].tolist()
            completion.finish_reason = finish
            for stop in batch[index].sampling.stop:
                if stop and stop in completion.text:
                    completion.text = completion.text[: completion.text.index(stop)]
                    completion.finish_reason = "stop"
            completion.ended_ns = time.time_ns()
        return results

    def stream(
        self, messages: list[dict[str, str]], version: str, sampling: Sampling
    ) -> tuple[Iterator[str], Any]:
        """Text pieces as they are generated, and a future of the whole ``Completion``.

        The generation runs in its own thread; iterate the pieces, then take ``future.result()``.
        """
        from transformers import TextIteratorStreamer

        streamer = TextIteratorStreamer(
            self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=300
        )
        future: Future[Completion] = Future()

        def run() -> None:
            try:
                (completion,) = self._generate([_Pending(messages, version, sampling, future)], streamer)
                if isinstance(completion, BaseException):
                    raise completion
                future.set_result(completion)
            except BaseException as exc:
                future.set_exception(exc)
                streamer.end()

        threading.Thread(target=run, name=f"generate-{version}", daemon=True).start()
        return iter(streamer), future
