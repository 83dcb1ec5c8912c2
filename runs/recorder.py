"""The recorder of a stage's engine events: LlmCall rows, RunEvents and the token tally.

The engine emits plain events (swarm.events); the engine bridge hands them over in
batches, and each batch is written in one transaction, so a stage's orchestration costs
one commit per batch, not one per event.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import F

from runs import events, metrics
from runs.models import LlmCall, Run, StageRun
from swarm.context import StageOutcome
from swarm.events import AgentDelta, AgentMessage, EngineEvent, LlmCallDone, ToolUsed
from swarm.redact import redact

logger = logging.getLogger("tekton.runs.recorder")


def decimal_usd(value: float | Decimal | None) -> Decimal:
    """A dollar amount as the Decimal the cost columns store (6 places)."""
    return Decimal(str(round(float(value or 0), 6)))


def jsonable(value: Any) -> Any:
    """Engine values (dataclasses, tuples) as plain JSON-ready data."""
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def _added(delta: dict[str, int | Decimal]) -> dict[str, Any]:
    return {column: F(column) + value for column, value in delta.items()}


class StageRecorder:
    """Turns engine events into RunEvents and LlmCall rows, and keeps the token tally."""

    def __init__(self, stage: StageRun):
        self.stage = stage
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost_usd = 0.0

    def __call__(self, item: EngineEvent) -> None:
        self.record([item])

    def record(self, items: list[EngineEvent]) -> None:
        """Record a batch of engine events in one transaction: LlmCall rows, RunEvents (in
        order, one seq bump) and one token-tally update. A batch is whatever the engine
        had emitted by the time the recording thread looked, so nothing waits for it."""
        stage = self.stage
        metrics.llm_calls_observe(items)
        calls: list[LlmCall] = []
        progress: list[tuple[str, str, dict[str, Any] | None]] = []
        tokens_in = tokens_out = cached = written = 0
        cost = Decimal(0)
        for item in items:
            if isinstance(item, AgentDelta):
                continue  # streamed text is published (deltas_publish), never stored
            if isinstance(item, LlmCallDone):
                call_cost = decimal_usd(item.cost_usd)
                calls.append(
                    LlmCall(
                        run_id=stage.run_id,
                        stage=stage.stage,
                        role=item.role,
                        round=max(0, int(item.round)),
                        provider=item.provider[:40],
                        model=item.model[:200],
                        input_tokens=max(0, int(item.input_tokens)),
                        cached_input_tokens=max(0, int(item.cached_input_tokens)),
                        cache_write_tokens=max(0, int(item.cache_write_tokens)),
                        output_tokens=max(0, int(item.output_tokens)),
                        cost_usd=call_cost,
                        latency_ms=max(0, int(item.latency_s * 1000)),
                        attempt=stage.attempt,
                        retries=max(0, int(item.attempts) - 1),
                        error=redact(item.error or "")[:2000],
                        created_at=datetime.fromtimestamp(item.ended_at, tz=UTC),
                    )
                )
                tokens_in += max(0, int(item.input_tokens))
                tokens_out += max(0, int(item.output_tokens))
                cached += max(0, int(item.cached_input_tokens))
                written += max(0, int(item.cache_write_tokens))
                cost += call_cost
            elif isinstance(item, AgentMessage):
                payload = {
                    "role": item.role,
                    "round": item.round,
                    "model": item.model,
                    "answer": item.answer,
                    "attempt": stage.attempt,
                }
                progress.append(("stage.progress", stage.stage, payload))
            elif isinstance(item, ToolUsed):
                payload = {**jsonable(item.payload()), "attempt": stage.attempt}
                payload.pop("stage", None)
                progress.append(("stage.tool", stage.stage, payload))
            elif isinstance(item, EngineEvent) and item.kind:
                progress.append((item.kind, stage.stage, jsonable(item.payload())))
            else:
                logger.warning(
                    "run %s / %s: ignoring engine event %r", stage.run_id, stage.stage, type(item)
                )
        if not (calls or progress):
            return
        with transaction.atomic():
            # Any error undoes the whole batch: no savepoints inside it.
            run_add: dict[str, int | Decimal] = {}
            if calls:
                LlmCall.objects.bulk_create(calls)
                delta = self._tally(tokens_in, tokens_out, cost, cached=cached, written=written)
                if delta and progress:
                    # The run's share rides on the events' seq bump: one UPDATE of the run row.
                    StageRun.objects.filter(pk=stage.pk).update(**_added(delta))
                    run_add = delta
                elif delta:
                    self._rows_update(delta)
            events.events_record(
                run_id=stage.run_id, items=progress, savepoint=False, run_add=run_add
            )

    def deltas_publish(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        """Publish coalesced streamed text (swarm.deltas) as this attempt's deltas."""
        attempt = self.stage.attempt
        events.deltas_publish(
            run_id=self.stage.run_id,
            items=[(stage, {**payload, "attempt": attempt}) for stage, payload in items],
        )

    def deltas_wanted(self) -> bool:
        """Whether anyone follows this run's streamed text (runs.events.deltas_watched)."""
        return events.deltas_watched(self.stage.run_id)

    def tokens_add(
        self,
        input_tokens: int,
        output_tokens: int,
        cost: float,
        *,
        cached: int = 0,
        cache_written: int = 0,
    ) -> None:
        """Add to the stage's and the run's tallies; `cached` and `cache_written` are the
        part of input_tokens read from / written to the prompt caches."""
        delta = self._tally(input_tokens, output_tokens, cost, cached=cached, written=cache_written)
        if delta:
            self._rows_update(delta)

    def _tally(
        self,
        input_tokens: int,
        output_tokens: int,
        cost: float | Decimal,
        *,
        cached: int,
        written: int,
    ) -> dict[str, int | Decimal]:
        """Count in memory; returns what to add to the rows' columns ({} for nothing)."""
        input_tokens, output_tokens = max(0, int(input_tokens)), max(0, int(output_tokens))
        if not (input_tokens or output_tokens or cost):
            return {}
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        self.cost_usd += float(cost)
        delta: dict[str, int | Decimal] = {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cost_usd": decimal_usd(cost),
        }
        if cached:
            delta["cached_input_tokens"] = max(0, int(cached))
        if written:
            delta["cache_write_tokens"] = max(0, int(written))
        return delta

    def _rows_update(self, delta: dict[str, int | Decimal]) -> None:
        # Both rows or neither; inside a caller's transaction, that transaction decides.
        with transaction.atomic(savepoint=False):
            Run.objects.filter(pk=self.stage.run_id).update(**_added(delta))
            StageRun.objects.filter(pk=self.stage.pk).update(**_added(delta))

    def outcome_topup(self, outcome: StageOutcome) -> None:
        # Calls the engine counted in its outcome but never reported as LlmCallDone.
        self.tokens_add(
            max(0, outcome.input_tokens - self.input_tokens),
            max(0, outcome.output_tokens - self.output_tokens),
            max(0.0, float(outcome.cost_usd) - self.cost_usd),
        )
