"""`tekton ask agno`: a planner -> coder -> reviewer chain on Tekton's providers. Each step
gets the task and every earlier step's answer, so the coder works from the plan and the
reviewer reviews the plan and the code. The name is the legacy tool's (it used the Agno
library); here each step is one Router call, with its retries, pricing and recording."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from swarm.providers.base import Completion, CompletionRequest, Message, StreamDelta

AGNO_STEPS: tuple[tuple[str, str], ...] = (
    (
        "planner",
        "You are the planner. Break the task into a short numbered plan: the steps, the "
        "files or parts they touch, and how to check the result. No code yet.",
    ),
    (
        "coder",
        "You are the coder. Carry out the planner's plan for the task: give the code or "
        "the change, complete, with a line on each part. Follow the plan unless it is wrong; "
        "then say why.",
    ),
    (
        "reviewer",
        "You are the reviewer. Review the coder's work against the task and the plan: "
        "list defects and risks, most serious first, then a verdict: APPROVE or CHANGES.",
    ),
)
DEFAULT_AGNO_MODEL = "anthropic/claude-sonnet-4.6"


class BudgetSpent(Exception):
    """The invocation's token or cost budget was used up before a step."""


@dataclass(frozen=True)
class AgnoStep:
    role: str
    model: str
    system: str


@dataclass
class AgnoResult:
    steps: list[tuple[AgnoStep, Completion]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n\n".join(f"## {step.role}\n{c.text.strip()}" for step, c in self.steps)


def agno_chain(
    *, model: str | None = None, models: Mapping[str, str] | None = None
) -> list[AgnoStep]:
    """The steps: `model` for every role when given, else `models[role]` (settings), else
    DEFAULT_AGNO_MODEL."""
    return [
        AgnoStep(role, model or (models or {}).get(role) or DEFAULT_AGNO_MODEL, system)
        for role, system in AGNO_STEPS
    ]


def agno_describe(steps: list[AgnoStep]) -> list[str]:
    """One line a step, for --dry-run."""
    return [
        f"{i}. {s.role} ({s.model}): sees the task"
        + "".join(f" and the {p.role}'s answer" for p in steps[: i - 1])
        for i, s in enumerate(steps, start=1)
    ]


def _user_message(task: str, context: str, done: list[tuple[AgnoStep, Completion]]) -> str:
    parts = [f"# Task\n{task}"]
    if context:
        parts.append(f"# Context\n{context}")
    for step, completion in done:
        parts.append(f"# The {step.role}'s answer\n{completion.text.strip()}")
    return "\n\n".join(parts)


async def agno_run(
    completer,
    steps: list[AgnoStep],
    task: str,
    *,
    context: str = "",
    temperature: float = 0.2,
    timeout: float = 120.0,
    on_step: Callable[[AgnoStep], None] | None = None,
    on_delta: Callable[[StreamDelta], None] | None = None,
    on_done: Callable[[AgnoStep, Completion, float], None] | None = None,
    budget_left: Callable[[], str | None] | None = None,
) -> AgnoResult:
    """Run the steps in order; a step's ProviderError ends the chain (raised, with the
    steps done so far on `error.agno_done`). `budget_left` is asked before each step
    after the first: a message (the budget is used up) ends the chain with BudgetSpent."""
    result = AgnoResult()
    for step in steps:
        spent = budget_left() if budget_left is not None and result.steps else None
        if spent:
            error = BudgetSpent(f"{spent}; stopped before the {step.role}")
            error.agno_done = list(result.steps)  # type: ignore[attr-defined]
            raise error
        if on_step is not None:
            on_step(step)
        request = CompletionRequest(
            model=step.model,
            messages=(
                Message("system", step.system),
                Message("user", _user_message(task, context, result.steps)),
            ),
            temperature=temperature,
            timeout=timeout,
            metadata={"kind": "agno", "role": step.role},
            on_delta=on_delta,
        )
        started = time.monotonic()
        try:
            completion = await completer.complete(request)
        except Exception as exc:
            exc.agno_done = list(result.steps)  # type: ignore[attr-defined]
            raise
        result.steps.append((step, completion))
        if on_done is not None:
            on_done(step, completion, time.monotonic() - started)
    return result
