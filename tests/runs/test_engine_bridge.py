"""runs.engine_bridge: the stage thread's batches of engine events and streamed text."""

from __future__ import annotations

import asyncio

import pytest

from runs.engine_bridge import engine_run
from runs.models import StageRun
from swarm.context import StageOutcome
from swarm.events import AgentDelta, LlmCallDone
from tests.factories import RunFactory

pytestmark = pytest.mark.django_db


def _done(role: str) -> LlmCallDone:
    return LlmCallDone(
        stage="plan", role=role, round=1, provider="offline", model="offline/x",
        input_tokens=10, output_tokens=5, cost_usd=0.0, latency_s=0.1, attempts=1,
    )  # fmt: skip


def _piece(role: str, text: str) -> AgentDelta:
    return AgentDelta(stage="plan", role=role, round=1, call_id=role, text=text)


def test_calls_that_end_together_are_stored_in_one_batch_streamed_text_or_not(monkeypatch):
    """A round's debaters finish within milliseconds; the streamed pieces that wake the
    stage thread in between must not split their records into more transactions."""

    async def engine(inp, cfg, *, emit, **kw):
        for role in ("proponent", "skeptic", "pragmatist"):
            emit(_piece(role, f"The {role} says rollback is untested. "))
            await asyncio.sleep(0.002)  # each wake-up sees one event
            emit(_done(role))
            await asyncio.sleep(0.002)
        await asyncio.sleep(0.2)  # the next round's calls
        emit(_done("mediator"))
        return StageOutcome(status="succeeded", reason="", artifact=None)

    monkeypatch.setattr("runs.engine_bridge.stage_run", engine)
    run = RunFactory(stage_from="plan", stage_to="plan")
    stage = StageRun.objects.get(run=run)
    batches: list[list[str]] = []
    published: list[tuple[int, str]] = []

    def record(items):
        batches.append([i.role for i in items])

    def publish(out):
        published.extend((len(batches), p["text"]) for _, p in out)

    outcome = engine_run(
        stage=stage, token="t", inp=None, cfg=None, completer=None,
        record=record, publish=publish,
    )  # fmt: skip
    assert outcome.status == "succeeded"
    assert batches == [["proponent", "skeptic", "pragmatist"], ["mediator"]]
    # The round's text went out before its records were written.
    assert [n for n, text in published if text] == [0, 0, 0]
