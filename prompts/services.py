"""Writes of prompt invocations. Every text is redacted here, before it reaches a row."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from prompts.models import PromptInvocation
from swarm.redact import Labeller, redact

_STATUS = {"OK": "ok", "FAILED": "failed", "DRY-RUN": "dry-run"}


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
    return PromptInvocation.objects.create(
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


@transaction.atomic
def prompt_invocation_finish(
    *, invocation: PromptInvocation, outcome: dict[str, Any]
) -> PromptInvocation:
    """Record how it ended; `outcome` is InvokeOutcome.redacted() (plain, redacted data),
    redacted again here so no caller can forget."""
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
    invocation.save()
    return invocation


def prompt_invocation_fail(*, invocation: PromptInvocation, error: str) -> PromptInvocation:
    """Mark an invocation that stopped without an outcome (Ctrl-C, a crash) FAILED."""
    return prompt_invocation_finish(
        invocation=invocation,
        outcome={"outcome": "FAILED", "error": error, "journal_id": invocation.journal_id},
    )


def prompt_invocation_journal_set(*, invocation: PromptInvocation, journal_id: str) -> None:
    invocation.journal_id = journal_id
    PromptInvocation.objects.filter(pk=invocation.pk).update(journal_id=journal_id)


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
