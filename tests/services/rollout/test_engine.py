"""The gateway's engine batches completions: requests waiting together share one ``generate`` call, each
row under its own version (PEFT mixed-adapter batches), and every caller gets exactly the answer, token
ids and log-probs it would have got alone; a row that cannot be served fails alone."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

import pytest

from services.rollout.engine import ChatEngine, Completion, EngineError, Sampling, StopFilter
from services.rollout.routing import BASE_VERSION
from shared.models import TINY_RANDOM_LLAMA

from .support import adapter_dir

GREEDY = Sampling(max_tokens=12, temperature=0.0)
QUESTIONS = [
    "How do I reset my password?",
    "What is the refund window for boots?",
    "Summarize the shipping policy.",
    "Which plan includes priority support?",
    "Can I change the delivery address?",
    "Why was my card declined?",
]


def messages(question: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": question}]


@pytest.fixture(scope="module")
def engine() -> ChatEngine:
    engine = ChatEngine(TINY_RANDOM_LLAMA, max_batch_size=8, batch_wait_ms=200.0)
    engine.load_adapter("1", str(adapter_dir(1)))
    engine.load_adapter("2", str(adapter_dir(2)))
    return engine


class GenerateCalls:
    """Counts the engine's real ``generate`` calls and the rows of each."""

    def __init__(self, engine: ChatEngine) -> None:
        self.engine = engine
        self.rows: list[int] = []
        self.original = engine.model.generate

    def __enter__(self) -> GenerateCalls:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.rows.append(int(kwargs["input_ids"].shape[0]))
            return self.original(*args, **kwargs)

        self.engine.model.generate = counted
        return self

    def __exit__(self, *exc: object) -> None:
        self.engine.model.generate = self.original


def alone(engine: ChatEngine, question: str, version: str, sampling: Sampling = GREEDY) -> Completion:
    return engine.complete(messages(question), version, sampling)


def test_a_mixed_batch_answers_each_caller_as_if_alone(engine: ChatEngine) -> None:
    versions = [BASE_VERSION, "1", "2", BASE_VERSION, "2", "1"]
    expected = [alone(engine, q, v) for q, v in zip(QUESTIONS, versions, strict=True)]

    with GenerateCalls(engine) as calls:
        futures = [engine.submit(messages(q), v, GREEDY) for q, v in zip(QUESTIONS, versions, strict=True)]
        answers = [future.result(timeout=120) for future in futures]
    assert calls.rows == [6], f"six waiting requests with one decoding share one generate call: {calls.rows}"

    for got, want in zip(answers, expected, strict=True):
        assert got.completion_token_ids == want.completion_token_ids
        assert got.text == want.text
        assert got.prompt_tokens == want.prompt_tokens
        assert got.finish_reason == want.finish_reason
        assert got.completion_logprobs == pytest.approx(want.completion_logprobs, abs=1e-4)
    # The adapters really differ from the base inside the batch.
    assert answers[0].completion_token_ids != alone(engine, QUESTIONS[0], "1").completion_token_ids


def test_different_decodings_are_separate_batches_and_a_bad_row_fails_alone(engine: ChatEngine) -> None:
    longer = Sampling(max_tokens=5, temperature=0.0)
    with GenerateCalls(engine) as calls:
        futures: list[Future[Completion]] = [
            engine.submit(messages(QUESTIONS[0]), BASE_VERSION, GREEDY),
            engine.submit(messages(QUESTIONS[1]), "1", longer),
            engine.submit(messages(QUESTIONS[2]), "9", GREEDY),  # never loaded
            engine.submit(messages(QUESTIONS[3]), "2", GREEDY),
        ]
        first, second, missing, fourth = futures
        assert len(first.result(timeout=120).completion_token_ids) <= 12
        assert len(second.result(timeout=120).completion_token_ids) <= 5
        with pytest.raises(EngineError, match="version 9 is not loaded"):
            missing.result(timeout=120)
        assert (
            fourth.result(timeout=120).completion_token_ids
            == alone(engine, QUESTIONS[3], "2").completion_token_ids
        )
    assert sorted(calls.rows[:2]) == [1, 2], f"greedy x12 (two rows) and greedy x5 (one row): {calls.rows}"


def test_seeded_sampling_runs_alone_and_repeats(engine: ChatEngine) -> None:
    seeded = Sampling(max_tokens=10, temperature=1.0, seed=7)
    with GenerateCalls(engine) as calls:
        futures = [engine.submit(messages(QUESTIONS[4]), "1", seeded) for _ in range(3)]
        answers = [future.result(timeout=120).completion_token_ids for future in futures]
    assert calls.rows == [1, 1, 1]
    assert answers[0] == answers[1] == answers[2]


def test_streaming_gives_the_same_answer_in_pieces(engine: ChatEngine) -> None:
    pieces, future = engine.stream(messages(QUESTIONS[5]), "2", GREEDY)
    text = "".join(pieces)
    completion = future.result(timeout=120)
    assert text.strip() == completion.text.strip()
    assert completion.completion_token_ids == alone(engine, QUESTIONS[5], "2").completion_token_ids


def test_stop_filter_passes_text_up_to_the_first_stop_string_across_pieces() -> None:
    stops = StopFilter(("\n\nUser:", "###"))
    pieces = ["The answer", " is 42.\n", "\nUs", "er: more", " text"]
    assert "".join(stops.feed(piece) for piece in pieces) + stops.flush() == "The answer is 42."
    assert stops.stopped

    held = StopFilter(("###",))
    assert held.feed("price: 4#") == "price: 4"  # the "#" could begin "###"
    assert held.feed("2 euros") == "#2 euros"  # ...it did not
    assert held.feed(" #") == " " and held.flush() == "#"

    assert StopFilter(()).feed("any text ###") == "any text ###"


def test_stop_strings_end_generation_and_the_text(engine: ChatEngine) -> None:
    free = alone(engine, QUESTIONS[1], "1")
    words = free.text.split()
    assert len(words) >= 3, free.text
    stop = words[2]
    cut = alone(engine, QUESTIONS[1], "1", Sampling(max_tokens=12, temperature=0.0, stop=(stop,)))
    assert cut.finish_reason == "stop"
    assert cut.text == free.text[: free.text.index(stop)]
    assert len(cut.completion_token_ids) <= len(free.completion_token_ids)

    pieces, future = engine.stream(messages(QUESTIONS[1]), "1", Sampling(12, 0.0, stop=(stop,)))
    streamed = StopFilter((stop,))
    text = "".join(streamed.feed(piece) for piece in pieces) + streamed.flush()
    assert text == future.result(timeout=120).text == cut.text


def test_a_bfloat16_engine_serves_base_and_adapters_in_bfloat16_and_a_bad_precision_is_named() -> None:
    import math

    import torch

    from shared.models import ModelError

    engine = ChatEngine(TINY_RANDOM_LLAMA, precision="bfloat16")
    engine.load_adapter("1", str(adapter_dir(1)))
    assert engine.precision == "bfloat16"
    assert {parameter.dtype for parameter in engine.model.get_base_model().parameters()} >= {torch.bfloat16}
    for version in (BASE_VERSION, "1"):
        completion = engine.complete(messages(QUESTIONS[0]), version, GREEDY)
        assert completion.completion_tokens == len(completion.completion_logprobs) > 0
        assert all(math.isfinite(value) and value <= 0 for value in completion.completion_logprobs)
    base = engine.complete(messages(QUESTIONS[0]), BASE_VERSION, GREEDY)
    adapted = engine.complete(messages(QUESTIONS[0]), "1", GREEDY)
    assert base.completion_token_ids != adapted.completion_token_ids, "the adapter changes the answer"

    with pytest.raises(ModelError, match="precision must be one of auto, float32, bfloat16, got 'fp8'"):
        ChatEngine(TINY_RANDOM_LLAMA, precision="fp8")
