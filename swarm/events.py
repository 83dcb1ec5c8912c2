"""Events the engine emits while a stage runs. Plain dataclasses; the Django side records
and publishes them (runs/events.py). `kind` is the RunEvent kind they become."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class EngineEvent:
    kind: str = field(init=False, default="")

    def payload(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("kind", None)
        return data


@dataclass(frozen=True)
class AgentMessage(EngineEvent):
    """One agent's answer in the debate; becomes a `stage.progress` event."""

    stage: str
    role: str  # proponent | skeptic | pragmatist | mediator
    round: int  # 0 = opening, 1..R debate rounds, R+1 = mediator (repair: same round)
    model: str
    answer: dict[str, Any]  # the validated answer (redacted before it is stored)
    kind: str = field(init=False, default="stage.progress")


@dataclass(frozen=True)
class LlmCallDone(EngineEvent):
    """One provider call, successful or not; becomes an LlmCall row, not a RunEvent."""

    stage: str
    role: str
    round: int
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    latency_s: float
    attempts: int
    error: str = ""
    # Of input_tokens: read from the vendor's prompt cache / written to it.
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    # When the call ended (epoch seconds): the record may be written a little later.
    ended_at: float = field(default_factory=time.time)
    kind: str = field(init=False, default="llm.call")


@dataclass(frozen=True)
class ToolUsed(EngineEvent):
    """One tool call an agent made; becomes a `stage.tool` event (recorded and shown)."""

    stage: str
    role: str
    round: int
    call_id: str
    tool: str
    arguments: dict[str, Any]  # redacted by the tool layer
    summary: str  # one short line
    duration_s: float
    ok: bool
    kind: str = field(init=False, default="stage.tool")


@dataclass(frozen=True)
class AgentDelta(EngineEvent):
    """A piece of an agent's answer while its call streams. Published live as an ephemeral
    `stage.delta` (runs/events.py deltas_publish), never stored: the AgentMessage that
    follows is the record.

    `call_id` names one provider call of the stage attempt. `discard` (text empty): what
    streamed for the call is void (a retry began, the stream was cut, the answer failed
    validation). `done` (text empty): the call ended; its held-back tail may go out."""

    stage: str
    role: str
    round: int
    call_id: str
    text: str = ""
    model: str = ""
    discard: bool = False
    done: bool = False
    kind: str = field(init=False, default="stage.delta")
