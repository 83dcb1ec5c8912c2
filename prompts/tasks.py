"""The invocation a POST to /api/prompts/ (or the Prompts page) asked for, run by a worker."""

from __future__ import annotations

from celery import shared_task


@shared_task(acks_late=True)
def prompt_invocation_execute_task(invocation_id: int) -> None:
    from prompts.execution import invocation_execute

    invocation_execute(invocation_id=invocation_id)
