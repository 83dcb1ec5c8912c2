"""One front-door invocation from start to journal: `ask claude|codex|agno` and `prompt`.

The adapters (the tekton CLI, the prompts app's task) parse their input into an
InvokeSpec, build the Router, and call `invoke`; it checks what can be checked before
anything is written (UsageProblem: one line, exit 2, nothing journaled), then journals
the invocation while it runs and returns an InvokeOutcome (exit 0 OK or DRY-RUN,
1 FAILED).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swarm.frontdoor.agno import BudgetSpent, agno_chain, agno_describe, agno_run
from swarm.frontdoor.chains import Attempt, chain_complete, chains_merge
from swarm.frontdoor.intent import intent_classify
from swarm.frontdoor.journal import DRY_RUN, FAILED, OK, Journal, git_facts
from swarm.providers.base import (
    Completion,
    CompletionRequest,
    DeltaCallback,
    Message,
    NoRouteError,
    ProviderError,
)
from swarm.redact import redact

EventCallback = Callable[[str, dict[str, Any]], None]

KINDS = ("claude", "codex", "agno", "prompt")
DEFAULT_CLAUDE_MODEL = "anthropic/claude-sonnet-4.6"
DEFAULT_CODEX_MODEL = "codex/gpt-5-codex"
PROMPT_MAX_CHARS = 20_000
CONTEXT_MAX_BYTES = 200_000
SYSTEM = (
    "You answer one request from a developer working in a terminal. Be direct and "
    "concrete; give code when code is asked for."
)


def retry_options_for(kind: str) -> dict[str, Any]:
    """RetryingProvider options for the Router of a `kind` invocation: the stages' retries,
    except that a Codex run is not started again after its timeout (four tries of a
    hanging tool would be four timeouts)."""
    return {"max_attempts": 1} if kind == "codex" else {}


class UsageProblem(Exception):
    """The request cannot be sent as given (exit 2); nothing has been written. `field`
    names what is wrong (prompt, context, model, temperature, intent), for the API."""

    def __init__(self, message: str, *, field: str = "non_field_errors") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class InvokeSpec:
    kind: str  # one of KINDS
    text: str
    context: str = ""  # the --context file's text
    model: str | None = None
    temperature: float | None = None
    intent: str | None = None  # prompt: overrides the rules
    dry_run: bool = False  # agno: show the chain, call nothing
    memory: str = ""  # the recent journal, offered as context ("" with --no-memory)
    chains: Mapping[str, Any] | None = None  # prompt: intent chains over the defaults
    agno_models: Mapping[str, str] | None = None
    timeout: float = 120.0
    codex_timeout: float = 300.0
    max_chars: int = PROMPT_MAX_CHARS
    # The invocation's budget, as a run's (0: none): agno stops before a step once spent.
    budget_tokens: int = 0
    budget_cost_usd: float = 0.0


@dataclass
class InvokeOutcome:
    outcome: str  # OK | FAILED | DRY-RUN
    response: str = ""
    error: str = ""
    provider: str = ""
    model: str = ""
    intent: str = ""
    intent_reason: str = ""
    chain: list[str] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    duration_s: float = 0.0
    stdout: str = ""
    stderr: str = ""
    journal_id: str = ""
    git: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return 1 if self.outcome == FAILED else 0

    @property
    def is_offline(self) -> bool:
        return self.provider == "offline"

    def redacted(self) -> dict[str, Any]:
        """Every field as plain data, redacted: what a row or an API answer may hold."""
        return redact(dataclasses.asdict(self))


def context_read(path: str | Path) -> str:
    """The text of a --context file; UsageProblem if missing, binary or too large."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise UsageProblem(f"--context file {p} does not exist") from None
    except IsADirectoryError:
        raise UsageProblem(f"--context {p} is a directory, not a file") from None
    except OSError as exc:
        raise UsageProblem(f"--context file {p} cannot be read: {exc.strerror}") from None
    if len(raw) > CONTEXT_MAX_BYTES:
        raise UsageProblem(
            f"--context file {p} is {len(raw)} bytes; at most {CONTEXT_MAX_BYTES} are sent"
        )
    if b"\0" in raw:
        raise UsageProblem(f"--context file {p} is binary; give a text file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageProblem(f"--context file {p} is not UTF-8 text") from None


def _model_id(model: str | None, default: str, vendor: str) -> str:
    if not model:
        return default
    return model if "/" in model else f"{vendor}/{model}"


def spec_check(spec: InvokeSpec) -> None:
    """What is wrong with `spec` before anything runs (UsageProblem)."""
    if spec.kind not in KINDS:
        raise UsageProblem(
            f"unknown agent {spec.kind!r}; agents: {', '.join(KINDS)}", field="agent"
        )
    if not spec.text.strip():
        raise UsageProblem("the prompt is empty", field="prompt")
    if len(spec.text) > spec.max_chars:
        raise UsageProblem(
            f"the prompt is {len(spec.text)} characters; the limit is {spec.max_chars}",
            field="prompt",
        )
    if spec.temperature is not None and not 0.0 <= spec.temperature <= 2.0:
        raise UsageProblem(
            f"--temperature must be between 0 and 2, got {spec.temperature:g}",
            field="temperature",
        )
    if spec.intent is not None:
        try:
            intent_classify("", override=spec.intent)
        except ValueError as exc:
            raise UsageProblem(str(exc), field="intent") from None


def prompt_plan(spec: InvokeSpec) -> tuple[str, str, list[str]]:
    """(intent, why, chain) for `tekton prompt` (and its --explain)."""
    decision = intent_classify(spec.text, override=spec.intent)
    try:
        chains = chains_merge(spec.chains)
    except ValueError as exc:
        raise UsageProblem(f"TEKTON_PROMPT_CHAINS: {exc}") from None
    if spec.model:
        return decision.intent, decision.reason, [_model_id(spec.model, "", "anthropic")]
    return decision.intent, decision.reason, list(chains[decision.intent])


def _messages(spec: InvokeSpec) -> tuple[Message, ...]:
    system = SYSTEM
    if spec.memory:
        system += "\n\nYour recent sessions with this developer (newest first):\n" + spec.memory
    user = spec.text
    if spec.context:
        user = f"{spec.text}\n\n<context>\n{spec.context}\n</context>"
    return (Message("system", system), Message("user", user))


def _fill(outcome: InvokeOutcome, completion: Completion) -> None:
    outcome.provider = completion.provider
    outcome.model = completion.model
    outcome.tokens_in += completion.usage.input_tokens
    outcome.tokens_out += completion.usage.output_tokens
    outcome.cost_usd += completion.cost_usd


def invoke_plan(spec: InvokeSpec, *, completer: Any) -> InvokeOutcome:
    """The checks and the chain of `spec`, before anything runs or is written: an outcome
    with `chain` (and `intent` for a prompt) filled. Raises UsageProblem: a bad prompt,
    an unknown intent, a single-model agent whose model has no route here."""
    spec_check(spec)
    outcome = InvokeOutcome("")
    if spec.kind == "prompt":
        outcome.intent, outcome.intent_reason, outcome.chain = prompt_plan(spec)
    elif spec.kind == "agno":
        steps = agno_chain(
            model=_model_id(spec.model, "", "anthropic") or None, models=spec.agno_models
        )
        outcome.chain = [s.model for s in steps]
    else:
        default, vendor = (
            (DEFAULT_CLAUDE_MODEL, "anthropic")
            if spec.kind == "claude"
            else (DEFAULT_CODEX_MODEL, "codex")
        )
        outcome.chain = [_model_id(spec.model, default, vendor)]
    if spec.kind != "prompt" and not spec.dry_run:
        for model in dict.fromkeys(outcome.chain):
            try:
                completer.resolve(model)
            except NoRouteError as exc:
                raise UsageProblem(str(exc), field="model") from None
    return outcome


async def invoke(
    spec: InvokeSpec,
    *,
    completer: Any,  # a swarm.providers.Router
    journal: Journal | None,
    say: Callable[[str], None] = lambda _line: None,
    on_delta: DeltaCallback | None = None,
    git_path: str | Path | None = None,
    meta: Mapping[str, Any] | None = None,
    on_journal: Callable[[str], None] | None = None,
    on_event: EventCallback | None = None,
) -> InvokeOutcome:
    """Run `spec` and journal it (when `journal` is given). `say` hears progress lines
    (the model tried, why the chain moved on); `on_delta` the answer as it streams;
    `on_journal` the journal folder's name once it exists; `on_event` the progress as
    data, (kind, payload): "step" a model (agno: a role) begins ({"model", "role"?}),
    "attempt" a model is done (Attempt.as_dict()), "fallback" the chain moves on
    ({"from", "to", "reason"}). Called on the event loop: it must not block. Raises UsageProblem before
    anything is written; a JournalError when the memory directory cannot be written."""
    outcome = invoke_plan(spec, completer=completer)
    temperature = 0.2 if spec.temperature is None else spec.temperature
    outcome.git = git_facts(git_path)
    command = f"ask {spec.kind}" if spec.kind != "prompt" else "prompt"
    facts: dict[str, Any] = {
        **(meta or {}),
        **outcome.git,
        "chain": outcome.chain,
        "intent": outcome.intent or None,
        "temperature": temperature,
        "memory_offered": bool(spec.memory),
    }
    if journal is None:
        return await _body(spec, outcome, None, completer, say, on_delta, temperature, on_event)
    with journal.invocation(
        agent=spec.kind, command=command, prompt=spec.text, context=spec.context, **facts
    ) as inv:
        outcome.journal_id = inv.id
        if on_journal is not None:
            on_journal(inv.id)
        return await _body(spec, outcome, inv, completer, say, on_delta, temperature, on_event)


async def _body(
    spec, outcome, inv, completer, say, on_delta, temperature, on_event=None
) -> InvokeOutcome:
    def event(kind: str, **data: Any) -> None:
        if inv is not None:
            inv.event(kind, **data)

    def notify(kind: str, **data: Any) -> None:
        if on_event is not None:
            on_event(kind, data)

    def step_start(step) -> None:
        say(f"-- {step.role} ({step.model})")
        notify("step", role=step.role, model=step.model)

    def finish(state: str, **extra: Any) -> InvokeOutcome:
        outcome.outcome = state
        if inv is not None:
            inv.finish(
                state,
                response=outcome.response,
                stdout=outcome.stdout if spec.kind == "codex" else None,
                stderr=outcome.stderr if spec.kind == "codex" else None,
                error=outcome.error or None,
                provider=outcome.provider or None,
                model=outcome.model or None,
                tokens_in=outcome.tokens_in,
                tokens_out=outcome.tokens_out,
                cost_usd=round(outcome.cost_usd, 6),
                attempts=outcome.attempts,
                **extra,
            )
            outcome.duration_s = inv.meta.get("duration_s", 0.0)
        return outcome

    if spec.kind == "agno":
        steps = agno_chain(model=outcome.chain[0] if spec.model else None, models=spec.agno_models)
        if spec.dry_run:
            outcome.response = "\n".join(agno_describe(steps))
            return finish(DRY_RUN)

        def step_done(step, completion, seconds):
            _fill(outcome, completion)
            attempt = Attempt(
                step.model,
                "ok",
                f"{step.role} by {completion.provider}",
                completion.attempts,
                round(seconds, 3),
            ).as_dict()
            outcome.attempts.append(attempt)
            notify("attempt", **attempt)
            event("step", role=step.role, model=step.model, provider=completion.provider)

        try:
            result = await agno_run(
                completer,
                steps,
                spec.text,
                context=_context_text(spec),
                temperature=temperature,
                timeout=spec.timeout,
                on_step=step_start,
                on_delta=on_delta,
                on_done=step_done,
                budget_left=lambda: _budget_spent(spec, outcome),
            )
        except (ProviderError, BudgetSpent) as exc:
            done = getattr(exc, "agno_done", [])
            outcome.response = "\n\n".join(f"## {s.role}\n{c.text.strip()}" for s, c in done)
            outcome.error = _line(exc)
            return finish(FAILED)
        outcome.response = result.text
        return finish(OK)

    request = CompletionRequest(
        model=outcome.chain[0],
        messages=_messages(spec),
        temperature=temperature,
        timeout=spec.codex_timeout if spec.kind == "codex" else spec.timeout,
        metadata={"kind": "frontdoor", "agent": spec.kind},
        on_delta=on_delta,
    )

    def tried(attempt: Attempt) -> None:
        outcome.attempts.append(attempt.as_dict())
        event("attempt", **attempt.as_dict())
        notify("attempt", **attempt.as_dict())
        if attempt.outcome != "ok" and len(outcome.chain) > 1:
            # Attempts follow the chain one to one, so the next model is at their count.
            tried_n = len(outcome.attempts)
            moving = attempt.outcome in ("failed", "no-route") and tried_n < len(outcome.chain)
            say(
                f"{attempt.model}: {attempt.outcome}: {attempt.detail}"
                + ("; trying the next model" if moving else "")
            )
            if moving:
                notify(
                    "fallback",
                    **{
                        "from": attempt.model,
                        "to": outcome.chain[tried_n],
                        "reason": attempt.detail,
                    },
                )

    kept: list[dict[str, Any]] | None = None
    token = None
    if spec.kind == "codex":
        from swarm.providers.cli_backends import CLI_OUTPUT

        kept = []
        token = CLI_OUTPUT.set(kept)
    try:
        if spec.kind == "prompt":
            say(
                f"intent {outcome.intent} ({outcome.intent_reason}); chain {' -> '.join(outcome.chain)}"
            )
        result = await chain_complete(
            completer,
            request,
            outcome.chain,
            on_attempt=tried,
            on_start=lambda model: notify("step", model=model),
        )
    finally:
        if token is not None:
            CLI_OUTPUT.reset(token)
    if kept:
        outcome.stdout = kept[-1]["stdout"]
        outcome.stderr = kept[-1]["stderr"]
        if kept[-1]["timed_out"]:
            outcome.stderr = (outcome.stderr + "\n" if outcome.stderr else "") + (
                f"[killed: no answer within {spec.codex_timeout:g} s]"
            )
    if result.completion is None:
        outcome.error = _line(result.error) if result.error else "no model answered"
        if len(outcome.chain) > 1:
            outcome.error = f"every model of the chain failed; last: {outcome.error}"
        return finish(FAILED)
    _fill(outcome, result.completion)
    outcome.response = result.completion.text
    return finish(OK)


def _budget_spent(spec: InvokeSpec, outcome: InvokeOutcome) -> str | None:
    used = outcome.tokens_in + outcome.tokens_out
    if spec.budget_tokens and used >= spec.budget_tokens:
        return f"token budget of {spec.budget_tokens} used up ({used} used)"
    if spec.budget_cost_usd and outcome.cost_usd >= spec.budget_cost_usd:
        return f"cost budget of ${spec.budget_cost_usd:.2f} used up (${outcome.cost_usd:.4f} spent)"
    return None


def _context_text(spec: InvokeSpec) -> str:
    parts = []
    if spec.context:
        parts.append(spec.context)
    if spec.memory:
        parts.append("Recent sessions (newest first):\n" + spec.memory)
    return "\n\n".join(parts)


def _line(exc: BaseException) -> str:
    return redact(" ".join(str(exc).split()) or type(exc).__name__)[:300]
