"""Writes of prompt invocations. Every text is redacted here, before it reaches a row."""

from __future__ import annotations

import os
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from prompts.events import FINAL_KIND, prompt_events_record
from prompts.models import PromptInvocation
from swarm.redact import Labeller, redact

_STATUS = {"OK": "ok", "FAILED": "failed", "DRY-RUN": "dry-run"}


@transaction.atomic
def prompt_invocation_create(
    *,
    agent: str,
    prompt: str,
    owner=None,
    who: str = "",
    source: str = PromptInvocation.Source.CLI,
    context: str = "",
    requested_model: str | None = None,
    temperature: float | None = None,
    intent: str | None = None,
    chain: list[str] | None = None,
    repo_path: str = "",
    status: str = PromptInvocation.Status.RUNNING,
) -> PromptInvocation:
    label = Labeller()
    invocation = PromptInvocation.objects.create(
        owner=owner,
        who=who[:150],
        source=source,
        agent=agent,
        command=f"ask {agent}" if agent != "prompt" else "prompt",
        intent=intent or "",
        status=status,
        prompt=redact(prompt, labeller=label),
        context=redact(context, labeller=label),
        requested_model=requested_model or "",
        temperature=temperature,
        chain=list(chain or []),
        repo_path=repo_path,
    )
    queued = status == PromptInvocation.Status.QUEUED
    prompt_events_record(
        invocation_id=invocation.pk,
        items=[
            (
                "prompt.queued" if queued else "prompt.started",
                {"agent": agent, "intent": invocation.intent, "chain": invocation.chain},
            )
        ],
    )
    return invocation


@transaction.atomic
def prompt_invocation_claim(*, invocation_id: int) -> bool:
    """Take a queued invocation to run it: True for the one caller that moved it from
    queued to running (and recorded `prompt.started`); False when it is gone or taken."""
    claimed = PromptInvocation.objects.filter(
        pk=invocation_id, status=PromptInvocation.Status.QUEUED
    ).update(status=PromptInvocation.Status.RUNNING)
    if claimed != 1:
        return False
    invocation = PromptInvocation.objects.only("intent", "chain", "agent").get(pk=invocation_id)
    prompt_events_record(
        invocation_id=invocation_id,
        items=[
            (
                "prompt.started",
                {"agent": invocation.agent, "intent": invocation.intent, "chain": invocation.chain},
            )
        ],
    )
    return True


@transaction.atomic
def prompt_invocation_finish(
    *, invocation: PromptInvocation, outcome: dict[str, Any]
) -> PromptInvocation:
    """Record how it ended, and its `prompt.finished` event (the last one); `outcome` is
    InvokeOutcome.redacted() (plain, redacted data), redacted again here so no caller
    can forget."""
    data = redact(outcome)
    git = data.get("git") or {}
    invocation.status = _STATUS.get(data.get("outcome", ""), PromptInvocation.Status.FAILED)
    invocation.response = data.get("response") or ""
    invocation.error = data.get("error") or ""
    invocation.intent = data.get("intent") or invocation.intent
    invocation.chain = data.get("chain") or invocation.chain
    invocation.attempts = data.get("attempts") or []
    invocation.provider = data.get("provider") or ""
    invocation.model = data.get("model") or ""
    invocation.tokens_in = int(data.get("tokens_in") or 0)
    invocation.tokens_out = int(data.get("tokens_out") or 0)
    invocation.cost_usd = Decimal(str(round(float(data.get("cost_usd") or 0), 6)))
    invocation.duration_s = float(data.get("duration_s") or 0)
    invocation.git_sha = git.get("git_sha") or ""
    invocation.git_branch = git.get("git_branch") or ""
    invocation.git_dirty = git.get("git_dirty")
    invocation.journal_id = data.get("journal_id") or invocation.journal_id
    invocation.finished_at = timezone.now()
    # Not save(): that would write back the event counter as it was read.
    fields = [f.name for f in PromptInvocation._meta.concrete_fields if f.name != "event_seq"]
    invocation.save(update_fields=[f for f in fields if f != "id"])
    prompt_events_record(
        invocation_id=invocation.pk,
        items=[
            (
                FINAL_KIND,
                {
                    "status": invocation.status,
                    "outcome": data.get("outcome") or "FAILED",
                    "response": invocation.response,
                    "error": invocation.error,
                    "provider": invocation.provider,
                    "model": invocation.model,
                    "tokens_in": invocation.tokens_in,
                    "tokens_out": invocation.tokens_out,
                    "cost_usd": float(invocation.cost_usd),
                    "duration_s": invocation.duration_s,
                },
            )
        ],
    )
    return invocation


# What of a streaming answer is kept back from the row: a secret still arriving is shown
# only once enough of it is there for redaction to recognise it.
PARTIAL_HOLDBACK = 64


def prompt_invocation_partial(text: str) -> str:
    """The part of an answer still streaming that may be shown: redacted, less its last
    PARTIAL_HOLDBACK characters."""
    return redact(text[:-PARTIAL_HOLDBACK] if len(text) > PARTIAL_HOLDBACK else "")


@transaction.atomic
def prompt_invocation_progress(
    *,
    invocation: PromptInvocation,
    partial: str,
    sent: str = "",
    events: Iterable[tuple[str, dict[str, Any]]] = (),
) -> str:
    """While it runs: the answer so far into the row, and as events what happened since
    the last call: `events` ((kind, payload), as the calls reported them) and the
    answer's growth over `sent` (what the previous call returned) as `prompt.answer`
    {"text", "offset"}: write `text` at `offset`, dropping what followed. Returns the
    answer text shown now (redacted, its tail held back)."""
    shown = prompt_invocation_partial(partial)
    items = list(events)
    if shown != sent:
        start = len(os.path.commonprefix([sent, shown]))
        items.append(("prompt.answer", {"text": shown[start:], "offset": start}))
        PromptInvocation.objects.filter(
            pk=invocation.pk, status=PromptInvocation.Status.RUNNING
        ).update(response=shown)
    prompt_events_record(invocation_id=invocation.pk, items=items)
    return shown


def prompt_invocation_fail(*, invocation: PromptInvocation, error: str) -> PromptInvocation:
    """Mark an invocation that stopped without an outcome (Ctrl-C, a crash) FAILED."""
    return prompt_invocation_finish(
        invocation=invocation,
        outcome={"outcome": "FAILED", "error": error, "journal_id": invocation.journal_id},
    )


def prompt_invocation_journal_set(*, invocation: PromptInvocation, journal_id: str) -> None:
    invocation.journal_id = journal_id
    PromptInvocation.objects.filter(pk=invocation.pk).update(journal_id=journal_id)


@transaction.atomic
def prompt_invocations_prune(*, journal_ids: list[str], login: str, dry_run: bool = False) -> int:
    """Delete the rows (and their events) of the invocations journaled under
    `journal_ids`, the folders `tekton memory prune` removed from one journal. Only rows
    of whoever prunes: those asked from the command line by `login`, and those of the
    user named `login`; when that user is staff, anyone's. Returns how many rows went
    (with `dry_run`, how many would)."""
    from django.contrib.auth import get_user_model
    from django.db.models import Q

    if not journal_ids:
        return 0
    user = get_user_model().objects.filter(username=login).first() if login else None
    rows = PromptInvocation.objects.filter(journal_id__in=journal_ids)
    if not getattr(user, "is_staff", False):
        mine = Q(owner__isnull=True, who=login)
        if user is not None:
            mine |= Q(owner=user)
        rows = rows.filter(mine)
    if dry_run:
        return rows.count()
    ids = list(rows.values_list("pk", flat=True))
    PromptInvocation.objects.filter(pk__in=ids).delete()
    return len(ids)


def prompt_invocation_diamond(
    *, invocation: PromptInvocation, run, outcome: str, response: str, error: str = ""
) -> PromptInvocation:
    invocation.run = run
    return prompt_invocation_finish(
        invocation=invocation,
        outcome={
            "outcome": outcome,
            "response": response,
            "error": error,
            "tokens_in": run.input_tokens if run else 0,
            "tokens_out": run.output_tokens if run else 0,
            "cost_usd": float(run.cost_usd) if run else 0,
            "journal_id": invocation.journal_id,
        },
    )


def prompt_invocation_request(
    *,
    by,
    agent: str,
    prompt: str,
    context: str = "",
    model: str | None = None,
    temperature: float | None = None,
    intent: str | None = None,
    dry_run: bool = False,
    memory: bool = True,
    repo: str | None = None,
    source: str = PromptInvocation.Source.API,
) -> PromptInvocation:
    """Queue an invocation for a dashboard user (the API, the Prompts page) and have it
    run once this transaction commits. Refuses (FieldError naming the field) what the CLI
    refuses as a usage error; `codex` runs a program on this server, so it needs
    TEKTON_PROMPT_CODEX_ENABLED and a staff user (PermissionDenied otherwise)."""
    from django.conf import settings
    from django.core.exceptions import PermissionDenied

    from prompts.execution import router_for, spec_build
    from swarm.frontdoor.invoke import UsageProblem, invoke_plan
    from tekton_site.errors import FieldError
    from tekton_site.paths import repo_check

    if agent == "codex":
        if not settings.TEKTON_PROMPT_CODEX_ENABLED:
            raise PermissionDenied("codex is off on this server (TEKTON_PROMPT_CODEX_ENABLED)")
        if not getattr(by, "is_staff", False):
            raise PermissionDenied("codex runs a program on the server: staff only")
    repo_path = ""
    if repo:
        repo_path = str(repo_check(repo, field_name="repo"))
    try:
        spec = spec_build(
            kind=agent,
            text=prompt,
            context=context,
            model=model,
            temperature=temperature,
            intent=intent,
            dry_run=dry_run,
        )
        plan = invoke_plan(spec, completer=router_for(agent))
    except UsageProblem as exc:
        raise FieldError(exc.field, str(exc)) from None
    owner = by if getattr(by, "is_authenticated", False) else None
    invocation = prompt_invocation_create(
        agent=agent,
        prompt=prompt,
        owner=owner,
        who=owner.get_username() if owner else "",
        source=source,
        context=context,
        requested_model=model,
        temperature=temperature,
        intent=plan.intent,
        chain=plan.chain,
        repo_path=repo_path,
        status=PromptInvocation.Status.QUEUED,
    )
    invocation.options = {"dry_run": dry_run, "memory": memory, "intent_given": bool(intent)}
    invocation.save(update_fields=["options"])
    transaction.on_commit(lambda: _dispatch(invocation.pk))
    return invocation


def _dispatch(invocation_id: int) -> None:
    import threading

    from django.conf import settings
    from django.db import connection

    from prompts.execution import invocation_execute

    if settings.TEKTON_EXECUTION == "celery":
        import tekton_site.celery  # noqa: F401  the configured app, not loaded at start-up
        from prompts.tasks import prompt_invocation_execute_task

        prompt_invocation_execute_task.apply_async(
            args=[invocation_id], queue=settings.TEKTON_QUEUE
        )
        return
    if not settings.TEKTON_INLINE_THREADS:
        invocation_execute(invocation_id=invocation_id)
        return

    def work() -> None:
        try:
            invocation_execute(invocation_id=invocation_id)
        finally:
            connection.close()

    threading.Thread(target=work, name=f"tekton-prompt-{invocation_id}", daemon=True).start()
