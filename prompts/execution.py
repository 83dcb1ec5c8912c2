"""Runs one invocation for the adapters (the CLI plugin, the task): the settings into an
InvokeSpec, the Router, the journal, and the row kept in step with them."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings

from prompts.models import PromptInvocation
from tekton_site.db import connection_release

_CHAINS_ENV = "TEKTON_PROMPT_CHAINS"


def memory_dir_default(*, username: str | None = None) -> Path:
    """The journal of this login (CLI) or of a dashboard user (web/...)."""
    root = Path(settings.TEKTON_MEMORY_DIR)
    if username is not None:
        return root / "web" / username
    try:
        login = getpass.getuser()
    except Exception:  # no login name (a container's uid): one shared journal
        login = "default"
    return root / login


def chains_setting() -> dict[str, Any] | None:
    raw = os.environ.get(_CHAINS_ENV, "").strip()
    if not raw:
        return None
    from swarm.frontdoor.invoke import UsageProblem

    try:
        data = json.loads(raw)
    except ValueError:
        raise UsageProblem(
            f'{_CHAINS_ENV} must be JSON like {{"code": ["vendor/model"]}}'
        ) from None
    if not isinstance(data, dict):
        raise UsageProblem(f"{_CHAINS_ENV} must be a JSON object of intent -> model list")
    return data


def spec_build(
    *,
    kind: str,
    text: str,
    context: str = "",
    model: str | None = None,
    temperature: float | None = None,
    intent: str | None = None,
    dry_run: bool = False,
    memory: str = "",
):
    from swarm.frontdoor.invoke import InvokeSpec

    return InvokeSpec(
        kind=kind,
        text=text,
        context=context,
        model=model,
        temperature=temperature,
        intent=intent,
        dry_run=dry_run,
        memory=memory,
        chains=chains_setting(),
        timeout=settings.TEKTON_PROMPT_TIMEOUT_S,
        codex_timeout=settings.TEKTON_CODEX_TIMEOUT_S,
        max_chars=settings.TEKTON_PROMPT_MAX_CHARS,
        budget_tokens=settings.TEKTON_PROMPT_BUDGET_TOKENS,
        budget_cost_usd=settings.TEKTON_PROMPT_BUDGET_USD,
    )


def router_for(kind: str, *, record_path: str | None = None):
    """The Router the stages use, from this process's environment; `record_path` appends
    every call to that cassette (replayable with TEKTON_LLM_BACKEND=replay)."""
    from runs.sharedmem import rate_limiter_get
    from swarm.frontdoor.invoke import retry_options_for
    from swarm.providers import router_build

    return router_build(
        env=dict(os.environ),
        rate_limiter=rate_limiter_get(),
        retry_options=retry_options_for(kind),
        record_path=record_path,
        replay_path=os.environ.get("TEKTON_REPLAY_PATH") or None,
    )


def invocation_run(
    *,
    spec,
    completer,
    journal,
    invocation: PromptInvocation,
    say: Callable[[str], None] = lambda _l: None,
    on_delta=None,
    git_path: str | None = None,
    live: bool = False,
):
    """Run `spec`, keeping `invocation` (already created) in step; returns the
    InvokeOutcome. Whatever stops it (Ctrl-C included) leaves the row FAILED.

    `live` (the API and the page): the answer so far goes into the row, and the progress
    (steps, attempts, fallbacks, the answer's growth) into the invocation's events, every
    LIVE_SECONDS while it runs, so its stream (and a reader polling the row) follows it.
    The calls then run in a thread of their own and this thread does every database
    write (the ORM refuses to run inside an event loop)."""
    from prompts.services import (
        prompt_invocation_fail,
        prompt_invocation_finish,
        prompt_invocation_journal_set,
        prompt_invocation_progress,
    )
    from swarm.frontdoor.invoke import invoke

    pieces: list[str] = []
    reported: list[tuple[str, dict[str, Any]]] = []
    wake = threading.Event()
    on_event = None
    if live:

        def on_event(kind: str, data: dict[str, Any]) -> None:
            # From the calls' event loop: only hand it over; this thread writes it.
            reported.append((f"prompt.{kind}", data))
            wake.set()

        def on_delta(delta, _outer=on_delta):
            if delta.restart:
                pieces.clear()
            elif delta.text:
                pieces.append(delta.text)
            if _outer is not None:
                _outer(delta)

    async def go():
        try:
            return await invoke(
                spec,
                completer=completer,
                journal=journal,
                say=say,
                on_delta=on_delta,
                git_path=git_path,
                meta={"invocation": invocation.pk, "who": invocation.who},
                on_journal=lambda jid: invocation.__setattr__("journal_id", jid),
                on_event=on_event,
            )
        finally:
            await completer.aclose()

    # The calls take seconds: the connection waits in the pool meanwhile (tekton_site.db).
    connection_release()
    try:
        outcome = (
            _run_live(go, invocation, pieces, reported, wake, prompt_invocation_progress)
            if live
            else (asyncio.run(go()))
        )
    except BaseException as exc:
        reason = (
            "interrupted"
            if isinstance(exc, KeyboardInterrupt | asyncio.CancelledError)
            else (" ".join(str(exc).split()) or type(exc).__name__)
        )
        prompt_invocation_fail(invocation=invocation, error=reason[:500])
        raise
    prompt_invocation_finish(invocation=invocation, outcome=outcome.redacted())
    if outcome.journal_id:
        prompt_invocation_journal_set(invocation=invocation, journal_id=outcome.journal_id)
    return outcome


LIVE_SECONDS = 0.25


def _run_live(go, invocation, pieces: list[str], reported: list, wake, progress):
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            result["outcome"] = asyncio.run(go())
        except BaseException as exc:  # handed to the caller's thread below
            result["error"] = exc

    thread = threading.Thread(target=work, name=f"tekton-prompt-calls-{invocation.pk}")
    thread.start()
    text_seen = shown = ""

    def tick() -> None:
        nonlocal text_seen, shown
        taken = reported[: len(reported)]
        del reported[: len(taken)]
        text = "".join(pieces)
        if taken or text != text_seen:
            shown = progress(invocation=invocation, partial=text, sent=shown, events=taken)
            text_seen = text

    while thread.is_alive():
        connection_release()
        wake.wait(LIVE_SECONDS)
        wake.clear()
        tick()
    tick()  # what was reported after the last tick, before the finish
    if "error" in result:
        raise result["error"]
    return result["outcome"]


def invocation_execute(*, invocation_id: int) -> None:
    """Run a queued invocation (from the API or the page) once: claim it, run it with the
    owner's journal, record the outcome. Its texts are the stored, redacted ones: what
    the web asked is sent as it was kept. Safe to call twice; a missing or claimed row
    is left alone."""
    from prompts.services import prompt_invocation_claim, prompt_invocation_fail
    from swarm.frontdoor.invoke import UsageProblem
    from swarm.frontdoor.journal import Journal, JournalError

    if not prompt_invocation_claim(invocation_id=invocation_id):
        return
    invocation = PromptInvocation.objects.select_related("owner").get(pk=invocation_id)
    options = invocation.options or {}
    username = invocation.owner.get_username() if invocation.owner else "anonymous"
    journal = Journal(memory_dir_default(username=username))
    try:
        spec = spec_build(
            kind=invocation.agent,
            text=invocation.prompt,
            context=invocation.context,
            model=invocation.requested_model or None,
            temperature=invocation.temperature,
            intent=(invocation.intent or None) if options.get("intent_given") else None,
            dry_run=bool(options.get("dry_run")),
            memory=journal.recent_context() if options.get("memory", True) else "",
        )
        invocation_run(
            spec=spec,
            completer=router_for(invocation.agent),
            journal=journal,
            invocation=invocation,
            git_path=invocation.repo_path or None,
            live=True,
        )
    except (UsageProblem, JournalError) as exc:
        if not invocation.is_finished:
            prompt_invocation_fail(invocation=invocation, error=str(exc))
