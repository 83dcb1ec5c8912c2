"""A fake swarm engine for execution tests: emits a couple of events, returns an outcome.

`behaviour` maps a stage (or (stage, attempt)) to "block", an exception to raise, or a
callable(inp, cfg) returning either; anything else succeeds.
"""

from __future__ import annotations

import asyncio
from typing import Any

from swarm.context import BudgetExceeded, StageOutcome, Vote
from swarm.events import AgentMessage, LlmCallDone

PATCH = (
    "diff --git a/docs/note.md b/docs/note.md\n"
    "new file mode 100644\n"
    "--- /dev/null\n"
    "+++ b/docs/note.md\n"
    "@@ -0,0 +1 @@\n"
    "+note\n"
)


def fake_artifact(stage: str, goal: str) -> dict[str, Any]:
    data: dict[str, Any] = {"summary": f"{stage} for {goal}", "confidence": 0.81}
    if stage == "code":
        data["diff"] = PATCH
    if stage == "review":
        data.update({"status": "revise", "issues": ["missing input validation"]})
    return data


class FakeEngine:
    def __init__(
        self,
        behaviour: dict[Any, Any] | None = None,
        *,
        tokens: tuple[int, int] = (100, 20),
        sleep: float = 0.0,
    ):
        self.behaviour = behaviour or {}
        self.calls: list[tuple[Any, Any]] = []
        self.tokens = tokens
        self.sleep = sleep

    def stages_called(self) -> list[str]:
        return [inp.stage for inp, _ in self.calls]

    async def __call__(
        self,
        inp,
        cfg,
        *,
        completer,
        emit,
        is_cancelled=lambda: False,
        patch_check=None,
        work=None,
        budget=None,
    ):
        self.calls.append((inp, cfg))
        ticket = None
        if budget is not None:
            # Like the engine: reserve the call (its tokens, as the estimate) before it.
            try:
                ticket = await budget.reserve(
                    stage=inp.stage, role="proponent", tokens=sum(self.tokens), cost_usd=0.0015
                )
            except BudgetExceeded as exc:
                return StageOutcome(
                    status="blocked", reason=str(exc), artifact=None, budget_reached=True
                )
        emit(
            AgentMessage(
                stage=inp.stage,
                role="proponent",
                round=0,
                model=cfg.models["proponent"],
                answer={"position": f"draft for {inp.stage}", "contact": "ops@example.com"},
            )
        )
        emit(
            LlmCallDone(
                stage=inp.stage,
                role="proponent",
                round=0,
                provider="fake",
                model=cfg.models["proponent"],
                input_tokens=self.tokens[0],
                output_tokens=self.tokens[1],
                cost_usd=0.0015,
                latency_s=0.01,
                attempts=1,
            )
        )
        if budget is not None:
            budget.settle(ticket, tokens=sum(self.tokens), cost_usd=0.0015)
        if self.sleep:
            await asyncio.sleep(self.sleep)
        action = self.behaviour.get((inp.stage, inp.attempt), self.behaviour.get(inp.stage))
        if callable(action) and not isinstance(action, type):
            action = action(inp, cfg)
        if isinstance(action, BaseException):
            raise action
        votes = [
            Vote(role="proponent", approve=True, self_confidence=0.8),
            Vote(role="skeptic", approve=False, self_confidence=0.6),
        ]
        artifact = fake_artifact(inp.stage, inp.goal)
        patch = PATCH if inp.stage == "code" else None
        if action == "block":
            return StageOutcome(
                status="blocked",
                reason="weighted approval 0.40 is below the quorum 0.67",
                artifact=artifact,
                patch=patch,
                confidence=0.55,
                votes=votes,
                approval=0.4,
            )
        return StageOutcome(
            status="succeeded",
            reason="quorum met",
            artifact=artifact,
            patch=patch,
            confidence=0.81,
            votes=votes,
            approval=0.8,
            mediator={"rationale": "ok"},
            input_tokens=self.tokens[0],
            output_tokens=self.tokens[1],
            cost_usd=0.0015,
        )
