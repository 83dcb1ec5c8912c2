"""Fixtures for the provider tests: the local fake LLM server, a scripted in-memory
provider, and a sleep that records delays instead of waiting."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator

import pytest

from swarm.providers.base import Completion, CompletionRequest, Message, ProviderError, Usage
from tests.fakes.llm_server import FakeLlmServer


@pytest.fixture
def fake_llm() -> Iterator[FakeLlmServer]:
    server = FakeLlmServer().start()
    try:
        yield server
    finally:
        server.stop()


class RecordingSleep:
    """Stands in for asyncio.sleep: remembers each delay, returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


class ScriptedProvider:
    """A non-network backend: answers (or raises) from a script, and counts calls."""

    name = "scripted"

    def __init__(self, *outcomes: Completion | ProviderError | str) -> None:
        self.outcomes = list(outcomes)
        self.requests: list[CompletionRequest] = []

    async def complete(self, request: CompletionRequest) -> Completion:
        self.requests.append(request)
        outcome = self.outcomes.pop(0) if self.outcomes else "default answer"
        if isinstance(outcome, ProviderError):
            raise outcome
        if isinstance(outcome, str):
            return completion(outcome, model=request.model, provider=self.name)
        return outcome


def completion(
    text: str, *, model: str = "test/model", provider: str = "scripted", parsed=None
) -> Completion:
    return Completion(
        text=text,
        parsed=parsed,
        usage=Usage(input_tokens=100, output_tokens=50),
        cost_usd=0.0,
        latency_s=0.01,
        provider=provider,
        model=model,
    )


def make_request(
    model: str = "test/model", *, prompt: str = "hello", schema=None, timeout: float = 5.0
) -> CompletionRequest:
    return CompletionRequest(
        model=model,
        messages=(Message("system", "You are terse."), Message("user", prompt)),
        json_schema=schema,
        schema_name="plan",
        max_tokens=256,
        timeout=timeout,
        metadata={"stage": "plan", "role": "proponent", "round": 0},
    )


PLAN_SCHEMA = {
    "type": "object",
    "properties": {
        "goals": {"type": "array", "items": {"type": "string"}},
        "confidence": {"type": "number"},
    },
    "required": ["goals", "confidence"],
}


def fake_tool(tmp_path, name: str, body: str):
    """An executable Python script; it logs its argv and stdin next to itself."""
    path = tmp_path / name
    path.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys, time\n"
        "prompt = sys.stdin.read()\n"
        "log = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'calls.jsonl')\n"
        "with open(log, 'a') as fh:\n"
        "    fh.write(json.dumps({'argv': sys.argv[1:], 'stdin': prompt}) + '\\n')\n"
        + textwrap.dedent(body)
    )
    path.chmod(0o755)
    return path
