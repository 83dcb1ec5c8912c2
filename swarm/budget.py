"""A run's token and cost budgets as the engine sees them: reserve before a call, settle after.

Before each provider call the engine reserves the call's estimate (the request's input at
about four characters a token, plus its max_tokens of output, priced by the backend that
will answer); a reservation that does not fit what is left raises BudgetExceeded and the
stage blocks. After the call the reservation is settled: the actual usage counts, the
unused part is free again. Several calls (three debaters, review beside threat) reserve
from one remainder, so together they cannot take more than is left.

`StageBudget` keeps the ledger in memory (the engine's default, from cfg.budget_tokens /
cfg.budget_cost_usd); runs/budgets.py keeps a run's in the database, shared by its stages.
"""

from __future__ import annotations

import json
import math
from typing import Any, Protocol

from swarm.context import BudgetExceeded
from swarm.providers.base import CompletionRequest

CHARS_PER_TOKEN = 4


class Budget(Protocol):
    """What the engine reserves from. `cost_capped`: a cost limit is set (a call whose
    model has no price cannot be reserved then)."""

    cost_capped: bool

    async def reserve(self, *, stage: str, role: str, tokens: int, cost_usd: float) -> Any:
        """A ticket for the reservation; raises BudgetExceeded when it does not fit."""
        ...

    def settle(self, ticket: Any, *, tokens: int, cost_usd: float) -> None:
        """The call is over (`tokens`/`cost_usd` it really used): release the ticket."""
        ...


def tokens_reached(spent: int, limit: int, need: int = 0) -> str:
    """'budget reached: 412,000 of 400,000 tokens' (and what the refused call needed)."""
    text = f"budget reached: {spent:,} of {limit:,} tokens"
    return f"{text} (the next call may need {need:,})" if need else text


def usd(amount: float) -> str:
    """Dollars to the cent, or to 1/100 cent when cents would hide the amount."""
    return f"${amount:,.2f}" if round(amount, 2) == round(amount, 6) else f"${amount:,.4f}"


def cost_reached(spent: float, limit: float, need: float = 0.0) -> str:
    """'budget reached: $1.03 of $1.00' (and what the refused call needed)."""
    text = f"budget reached: {usd(spent)} of {usd(limit)}"
    return f"{text} (the next call may need {usd(need)})" if need else text


def unpriced_message(model: str) -> str:
    return (
        f"no price for {model}: a cost budget cannot be kept for it; give the profile a "
        "price for it (prices), or remove the cost budget"
    )


def budget_check(
    *,
    spent_tokens: int,
    spent_cost: float,
    held_tokens: int = 0,
    held_cost: float = 0.0,
    limit_tokens: int | None,
    limit_cost: float | None,
    need_tokens: int = 0,
    need_cost: float = 0.0,
) -> None:
    """Raise BudgetExceeded when `need` does not fit beside what is spent and held.
    A limit of None means none; with no need, a budget already used up is refused."""
    if limit_tokens is not None:
        if spent_tokens + held_tokens + need_tokens > limit_tokens or spent_tokens >= limit_tokens:
            raise BudgetExceeded(tokens_reached(spent_tokens, limit_tokens, need_tokens))
    if limit_cost is not None:
        if spent_cost + held_cost + need_cost > limit_cost + 1e-12 or spent_cost >= limit_cost:
            raise BudgetExceeded(cost_reached(spent_cost, limit_cost, need_cost))


def request_estimate(request: CompletionRequest) -> tuple[int, int]:
    """(input, output) tokens a request may use: its text (messages, tool calls and
    results, schema, tool definitions) at CHARS_PER_TOKEN, and its max_tokens."""
    chars = 0
    for message in request.messages:
        if isinstance(message.content, str):
            chars += len(message.content)
            continue
        for block in message.content:
            text = getattr(block, "text", None)
            if text is None:
                text = getattr(block, "content", None)
            if text is None:
                text = json.dumps(getattr(block, "arguments", {}), default=str)
            chars += len(text)
    if request.json_schema:
        chars += len(json.dumps(request.json_schema))
    for tool in request.tools:
        chars += len(tool.name) + len(tool.description) + len(json.dumps(tool.input_schema))
    return math.ceil(chars / CHARS_PER_TOKEN), max(0, int(request.max_tokens))


class StageBudget:
    """An in-memory ledger: `tokens` / `cost_usd` limits (None = none), what was spent
    and what calls in flight hold. Safe for the calls of one event loop."""

    def __init__(self, *, tokens: int | None = None, cost_usd: float | None = None) -> None:
        self.limit_tokens = tokens
        self.limit_cost = cost_usd
        self.cost_capped = cost_usd is not None
        self.spent_tokens = 0
        self.spent_cost = 0.0
        self.held: dict[int, tuple[int, float]] = {}
        self._next = 0

    async def reserve(self, *, stage: str, role: str, tokens: int, cost_usd: float) -> int:
        budget_check(
            spent_tokens=self.spent_tokens,
            spent_cost=self.spent_cost,
            held_tokens=sum(t for t, _ in self.held.values()),
            held_cost=sum(c for _, c in self.held.values()),
            limit_tokens=self.limit_tokens,
            limit_cost=self.limit_cost,
            need_tokens=tokens,
            need_cost=cost_usd,
        )
        self._next += 1
        self.held[self._next] = (tokens, cost_usd)
        return self._next

    def settle(self, ticket: Any, *, tokens: int, cost_usd: float) -> None:
        if self.held.pop(ticket, None) is not None:
            self.spent_tokens += max(0, tokens)
            self.spent_cost += max(0.0, cost_usd)
