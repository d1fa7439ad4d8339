"""A small OpenAI-compatible chat server on loopback that answers the workload's prompts by rule
(and a reader of a Kafka topic from its beginning).

Each version answers in a style: ``grounded`` repeats the first sentence of the first retrieved passage
(short and grounded), ``rambling`` gives a long generic answer that uses none of them. A caller is
pinned to a version by the hash of its ``X-Kaizen-Session`` header, as the gateway pins sessions.

How the server names the version and the trace id is configurable, to cover each way the gateway may
say it: ``headers`` (``X-Kaizen-Model-Version`` and ``X-Kaizen-Trace-Id``), or ``body`` (the
``model`` field ``<name>:<version>`` and the response ``id`` ``chatcmpl-<trace id>``). Every request is
recorded (headers and body) with the trace id and version it was given.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import socket
import time
from dataclasses import dataclass
from typing import Any, Literal

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

RAMBLING = (
    "Thank you so much for reaching out to us today, we really appreciate your question and your "
    "interest. There are many different things to consider here, and every situation is unique in its "
    "own way, so it is always a good idea to think carefully about your personal needs, your budget, "
    "your plans and your general preferences before making any kind of decision. Many people find that "
    "doing some research online, reading reviews, asking friends and family, and comparing several "
    "options side by side helps a lot. In general, we would recommend taking your time, staying "
    "patient, and considering all of the various factors involved. If anything remains unclear, please "
    "feel free to get in touch again at any moment, and we will be more than happy to help you further "
    "with whatever you might need in the future. Have a wonderful day and enjoy the outdoors!"
)

Style = Literal["grounded", "rambling"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def first_passage_sentence(system: str) -> str:
    found = re.search(r"^\[1\] (.+)$", system, re.M)
    if found is None:
        return "I do not know."
    return re.split(r"(?<=[.!?])\s+", found.group(1).strip())[0]


@dataclass
class Served:
    headers: dict[str, str]
    body: dict[str, Any]
    version: str
    trace_id: str


class ChatServer:
    """Serves ``/v1/chat/completions`` on a free loopback port inside the test's event loop."""

    def __init__(self, styles: dict[str, Style], *, naming: Literal["headers", "body"] = "headers") -> None:
        self.styles = styles
        self.naming = naming
        self.port = free_port()
        self.served: list[Served] = []
        app = FastAPI()
        app.post("/v1/chat/completions")(self._complete)
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None, access_log=False)
        )
        self.task: asyncio.Task[None] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def version_for(self, session: str | None) -> str:
        versions = sorted(self.styles)
        digest = hashlib.sha256((session or "").encode()).digest()
        return versions[digest[0] % len(versions)]

    async def _complete(self, request: Request) -> JSONResponse:
        body = await request.json()
        headers = {key.lower(): value for key, value in request.headers.items()}
        version = self.version_for(headers.get("x-kaizen-session"))
        system = next((m["content"] for m in body["messages"] if m["role"] == "system"), "")
        answer = first_passage_sentence(system) if self.styles[version] == "grounded" else RAMBLING
        trace_id = secrets.token_hex(16)
        self.served.append(Served(headers, body, version, trace_id))
        document = {
            "id": f"chatcmpl-{trace_id}" if self.naming == "body" else f"chatcmpl-{secrets.token_hex(6)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": f"{body['model']}:{version}" if self.naming == "body" else body["model"],
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70},
        }
        extra = {"X-Kaizen-Model-Version": version, "X-Kaizen-Trace-Id": trace_id}
        return JSONResponse(document, headers=extra if self.naming == "headers" else None)

    async def __aenter__(self) -> ChatServer:
        self.task = asyncio.create_task(self.server.serve())
        async with asyncio.timeout(30):
            while not self.server.started:
                if self.task.done():
                    self.task.result()
                await asyncio.sleep(0.02)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        if self.task is not None:
            await self.task
