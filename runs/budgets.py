"""A run's budgets, shared by its stages: the reservation ledger in the database.

Stages of one run run side by side on different workers, so what is left of a budget is
decided in one place: `budget_reserve` locks the run row (select_for_update; SQLite takes
its write lock at BEGIN IMMEDIATE), adds what is spent (Run.input_tokens/output_tokens/
cost_usd, written by the recorder) to what calls in flight hold (BudgetReservation rows),
and inserts the new reservation only when the estimate fits. Two callers cannot both take
the last remainder. `budget_settle` deletes the row once the call's LlmCallDone (its
actual usage) is recorded, which releases the unused part.

Limits are the run's frozen `config["budget_tokens"]` / `config["budget_cost_usd"]`
(0 = no limit); a person changes them with runs.services.run_budget_set.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Sum

from runs.models import BudgetReservation, Run
from swarm.budget import budget_check


def budget_limits(config: dict[str, Any] | None) -> tuple[int | None, float | None]:
    """(token limit, cost limit) of a run's configuration; None where there is none."""
    config = config or {}
    tokens = int(config.get("budget_tokens") or 0)
    cost = float(config.get("budget_cost_usd") or 0)
    return (tokens or None, cost or None)


def budget_held(run_id: int) -> tuple[int, float]:
    """(tokens, dollars) the run's calls in flight hold."""
    held = BudgetReservation.objects.filter(run_id=run_id).aggregate(
        tokens=Sum("tokens"), cost=Sum("cost_usd")
    )
    return int(held["tokens"] or 0), float(held["cost"] or 0)


def budget_reserve(
    *, run_id: int, stage_run_id: int, claim: str, role: str, tokens: int, cost_usd: float
) -> int:
    """Reserve a call's estimate from its run's budgets; returns the reservation's id.
    Raises swarm.context.BudgetExceeded ("budget reached: ...") when it does not fit."""
    with transaction.atomic():
        run = (
            Run.objects.select_for_update()
            .only("config", "input_tokens", "output_tokens", "cost_usd")
            .get(pk=run_id)
        )
        limit_tokens, limit_cost = budget_limits(run.config)
        if limit_tokens is not None or limit_cost is not None:
            held_tokens, held_cost = budget_held(run_id)
            budget_check(
                spent_tokens=run.total_tokens,
                spent_cost=float(run.cost_usd),
                held_tokens=held_tokens,
                held_cost=held_cost,
                limit_tokens=limit_tokens,
                limit_cost=limit_cost,
                need_tokens=max(0, int(tokens)),
                need_cost=max(0.0, float(cost_usd)),
            )
        row = BudgetReservation.objects.create(
            run_id=run_id,
            stage_run_id=stage_run_id,
            claim=claim[:32],
            role=role[:16],
            tokens=max(0, int(tokens)),
            cost_usd=Decimal(str(round(max(0.0, float(cost_usd)), 6))),
        )
    return row.pk


def budget_settle(reservation_id: int) -> None:
    """The call is over and its usage recorded: release what it held. Idempotent."""
    BudgetReservation.objects.filter(pk=reservation_id).delete()


def budget_release_stage(*, stage_run_id: int, claim: str | None = None) -> int:
    """Drop what a stage's calls still hold (all of its attempts, or one claim's): a
    stage that ended, or one claimed again after its worker died."""
    rows = BudgetReservation.objects.filter(stage_run_id=stage_run_id)
    if claim is not None:
        rows = rows.filter(claim=claim)
    return rows.delete()[0]
