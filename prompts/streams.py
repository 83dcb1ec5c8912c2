"""An invocation's progress as a stream: the runs' event hub and SSE machinery, fed from
PromptEvent rows instead of RunEvent ones (see prompts.events for the kinds)."""

from __future__ import annotations

from typing import Any

from prompts.events import FINAL_KIND, prompt_event_dict, prompt_group
from prompts.models import PromptInvocation
from prompts.selectors import prompt_events_after, prompt_invocation_status, prompt_last_event
from runs.event_hub import EventSource


def _events_after(invocation_id: int, after: int, limit: int) -> list[dict[str, Any]]:
    return [prompt_event_dict(e) for e in prompt_events_after(invocation_id, after, limit)]


def _last_seq(invocation_id: int) -> int:
    return (prompt_last_event(invocation_id) or {}).get("seq", 0)


def _state(invocation_id: int) -> tuple[str, int, str] | None:
    status = prompt_invocation_status(invocation_id)
    if status is None:
        return None
    last = prompt_last_event(invocation_id) or {}
    return status, last.get("seq", 0), last.get("kind", "")


PROMPT_EVENTS = EventSource(
    name="prompt",
    group=prompt_group,
    events_after=_events_after,
    last_seq=_last_seq,
    state=_state,
    final_kinds=(FINAL_KIND,),
    finished=tuple(PromptInvocation.FINISHED),
)
