"""The model behind the gateway: one base model in memory, LoRA adapters of registered versions on top.

An adapter is a registered MLflow version whose artifact is a PEFT adapter directory
(``models:/<name>/<version>``, as the trainer registers it); its ``adapter_config.json`` names the base
model it applies to, which must be the base this engine holds. The version label ``base`` is the base
model itself (adapters disabled): the champion while no version holds the champion alias.

Generation is serialized (adapters switch on the one shared model) and runs off the event loop. Every
completion carries its token ids and the log-probs of those tokens under the serving model
(log-softmax of the raw logits, before temperature or top-p), which on-policy training needs.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.rollout.errors import RolloutError
from services.rollout.routing import BASE_VERSION
from shared.models import resolve_model_dir


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


class ChatEngine:
    """A causal LM with named LoRA adapters; thread-safe, one generation at a time."""

    def __init__(self, base_model: str) -> None:
        from shared.models import load_causal_lm

        self.base_model = base_model
        self.model, self.tokenizer = load_causal_lm(base_model)
        self.model.eval()
        self.adapters: set[str] = set()
        self._lock = threading.Lock()

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

    def unload_adapter(self, version: str) -> None:
        with self._lock:
            if version in self.adapters:
                self.model.delete_adapter(version)
                self.adapters.discard(version)

    # ------------------------------------------------------------------ generation

    def _inputs(self, messages: list[dict[str, str]]) -> Any:
        try:
            encoded = self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
        except Exception as exc:
            raise EngineError(f"messages cannot be rendered with the model's chat template: {exc}") from exc
        return encoded

    def _generate(
        self, messages: list[dict[str, str]], version: str, sampling: Sampling, streamer: Any
    ) -> Completion:
        import torch

        if version != BASE_VERSION and version not in self.adapters:
            raise EngineError(f"version {version} is not loaded")
        completion = Completion("", 0, [], [], "stop")
        inputs = self._inputs(messages)
        prompt_length = int(inputs["input_ids"].shape[1])
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
        with self._lock, torch.inference_mode():
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
            from peft import PeftModel

            if isinstance(self.model, PeftModel):
                if version == BASE_VERSION:
                    with self.model.disable_adapter():
                        output = self.model.generate(**inputs, **options)
                else:
                    self.model.set_adapter(version)
                    output = self.model.generate(**inputs, **options)
            else:
                output = self.model.generate(**inputs, **options)
        token_ids = output.sequences[0, prompt_length:].tolist()
        logprobs = []
        for step, token in enumerate(token_ids):
            step_logprobs = torch.log_softmax(output.logits[step][0].float(), dim=-1)
            logprobs.append(float(step_logprobs[token]))
        eos = self.tokenizer.eos_token_id
        finish = "stop" if token_ids and eos is not None and token_ids[-1] == eos else "length"
        completion.text = self.tokenizer.decode(token_ids, skip_special_tokens=True)
        completion.prompt_tokens = prompt_length
        completion.completion_token_ids = token_ids
        completion.completion_logprobs = logprobs
        completion.finish_reason = finish
        for stop in sampling.stop:
            if stop and stop in completion.text:
                completion.text = completion.text[: completion.text.index(stop)]
                completion.finish_reason = "stop"
        completion.ended_ns = time.time_ns()
        return completion

    def complete(self, messages: list[dict[str, str]], version: str, sampling: Sampling) -> Completion:
        """Answer in one piece (blocking: call it from a worker thread)."""
        return self._generate(messages, version, sampling, None)

    def stream(
        self, messages: list[dict[str, str]], version: str, sampling: Sampling
    ) -> tuple[Iterator[str], Any]:
        """Text pieces as they are generated, and a future of the whole ``Completion``.

        The generation runs in its own thread; iterate the pieces, then take ``future.result()``.
        """
        from concurrent.futures import Future

        from transformers import TextIteratorStreamer

        streamer = TextIteratorStreamer(
            self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=300
        )
        future: Future[Completion] = Future()

        def run() -> None:
            try:
                future.set_result(self._generate(messages, version, sampling, streamer))
            except BaseException as exc:
                future.set_exception(exc)
                streamer.end()

        threading.Thread(target=run, name=f"generate-{version}", daemon=True).start()
        return iter(streamer), future
