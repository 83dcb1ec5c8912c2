"""runs.recorder: engine events become LlmCall rows, RunEvents and the token tally."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from runs.models import LlmCall, RunEvent, StageRun
from runs.recorder import StageRecorder
from swarm.context import StageOutcome
from swarm.events import AgentMessage, LlmCallDone
from tests.factories import RunFactory

pytestmark = pytest.mark.django_db


def _call(tokens_in: int, tokens_out: int, cost: float, error: str = "") -> LlmCallDone:
    return LlmCallDone(
        stage="plan", role="skeptic", round=1, provider="openai", model="openai/gpt-4o",
        input_tokens=tokens_in, output_tokens=tokens_out, cost_usd=cost, latency_s=0.25,
        attempts=2, error=error,
    )  # fmt: skip


def _stage():
    run = RunFactory(stage_from="plan", stage_to="plan")
    stage = StageRun.objects.get(run=run)
    StageRun.objects.filter(pk=stage.pk).update(attempt=1)
    stage.refresh_from_db()
    return run, stage


def test_a_batch_is_one_set_of_rows_in_order_with_the_tally():
    run, stage = _stage()
    message = AgentMessage(
        stage="plan", role="skeptic", round=1, model="openai/gpt-4o",
        answer={"position": "mail me at ops@example.com"},
    )  # fmt: skip
    StageRecorder(stage).record(
        [
            _call(100, 20, 0.5),
            message,
            _call(10, 2, 0.25, "boom sk-proj-abcdefghijklmnopqrstuvwxyz12"),
        ]
    )
    run.refresh_from_db()
    stage.refresh_from_db()
    assert (run.input_tokens, run.output_tokens, run.cost_usd) == (110, 22, Decimal("0.75"))
    assert (stage.input_tokens, stage.output_tokens) == (110, 22)
    calls = list(LlmCall.objects.filter(run=run).order_by("id"))
    assert [(c.retries, c.latency_ms, c.attempt) for c in calls] == [(1, 250, 1), (1, 250, 1)]
    assert "sk-proj" not in calls[1].error
    (event,) = RunEvent.objects.filter(run=run)
    assert event.kind == "stage.progress" and event.seq == 1
    assert "ops@example.com" not in event.payload["answer"]["position"]


def test_the_outcome_tops_up_only_what_was_not_reported():
    run, stage = _stage()
    recorder = StageRecorder(stage)
    recorder.record([_call(100, 20, 0.5)])
    recorder.outcome_topup(
        StageOutcome(
            status="succeeded",
            reason="",
            artifact={},
            input_tokens=150,
            output_tokens=20,
            cost_usd=0.5,
        )
    )
    run.refresh_from_db()
    assert (run.input_tokens, run.output_tokens, run.cost_usd) == (150, 20, Decimal("0.5"))


def test_an_empty_batch_writes_nothing():
    run, stage = _stage()
    StageRecorder(stage).record([])
    assert not RunEvent.objects.filter(run=run).exists()
    assert not LlmCall.objects.filter(run=run).exists()


def test_cached_and_cache_write_tokens_are_kept_per_call_stage_and_run():
    run, stage = _stage()
    cached = dataclasses.replace(_call(2000, 20, 0.01), cached_input_tokens=1500)
    written = dataclasses.replace(_call(1800, 20, 0.02), cache_write_tokens=1600)
    recorder = StageRecorder(stage)
    recorder.record([cached, written])
    recorder.record([_call(100, 5, 0.001)])
    run.refresh_from_db()
    stage.refresh_from_db()
    for row in (run, stage):
        assert (row.input_tokens, row.cached_input_tokens, row.cache_write_tokens) == (
            3900,
            1500,
            1600,
        )
        assert row.uncached_input_tokens == 800
    calls = LlmCall.objects.filter(run=run).order_by("id")
    assert [(c.cached_input_tokens, c.cache_write_tokens) for c in calls] == [
        (1500, 0),
        (0, 1600),
        (0, 0),
    ]
