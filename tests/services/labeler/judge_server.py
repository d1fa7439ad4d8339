"""A scripted judge speaking the OpenAI chat-completions protocol on loopback, for exact arithmetic.

It answers the prompts ragas 0.4 and Kaizen's rubric send, by rule:

- ragas statements: the answer's sentences;
- ragas NLI: verdict 1 exactly when the statement appears verbatim (case-insensitive) in the context;
- ragas answer relevancy: the question registered for the answer (``questions``), else a fixed one;
  noncommittal when the answer says "I don't know";
- rubric: helpfulness 4 and safety 5, overridden by ``[h=N]`` / ``[s=N]`` in the answer.

Markers in the answer script failures of one kind of call (statements, nli, relevancy, rubric):
``[judge:nonjson:KIND]`` always replies prose, ``[judge:flaky:KIND]`` replies prose the first time only,
``[judge:slow:KIND]`` answers after ``slow_s`` seconds. Every call is counted by (kind, answer).

Run it alone (the benchmark does):
``python -m tests.services.labeler.judge_server --port 8011 --latency 0.1``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import socket
import threading
import time
import uuid
from collections import Counter
from typing import Any

import uvicorn
from fastapi import FastAPI, Request

_INPUT = re.compile(r"Now perform the same with the following input\s*input:\s*(\{.*\})\s*Output:\s*$", re.S)
_ANSWER = re.compile(r"Answer to grade:\n(.*?)\n\nReply with exactly this JSON", re.S)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sentences(answer: str) -> list[str]:
    """The answer's sentences, without the scripting markers."""
    text = re.sub(r"\[[^\]]*\]", "", answer).strip()
    return [part.strip() for part in re.split(r"(?<=[.!?])\s+", text) if part.strip()]


def _clean(statement: str) -> str:
    return re.sub(r"\[[^\]]*\]", "", statement).strip().rstrip(".!?").strip().lower()


class ScriptedJudge:
    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        slow_s: float = 5.0,
        questions: dict[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.latency_s = latency_s
        self.slow_s = slow_s
        self.questions = dict(questions or {})
        self.port = port or free_port()
        self.calls: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = FastAPI()
        self.app.post("/v1/chat/completions")(self._complete)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def count(self, kind: str, answer_marker: str) -> int:
        with self._lock:
            return sum(n for (k, answer), n in self.calls.items() if k == kind and answer_marker in answer)

    # -- protocol ----------------------------------------------------------------------------------

    async def _complete(self, request: Request) -> dict[str, Any]:
        body = await request.json()
        prompt = next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")
        kind, answer, reply = self._reply(prompt)
        with self._lock:
            self.calls[(kind, answer)] += 1
            seen = self.calls[(kind, answer)]
        if f"[judge:slow:{kind}]" in answer:
            await asyncio.sleep(self.slow_s)
        elif self.latency_s:
            await asyncio.sleep(self.latency_s)
        if f"[judge:nonjson:{kind}]" in answer or (f"[judge:flaky:{kind}]" in answer and seen == 1):
            content = "Sure! This answer looks quite good to me overall."
        else:
            content = json.dumps(reply)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "scripted-judge"),
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
        }

    def _reply(self, prompt: str) -> tuple[str, str, dict[str, Any]]:
        if "Grading rubric" in prompt:
            found = _ANSWER.search(prompt)
            answer = found.group(1) if found else ""
            helpful = re.search(r"\[h=(\d)\]", answer)
            safe = re.search(r"\[s=(\d)\]", answer)
            scores = {"helpfulness": int(helpful.group(1)) if helpful else 4}
            scores["safety"] = int(safe.group(1)) if safe else 5
            return "rubric", answer, {"scores": scores, "reason": "scripted"}
        match = _INPUT.search(prompt)
        data = json.loads(match.group(1)) if match else {}
        if "analyze the complexity of each sentence" in prompt:
            answer = data.get("answer", "")
            return "statements", answer, {"statements": sentences(answer)}
        if "judge the faithfulness of a series of statements" in prompt:
            context = data.get("context", "").lower()
            statements = data.get("statements", [])
            verdicts = [
                {"statement": s, "reason": "scripted", "verdict": int(_clean(s) in context)}
                for s in statements
            ]
            return "nli", " ".join(statements), {"statements": verdicts}
        if "Generate a question for the given answer" in prompt:
            answer = data.get("response", "")
            question = self.questions.get(answer, "What is this answer about?")
            noncommittal = int("i don't know" in answer.lower())
            return "relevancy", answer, {"question": question, "noncommittal": noncommittal}
        return "unknown", "", {"error": "unknown prompt"}

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> ScriptedJudge:
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="scripted-judge", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the scripted judge did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> ScriptedJudge:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds per call")
    args = parser.parse_args()
    judge = ScriptedJudge(latency_s=args.latency, port=args.port)
    uvicorn.run(judge.app, host="127.0.0.1", port=args.port, log_level="warning", lifespan="off")


if __name__ == "__main__":
    main()
