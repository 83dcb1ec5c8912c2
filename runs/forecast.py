"""What a run is expected to cost before it starts (issue 14, section 4): tokens and dollars
per stage and for the run, shown by every explain (CLI, API, launcher).

Per stage, from the history of finished runs of the same profile when there are at least
HISTORY_MIN of them (median and 90th percentile of the stage's tokens and cost), else from
the schedule: the stage's calls (3 debaters per round, the opening and each debate round,
and the mediator; 1 call in consensus-free mode) times a typical call's tokens. The cost
prices each role's tokens with the model that role uses (the profile's prices first), so
a model the offline backend answers costs nothing. A forecast above the run's token or
cost budget comes with a warning: the run would block at "budget reached".
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from runs.selectors import stage_usage_history
from swarm.providers.pricing import FREE_BACKENDS, cost_usd
from swarm.stages import DEBATER_ROLES

# At least this many finished runs of the profile before their figures replace the estimate.
HISTORY_MIN = 3
# A typical call when there is no history: what an offline run's calls measure on average
# (about 310,000 input tokens over 9 stages of 10 calls; docs/benchmarks.md).
CALL_INPUT_TOKENS = 3_500
CALL_OUTPUT_TOKENS = 600


@dataclass
class StageForecast:
    stage: str
    basis: str  # "history (N runs)" or "estimate (N calls)"
    calls: int
    tokens: int  # the median (or the estimate)
    tokens_p90: int
    cost_usd: float
    cost_usd_p90: float


@dataclass
class RunForecast:
    stages: list[StageForecast] = field(default_factory=list)
    tokens: int = 0
    tokens_p90: int = 0
    cost_usd: float = 0.0
    cost_usd_p90: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def _calls(config: dict[str, Any], stage: str) -> dict[str, int]:
    """Calls per role in one pass of the stage (no repairs, no tool rounds)."""
    if stage in (config.get("consensus_free") or []):
        return {"proponent": 1}
    rounds = int(config.get("rounds", 2)) + 1  # the opening and the debate rounds
    return {**{role: rounds for role in DEBATER_ROLES}, "mediator": 1}


def _estimate_cost(config: dict[str, Any], stage: str, calls: dict[str, int]) -> float:
    models = (config.get("models") or {}).get(stage) or {}
    backends = config.get("backends") or {}
    prices = {m: tuple(p) for m, p in (config.get("prices") or {}).items()}
    total = 0.0
    for role, n in calls.items():
        model = models.get(role)
        if not model or backends.get(model) in FREE_BACKENDS:
            continue
        total += n * cost_usd(model, CALL_INPUT_TOKENS, CALL_OUTPUT_TOKENS, prices=prices)
    return total


def run_forecast(*, profile_name: str, stages: list[str], config: dict[str, Any]) -> RunForecast:
    """The forecast of a run of `stages` with the frozen `config` of `profile_name`."""
    history = stage_usage_history(profile_name, stages)
    forecast = RunForecast()
    for stage in stages:
        calls = _calls(config, stage)
        samples = history.get(stage, [])
        if len(samples) >= HISTORY_MIN:
            tokens = [t for t, _ in samples]
            costs = [c for _, c in samples]
            row = StageForecast(
                stage=stage,
                basis=f"history ({len(samples)} runs)",
                calls=sum(calls.values()),
                tokens=round(statistics.median(tokens)),
                tokens_p90=round(_p90(tokens)),
                cost_usd=round(statistics.median(costs), 4),
                cost_usd_p90=round(_p90(costs), 4),
            )
        else:
            n = sum(calls.values())
            tokens = n * (CALL_INPUT_TOKENS + CALL_OUTPUT_TOKENS)
            cost = round(_estimate_cost(config, stage, calls), 4)
            row = StageForecast(
                stage=stage,
                basis=f"estimate ({n} calls)",
                calls=n,
                tokens=tokens,
                tokens_p90=tokens,
                cost_usd=cost,
                cost_usd_p90=cost,
            )
        forecast.stages.append(row)
    forecast.tokens = sum(s.tokens for s in forecast.stages)
    forecast.tokens_p90 = sum(s.tokens_p90 for s in forecast.stages)
    forecast.cost_usd = round(sum(s.cost_usd for s in forecast.stages), 4)
    forecast.cost_usd_p90 = round(sum(s.cost_usd_p90 for s in forecast.stages), 4)
    budget_tokens = int(config.get("budget_tokens") or 0)
    budget_cost = float(config.get("budget_cost_usd") or 0)
    if budget_tokens and forecast.tokens_p90 > budget_tokens:
        forecast.warnings.append(
            f"expected {forecast.tokens:,} tokens ({forecast.tokens_p90:,} at the 90th "
            f"percentile) against a budget of {budget_tokens:,}: the run may block at "
            "'budget reached'"
        )
    if budget_cost and forecast.cost_usd_p90 > budget_cost:
        forecast.warnings.append(
            f"expected ${forecast.cost_usd:.2f} (${forecast.cost_usd_p90:.2f} at the 90th "
            f"percentile) against a budget of ${budget_cost:.2f}: the run may block at "
            "'budget reached'"
        )
    return forecast
