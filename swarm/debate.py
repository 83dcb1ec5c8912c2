"""One stage of a Diamond v5 run: the debate, the mediator, the quorum and the block decision.

`stage_run` is the engine's entry point (runs/execution.py calls it). It talks to models
only through `completer.complete(...)` (the router in production, a fake in tests), emits
events through `emit`, and returns a StageOutcome. It never touches a database.

Schedule (cfg.rounds = R): the opening round (three debaters at once), R debate rounds
(three at once, each seeing the transcript so far and voting on the proposal in hand),
then one mediator call: R + 2 sequential LLM steps. On one priced model (unless
cfg.cache_stagger is off) the opening round's proponent goes first and the other two
after it (R + 3 steps), so they read the prompt prefix it wrote to the vendor's cache,
and every call of the stage is offered both answer schemas (debater's and mediator's)
so the mediator reads that prefix too. cfg.sequential = True runs all
3 + 3R + 1 calls one after another (the predecessor's schedule, for benchmarks only).

Decisions, all in code:
- quorum: each debater's vote from the last round in which it gave a valid one, weighted
  by its self_confidence; approval = approvers' weight / all voters' weight (0 if none).
- the stage passes iff approval >= cfg.quorum, the mediator's confidence >=
  cfg.threshold, the artifact validates, the mediator did not answer status "block",
  a review artifact does not say "block", and for code a non-empty diff passes
  `git apply --check`. An empty code diff is allowed in debate mode (the debate may
  conclude no change is needed; the artifact schema then requires files_changed empty)
  but fails the checks in consensus-free mode, where it would prove nothing.
- consensus-free: only the proponent drafts the artifact; checks decide (schema; for
  code the patch check; for test_debug the report's own `ship` flag).
Invalid answers get one repair call with the validation error: a debater still invalid
casts no vote; a mediator (or draft) still invalid blocks the stage with the error.

Every answer is redacted before it is validated, emitted or returned, so the artifact,
the events and the patch never carry a secret.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from swarm import prompts, telemetry
from swarm.artifacts import (
    ArtifactInvalid,
    DebaterAnswer,
    MediatorAnswer,
    answer_validate,
    artifact_complete,
    artifact_json_schema,
    artifact_validate,
    debater_json_schema,
    mediator_json_schema,
)
from swarm.budget import Budget, StageBudget, request_estimate, unpriced_message
from swarm.context import (
    BudgetExceeded,
    StageCancelled,
    StageConfig,
    StageInput,
    StageOutcome,
    StageWork,
    Vote,
    opening_staggered,
)
from swarm.events import AgentDelta, AgentMessage, EngineEvent, LlmCallDone, ToolUsed
from swarm.providers.base import Completion, CompletionRequest, Message, StreamDelta
from swarm.providers.jsontext import JsonTextError, json_from_text
from swarm.providers.pricing import price_for as table_price_for
from swarm.redact import redact
from swarm.repo import patch_check as git_patch_check
from swarm.stages import DEBATER_ROLES, stage_get

PatchCheck = Callable[[str, str], tuple[bool, str]]
_EPS = 1e-9  # approval exactly at the quorum (2/3 from floats) must pass


class Completer(Protocol):
    """Anything that answers a CompletionRequest: the router, a backend, a test fake."""

    async def complete(self, request: CompletionRequest) -> Completion: ...


async def stage_run(
    inp: StageInput,
    cfg: StageConfig,
    *,
    completer: Completer,
    emit: Callable[[EngineEvent], None],
    is_cancelled: Callable[[], bool] = lambda: False,
    patch_check: PatchCheck | None = None,
    work: StageWork | None = None,
    budget: Budget | None = None,
) -> StageOutcome:
    """Run one stage and decide whether it passes.

    Emits an AgentMessage per validated answer, an LlmCallDone per provider call (failed
    calls too, with the redacted error) and a ToolUsed per tool call; while a call streams,
    an AgentDelta per piece of its text, a `done` one when it ends and a `discard` one when
    what streamed is void (retried, cut, or an answer that failed validation). With `work` (the
    stage's repository work, swarm.context.StageWork): the debaters and the mediator get
    its tools through the backend's native tool calling (at most cfg.max_tool_calls per
    turn, then they must answer); the code stage's diff is applied to the workspace, and
    one that does not apply goes back with the error (cfg.apply_repairs times) before
    the stage blocks; test_debug measures the evidence first, and its `ship` is the
    debate's only where the evidence agrees (the evidence alone in consensus-free mode).
    Without `work`, `patch_check(repo_path, diff)` checks a code diff (None means
    swarm.repo.patch_check, `git apply --check`).

    Budgets: every call first reserves its estimate from `budget` (swarm.budget; None
    means an in-memory one over cfg.budget_tokens / cfg.budget_cost_usd) and settles it
    after. A reservation that does not fit blocks the stage with "budget reached: ..."
    (calls already in flight finish and count); so does a cost budget with a model that
    has no price. A person raises the budget and retries the stage.

    Raises StageCancelled when is_cancelled() turns true between rounds, ValueError for a
    bad configuration (no model for a role, quorum outside [0, 1], ...), and lets
    provider errors that survived the completer's retries through.
    """
    if budget is None:
        budget = StageBudget(tokens=cfg.budget_tokens, cost_usd=cfg.budget_cost_usd)
    runner = _StageRunner(
        inp, cfg, completer, emit, is_cancelled, patch_check or git_patch_check, work, budget
    )
    try:
        if inp.stage == "test_debug":
            await runner.evidence_gather()
        if cfg.consensus_free:
            return await runner.run_consensus_free()
        return await runner.run_debate()
    except BudgetExceeded as exc:
        return runner._outcome(
            status="blocked", reason=str(exc), artifact=None, budget_reached=True
        )


def _config_check(inp: StageInput, cfg: StageConfig) -> None:
    stage_get(inp.stage)  # UnknownStageError for a bad name
    if cfg.rounds < 0:
        raise ValueError(f"rounds must be >= 0, got {cfg.rounds}")
    for name in ("quorum", "threshold"):
        value = getattr(cfg, name)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")


def _parse_json(completion: Completion) -> Any:
    """The JSON object an answer holds; ArtifactInvalid when there is none."""
    if isinstance(completion.parsed, dict):
        return completion.parsed
    try:
        value = json_from_text(completion.text)
    except JsonTextError as exc:
        raise ArtifactInvalid(str(exc)) from None
    if not isinstance(value, dict):
        raise ArtifactInvalid(f"answer is JSON but not an object (got {type(value).__name__})")
    return value


def _names(roles: list[str]) -> str:
    if len(roles) <= 1:
        return "".join(roles)
    return ", ".join(roles[:-1]) + " and " + roles[-1]


async def _all(coros: list[Awaitable[Any]]) -> list[Any]:
    """asyncio.gather that cancels the siblings when one fails, so no orphan call keeps
    running (and emitting) after the stage has already raised. When the budget ran out,
    the siblings' calls (already paid for) finish and are counted first."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BudgetExceeded:
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


class _StageRunner:
    def __init__(
        self,
        inp: StageInput,
        cfg: StageConfig,
        completer: Completer,
        emit: Callable[[EngineEvent], None],
        is_cancelled: Callable[[], bool],
        patch_check: PatchCheck,
        work: StageWork | None = None,
        budget: Budget | None = None,
    ):
        _config_check(inp, cfg)
        self.budget: Budget = budget or StageBudget()
        self.inp, self.cfg, self.completer = inp, cfg, completer
        self.emit, self.is_cancelled, self.patch_check = emit, is_cancelled, patch_check
        self.work = work
        self.tools = getattr(work, "tools", None)
        self.evidence: dict[str, Any] | None = None
        self.stage = inp.stage
        self.input_tokens = self.output_tokens = 0
        self.cost_usd = 0.0
        self.fallback_provider = str(getattr(completer, "name", "") or "unknown")
        # Built once per stage and shared by its calls (nothing changes a request's schema):
        # a fresh deep copy per call cost more than the offline call itself.
        self._debater_schema = debater_json_schema()
        # The answer schemas every call of the stage is offered (run_debate sets them): one
        # list of tools for all, so the mediator reads the prefix its debaters wrote.
        self._answer_schemas: tuple[tuple[str, dict[str, Any]], ...] = ()
        self._call_numbers = itertools.count(1)
        self._cache_key = (
            f"tekton-run{inp.run_id}-{inp.stage}-{inp.attempt}" if inp.run_id else None
        )
        # The calls of each role's current answer that streamed text: discarded together
        # when the answer fails validation (the repair streams afresh).
        self._streamed: dict[str, list[str]] = {}

    # --- plumbing --------------------------------------------------------------------------
    def _model(self, role: str) -> str:
        model = self.cfg.models.get(role) or self.cfg.models.get("default")
        if not model:
            raise ValueError(f"no model configured for role {role!r} in stage {self.stage!r}")
        return model

    def _cancel_point(self) -> None:
        if self.is_cancelled():
            raise StageCancelled(f"stage {self.stage} cancelled")

    def _price(self, model: str) -> tuple[float, float] | None:
        """What a call of `model` costs where it will be answered (the completer knows
        the backend: offline answers are free), else the price table's."""
        price_for = getattr(self.completer, "price_for", None)
        if price_for is not None:
            try:
                return price_for(model)
            except Exception:  # an unroutable model fails on its call, with its own reason
                pass
        return table_price_for(model)

    async def _reserve(self, role: str, request: CompletionRequest) -> Any:
        """Reserve the request's estimate; BudgetExceeded when it does not fit."""
        tokens_in, tokens_out = request_estimate(request)
        price = self._price(request.model)
        if price is None and self.budget.cost_capped:
            raise BudgetExceeded(unpriced_message(request.model))
        cost = (tokens_in * price[0] + tokens_out * price[1]) / 1_000_000 if price else 0.0
        return await self.budget.reserve(
            stage=self.stage, role=role, tokens=tokens_in + tokens_out, cost_usd=cost
        )

    def _tools_on(self, model: str) -> bool:
        """Whether this model's calls get the stage's tools: there are tools, and the
        backend serving it speaks tool calling (command-line backends do not)."""
        if self.tools is None or not getattr(self.tools, "definitions", None):
            return False
        capabilities = getattr(self.completer, "capabilities", None)
        if capabilities is None:
            return False
        try:
            return bool(capabilities(model).tools)
        except Exception:  # an unroutable model fails on its call, with its own reason
            return False

    async def _complete(self, role: str, rnd: int, request: CompletionRequest) -> Completion:
        """One provider call, reserved from the budget and settled after, reported as
        LlmCallDone; its text streams out as AgentDelta while it is written."""
        ticket = await self._reserve(role, request)
        used = (0, 0.0)
        try:
            completion = await self._complete_reserved(role, rnd, request)
            used = (
                completion.usage.input_tokens + completion.usage.output_tokens,
                completion.cost_usd,
            )
            return completion
        finally:
            self.budget.settle(ticket, tokens=used[0], cost_usd=used[1])

    async def _complete_reserved(
        self, role: str, rnd: int, request: CompletionRequest
    ) -> Completion:
        call_id = f"{self.stage}.{self.inp.attempt}.{next(self._call_numbers)}"
        if self.cfg.stream:
            request = dataclasses.replace(
                request, on_delta=self._on_delta(role, rnd, call_id, request)
            )
        started = time.monotonic()
        span = telemetry.llm_span_start(request)
        try:
            completion = await self.completer.complete(request)
        except Exception as exc:
            # Whatever streamed is void: the stored record never holds half an answer.
            self._discard_calls(role, rnd, [call_id])
            telemetry.llm_span_end(span, error=exc, provider=self.fallback_provider)
            self.emit(
                LlmCallDone(
                    stage=self.stage,
                    role=role,
                    round=rnd,
                    provider=str(getattr(exc, "provider", "") or self.fallback_provider),
                    model=request.model,
                    input_tokens=0,
                    output_tokens=0,
                    cost_usd=0.0,
                    latency_s=time.monotonic() - started,
                    attempts=int(getattr(exc, "attempts", 1) or 1),
                    error=redact(f"{type(exc).__name__}: {exc}")[:2000],
                )
            )
            raise
        if call_id in self._streamed.get(role, ()):
            self.emit(
                AgentDelta(stage=self.stage, role=role, round=rnd, call_id=call_id, done=True)
            )
        telemetry.llm_span_end(span, completion=completion)
        self.input_tokens += completion.usage.input_tokens
        self.output_tokens += completion.usage.output_tokens
        self.cost_usd += completion.cost_usd
        self.emit(
            LlmCallDone(
                stage=self.stage,
                role=role,
                round=rnd,
                provider=completion.provider,
                model=completion.model,
                input_tokens=completion.usage.input_tokens,
                output_tokens=completion.usage.output_tokens,
                cost_usd=completion.cost_usd,
                latency_s=completion.latency_s,
                attempts=completion.attempts,
                cached_input_tokens=completion.usage.cached_input_tokens,
                cache_write_tokens=completion.usage.cache_write_tokens,
            )
        )
        return completion

    def _on_delta(
        self, role: str, rnd: int, call_id: str, request: CompletionRequest
    ) -> Callable[[StreamDelta], None]:
        """The request's on_delta: each streamed piece becomes an AgentDelta of the call
        (a restart, a discard); the caller's own callback, if any, still gets it."""
        theirs = request.on_delta

        def on_delta(delta: StreamDelta) -> None:
            if theirs is not None:
                theirs(delta)
            if delta.restart:
                self._discard_calls(role, rnd, [call_id])
                return
            if not delta.text:
                return
            calls = self._streamed.setdefault(role, [])
            if call_id not in calls:
                calls.append(call_id)
            self.emit(
                AgentDelta(
                    stage=self.stage,
                    role=role,
                    round=rnd,
                    call_id=call_id,
                    text=delta.text,
                    model=request.model,
                )
            )

        return on_delta

    def _discard_calls(self, role: str, rnd: int, call_ids: list[str]) -> None:
        calls = self._streamed.get(role, [])
        for call_id in call_ids:
            if call_id in calls:
                calls.remove(call_id)
                self.emit(
                    AgentDelta(
                        stage=self.stage, role=role, round=rnd, call_id=call_id, discard=True
                    )
                )

    async def _call(
        self,
        role: str,
        rnd: int,
        kind: str,
        messages: list[Message],
        schema: dict[str, Any],
        schema_name: str,
        repairs: str | None = None,
        cache_prefix: int | None = None,
    ) -> tuple[Completion, list[Message]]:
        """Ask `role` and return its final answer with the whole conversation (tool calls
        and their results included), so a repair continues from what the model saw.

        `cache_prefix`: how many of the first messages the first request marks as its
        cacheable prefix (None: the stage's shared messages; 0: none, for a call no later
        call can read from, since Anthropic writes a marked prefix at 1.25x the input
        price); its follow-ups (after tool calls) repeat the prompt and mark at least the
        stage's shared messages."""
        model = self._model(role)
        metadata: dict[str, Any] = {
            "stage": self.stage,
            "role": role,
            "round": rnd,
            "kind": kind,
            "attempt": self.inp.attempt,
            "run_id": self.inp.run_id,
        }
        if repairs:
            metadata["repairs"] = repairs
        workdir = getattr(self.work, "workdir", None)
        if workdir:
            metadata["workdir"] = workdir
        turn = self.tools.turn(role) if self._tools_on(model) else None
        conversation = list(messages)
        prefix = prompts.SHARED_MESSAGES if cache_prefix is None else cache_prefix
        while True:
            done = turn is not None and turn.calls >= self.cfg.max_tool_calls
            request = CompletionRequest(
                model=model,
                messages=tuple(conversation),
                json_schema=schema,
                schema_name=schema_name,
                max_tokens=self.cfg.max_tokens,
                temperature=self.cfg.temperature,
                timeout=self.cfg.timeout,
                metadata=metadata,
                # Every call of the stage carries the same definitions (one cacheable
                # prefix); a turn that used its calls is told to answer instead.
                tools=tuple(self.tools.definitions) if turn is not None else (),
                tool_choice=("none" if done else None) if turn is not None else None,
                # The prompts' shared messages (swarm.prompts) are the stable prefix the
                # vendors cache; one key per stage attempt keeps its calls together.
                cache_prefix=min(prefix, len(conversation)),
                cache_shared=min(prompts.RUN_MESSAGES, prefix, len(conversation)),
                cache_key=self._cache_key,
                answer_schemas=self._answer_schemas,
            )
            prefix = max(prefix, prompts.SHARED_MESSAGES)
            completion = await self._complete(role, rnd, request)
            if turn is None or not completion.tool_calls or done:
                return completion, conversation
            self._cancel_point()
            results = []
            for call in completion.tool_calls:
                with telemetry.tool_span(call.name, call.id, dict(call.arguments or {})):
                    results.append(await asyncio.to_thread(turn.call, call))
            for result in results:
                self.emit(
                    ToolUsed(stage=self.stage, role=role, round=rnd, **result.event_payload())
                )
            conversation += [
                completion.assistant_message(),
                Message("user", tuple(r.block() for r in results)),
            ]

    async def _ask(
        self,
        role: str,
        rnd: int,
        kind: str,
        messages: list[Message],
        schema: dict[str, Any],
        schema_name: str,
        validate: Callable[[Any], dict[str, Any]],
        cache_prefix: int | None = None,
    ) -> tuple[dict[str, Any] | None, str]:
        """Call, parse, redact, validate; on failure one repair call. (answer, "") or
        (None, the last validation error)."""
        answer, error, _ = await self._ask_once(
            role, rnd, kind, messages, schema, schema_name, validate, cache_prefix
        )
        return answer, error

    @telemetry.agent_turn
    async def _ask_once(
        self,
        role: str,
        rnd: int,
        kind: str,
        messages: list[Message],
        schema: dict[str, Any],
        schema_name: str,
        validate: Callable[[Any], dict[str, Any]],
        cache_prefix: int | None = None,
    ) -> tuple[dict[str, Any] | None, str, tuple[list[Message], str]]:
        """_ask, also returning (the conversation before the last answer, that answer's
        text): what a further repair continues from."""
        completion, conversation = await self._call(
            role, rnd, kind, messages, schema, schema_name, cache_prefix=cache_prefix
        )
        try:
            return validate(redact(_parse_json(completion))), "", (conversation, completion.text)
        except ArtifactInvalid as exc:
            error = str(exc)
        self._discard_calls(role, rnd, list(self._streamed.get(role, [])))
        repair = prompts.repair_messages(conversation, bad_text=completion.text, error=error)
        completion, conversation = await self._call(
            role, rnd, "repair", repair, schema, schema_name, kind
        )
        try:
            return validate(redact(_parse_json(completion))), "", (conversation, completion.text)
        except ArtifactInvalid as exc:
            self._discard_calls(role, rnd, list(self._streamed.get(role, [])))
            return None, str(exc), (conversation, completion.text)

    def _agent_message(self, role: str, rnd: int, answer: dict[str, Any]) -> None:
        # The stored message takes the place of what streamed for it.
        self._streamed.pop(role, None)
        self.emit(
            AgentMessage(
                stage=self.stage, role=role, round=rnd, model=self._model(role), answer=answer
            )
        )

    async def _patch_checks(
        self, artifact: dict[str, Any], *, empty_ok: bool
    ) -> list[dict[str, Any]]:
        diff = artifact.get("diff") or ""
        if not diff.strip():
            if empty_ok:
                return [{"name": "patch_applies", "ok": True, "detail": "empty diff: no change"}]
            return [
                {"name": "patch_applies", "ok": False, "detail": "empty diff: nothing to check"}
            ]
        apply = getattr(self.work, "apply_patch", None)
        if apply is not None:
            ok, detail = await asyncio.to_thread(apply, diff)
        else:
            ok, detail = self.patch_check(self.inp.repo.path, diff)
        return [{"name": "patch_applies", "ok": bool(ok), "detail": redact(str(detail))[:1000]}]

    async def _applied(
        self,
        role: str,
        rnd: int,
        artifact: dict[str, Any],
        answer: dict[str, Any],
        context: tuple[list[Message], str],
        schema: dict[str, Any],
        schema_name: str,
        validate: Callable[[Any], dict[str, Any]],
        *,
        empty_ok: bool,
    ) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
        """The code stage's diff applied to the workspace. A diff that does not apply goes
        back to `role` with the apply error, at most cfg.apply_repairs times (only with a
        workspace: a mere `git apply --check` gives the model nothing to read). Returns
        (artifact, answer, checks) of the last attempt."""
        checks = await self._patch_checks(artifact, empty_ok=empty_ok)
        repairs = self.cfg.apply_repairs if getattr(self.work, "apply_patch", None) else 0
        for _ in range(repairs):
            if all(c["ok"] for c in checks):
                break
            self._cancel_point()
            conversation, last_text = context
            error = (
                f"the diff does not apply to the repository at the base commit: "
                f"{checks[0]['detail']}. Read the files as they are (with the tools, or from "
                "the file contents you were given) and answer with the complete corrected "
                "JSON, its diff made against them."
            )
            messages = prompts.repair_messages(conversation, bad_text=last_text, error=error)
            fixed, _, context = await self._ask_once(
                role, rnd, "apply_repair", messages, schema, schema_name, validate
            )
            if fixed is None:
                break
            answer = fixed
            artifact = fixed["artifact"] if "artifact" in fixed else fixed
            self._agent_message(role, rnd, fixed)
            checks = await self._patch_checks(artifact, empty_ok=empty_ok)
        return artifact, answer, checks

    async def evidence_gather(self) -> None:
        """test_debug: measure the tests first, so the debate argues over the evidence."""
        gather = getattr(self.work, "test_evidence", None)
        if gather is None:
            return
        self._cancel_point()
        self.evidence = await asyncio.to_thread(gather)
        self.inp = dataclasses.replace(self.inp, evidence=self.evidence)

    def _evidence_fill(self, artifact: dict[str, Any], *, decide: bool) -> dict[str, Any]:
        """test_debug's artifact with Tekton's evidence: `ship` only where the evidence
        agrees (`decide`: the evidence alone, consensus-free), coverage measured."""
        if self.stage != "test_debug" or self.evidence is None:
            return artifact
        ev = self.evidence
        filled = dict(artifact)
        filled["evidence"] = ev
        filled["ship"] = bool(ev.get("ship")) and (decide or bool(artifact.get("ship")))
        filled["coverage"] = {
            "measured": ev.get("changed_coverage") is not None,
            "changed_lines": ev.get("changed_coverage"),
        }
        filled["junit_path"] = None  # the runs' JUnit is stored with the run, not a path
        return filled

    def _tests_check(self, artifact: dict[str, Any]) -> list[dict[str, Any]]:
        if self.stage != "test_debug":
            return []
        ev = self.evidence or {}
        if artifact["ship"]:
            detail = (
                f"{len(ev.get('newly_passing') or [])} newly passing, none newly failing"
                if ev
                else "report says ship"
            )
            return [{"name": "ship", "ok": True, "detail": detail}]
        reasons = "; ".join(ev.get("reasons") or []) if ev.get("reasons") else ""
        detail = f"tests: {reasons}" if reasons else "report says no-ship"
        return [{"name": "ship", "ok": False, "detail": detail}]

    def _outcome(self, **kw: Any) -> StageOutcome:
        return StageOutcome(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cost_usd=self.cost_usd,
            **kw,
        )

    # --- debate ----------------------------------------------------------------------------
    def _debater_prefix(self, role: str, rnd: int) -> int:
        """The messages a debater's first request marks for the cache. A round's calls
        start together (but a staggered opening round's), so none reads what another
        writes: the proponent's marks (writes)
        the part new in this round (the stage's context in the opening round, the last
        round's transcript after it) for the rounds after; the others mark only what an
        earlier call wrote (the run's part, the transcript up to the round before) and pay
        no premium for the rest."""
        full = prompts.SHARED_MESSAGES + rnd  # the prompt but its turn
        if role == DEBATER_ROLES[0] or self.cfg.sequential:
            return full
        if rnd == 0 and self._opening_staggered():
            return full  # the proponent's call has finished: its prefix is there to read
        return prompts.RUN_MESSAGES if rnd == 0 else full - 1

    def _opening_staggered(self) -> bool:
        """Whether the opening round's proponent goes first and the other two start when it
        has finished: they then read the stage's prefix it wrote (the run's part, which a
        stage cannot read from the one before, their answer tools differing, and the
        stage's own) instead of paying it in full. One call's latency more per stage, so
        only where the three calls go to one model with a price (an offline one costs nothing)."""
        return opening_staggered(
            {role: self._model(role) for role in DEBATER_ROLES},
            self._price,
            cache_stagger=self.cfg.cache_stagger,
            sequential=self.cfg.sequential,
        )

    async def _debater(self, role: str, rnd: int, seen: list[dict[str, Any]]) -> dict[str, Any]:
        messages = prompts.debater_messages(
            self.inp, role=role, round=rnd, rounds=self.cfg.rounds, transcript=seen
        )
        answer, error = await self._ask(
            role,
            rnd,
            "debater",
            messages,
            self._debater_schema,
            prompts.DEBATER_ANSWER,
            lambda d: answer_validate(DebaterAnswer, d, what=f"{role} answer"),
            cache_prefix=self._debater_prefix(role, rnd),
        )
        if answer is None:
            # The stage goes on without this voice: a no-vote, noted for the others to see.
            return {
                "role": role,
                "round": rnd,
                "invalid": f"answer discarded after a repair: {error}",
            }
        self._agent_message(role, rnd, answer)
        return {"role": role, "round": rnd, **answer}

    async def run_debate(self) -> StageOutcome:
        cfg = self.cfg
        mediator_schema = mediator_json_schema(self.stage)
        # Sharing the answer tools costs the stage the run part the stage before wrote (its
        # tools differ); only a staggered opening round wins that back.
        shared = self._opening_staggered()
        if shared:
            self._answer_schemas = (
                (prompts.DEBATER_ANSWER, self._debater_schema),
                (prompts.MEDIATOR_ANSWER, mediator_schema),
            )
        transcript: list[dict[str, Any]] = []
        for rnd in range(cfg.rounds + 1):
            self._cancel_point()
            seen = list(transcript)
            if cfg.sequential:
                entries = [await self._debater(role, rnd, seen) for role in DEBATER_ROLES]
            elif rnd == 0 and self._opening_staggered():
                first = await self._debater(DEBATER_ROLES[0], rnd, seen)
                rest = await _all([self._debater(r, rnd, seen) for r in DEBATER_ROLES[1:]])
                entries = [first, *rest]
            else:
                entries = await _all([self._debater(role, rnd, seen) for role in DEBATER_ROLES])
            transcript.extend(entries)

        latest: dict[str, Vote] = {}
        for entry in transcript:  # in round order, so the last valid vote wins
            if isinstance(entry.get("vote"), dict):
                latest[entry["role"]] = Vote(
                    role=entry["role"],
                    approve=entry["vote"]["approve"],
                    self_confidence=entry["self_confidence"],
                    reason=entry["vote"]["reason"],
                )
        votes = [latest[r] for r in DEBATER_ROLES if r in latest]
        total = sum(v.self_confidence for v in votes)
        approval = sum(v.self_confidence for v in votes if v.approve) / total if total else 0.0

        self._cancel_point()
        mediator_round = cfg.rounds + 1
        messages = prompts.mediator_messages(
            self.inp, transcript=transcript, artifact_schema=artifact_json_schema(self.stage)
        )

        def validate(data: Any) -> dict[str, Any]:
            answer = answer_validate(MediatorAnswer, data, what="mediator answer")
            answer["artifact"] = artifact_validate(
                self.stage, artifact_complete(self.stage, answer["artifact"])
            )
            return answer

        answer, error, context = await self._ask_once(
            "mediator",
            mediator_round,
            "mediator",
            messages,
            mediator_schema,
            prompts.MEDIATOR_ANSWER,
            validate,
            # What the last round's proponent wrote: the prompt up to the last round's
            # transcript (the debaters' tools and answer tools are the mediator's too).
            # Else its schema is its own and no one reads its prefix.
            cache_prefix=prompts.SHARED_MESSAGES + cfg.rounds if shared else 0,
        )
        if answer is None:
            return self._outcome(
                status="blocked",
                reason=f"artifact failed validation: {error}",
                artifact=None,
                votes=votes,
                approval=approval,
            )
        self._agent_message("mediator", mediator_round, answer)
        artifact = answer["artifact"]
        confidence = answer["confidence"]

        reasons: list[str] = []
        if not votes:
            reasons.append("quorum 0.00: no debater cast a valid vote")
        elif approval + _EPS < cfg.quorum:
            no = [v.role for v in votes if not v.approve]
            silent = [r for r in DEBATER_ROLES if r not in latest]
            why = f"{_names(no)} voted no" if no else "the votes carry no weight"
            if silent:
                why += f"; {_names(silent)} cast no valid vote"
            reasons.append(f"quorum {approval:.2f} < {cfg.quorum:.2f} ({why})")
        if confidence + _EPS < cfg.threshold:
            reasons.append(f"confidence {confidence:.2f} < threshold {cfg.threshold:.2f}")
        if answer["status"] == "block":
            reasons.append(f"mediator said block: {answer['rationale'][:300]}")
        if self.stage == "review" and artifact["status"] == "block":
            issues = "; ".join(artifact["issues"])[:300] or "no issues listed"
            reasons.append(f"review says block: {issues}")
        checks: list[dict[str, Any]] = []
        if self.stage == "code":
            artifact, answer, checks = await self._applied(
                "mediator",
                mediator_round,
                artifact,
                answer,
                context,
                mediator_schema,
                prompts.MEDIATOR_ANSWER,
                validate,
                empty_ok=True,
            )
            confidence = answer["confidence"]
            reasons += [f"patch does not apply: {c['detail']}" for c in checks if not c["ok"]]
        # One confidence per stage: the one checked against the threshold is the artifact's.
        artifact = {**self._evidence_fill(artifact, decide=False), "confidence": confidence}
        if self.stage == "test_debug":
            checks = self._tests_check(artifact)
            reasons += [f"no ship: {c['detail']}" for c in checks if not c["ok"]]

        passed = not reasons
        summary = (
            f"quorum {approval:.2f} >= {cfg.quorum:.2f}, "
            f"confidence {confidence:.2f} >= threshold {cfg.threshold:.2f}"
        )
        return self._outcome(
            status="succeeded" if passed else "blocked",
            reason=summary if passed else "; ".join(reasons),
            artifact=artifact,
            patch=artifact["diff"] if self.stage == "code" else None,
            confidence=confidence,
            votes=votes,
            approval=approval,
            mediator={
                k: answer[k]
                for k in (
                    "status",
                    "rationale",
                    "dissent",
                    "risks",
                    "checklist",
                    "votes",
                    "loops_run",
                )
            },
            checks=checks,
        )

    # --- consensus-free --------------------------------------------------------------------
    async def run_consensus_free(self) -> StageOutcome:
        self._cancel_point()
        schema = artifact_json_schema(self.stage)
        messages = prompts.draft_messages(self.inp, artifact_schema=schema)
        validate = lambda d: artifact_validate(self.stage, artifact_complete(self.stage, d))  # noqa: E731
        artifact, error, context = await self._ask_once(
            "proponent",
            0,
            "draft",
            messages,
            schema,
            prompts.draft_answer_name(self.stage),
            validate,
        )
        if artifact is None:
            return self._outcome(
                status="blocked",
                reason=f"artifact failed validation: {error}",
                artifact=None,
                checks=[{"name": "schema", "ok": False, "detail": error}],
            )
        self._agent_message("proponent", 0, artifact)
        checks = [
            {"name": "schema", "ok": True, "detail": f"validates as the {self.stage} artifact"}
        ]
        if self.stage == "code":
            artifact, _, patch = await self._applied(
                "proponent",
                0,
                artifact,
                artifact,
                context,
                schema,
                prompts.draft_answer_name(self.stage),
                validate,
                empty_ok=False,
            )
            checks += patch
        artifact = self._evidence_fill(artifact, decide=True)
        checks += self._tests_check(artifact)
        failed = [c for c in checks if not c["ok"]]
        return self._outcome(
            status="blocked" if failed else "succeeded",
            reason=(
                "; ".join(f"check {c['name']} failed: {c['detail']}" for c in failed)
                if failed
                else "consensus-free: all checks passed ("
                + ", ".join(c["name"] for c in checks)
                + ")"
            ),
            artifact=artifact,
            patch=artifact["diff"] if self.stage == "code" else None,
            confidence=artifact["confidence"],
            checks=checks,
        )
