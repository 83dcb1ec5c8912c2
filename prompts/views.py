"""The Prompts page: the history of single-prompt invocations (filters), one invocation
(prompt, response, the chain tried, tokens, cost, git facts) and a form to ask (again).
Thin: parse, call a selector or a service, render."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from prompts.forms import PromptAskForm, PromptFilterForm
from prompts.models import PromptInvocation
from prompts.selectors import (
    prompt_events_after,
    prompt_invocations_filter,
    prompt_invocations_visible_to,
)
from tekton_site.errors import FieldError

HISTORY_ROWS = 100


def _can_codex(request: HttpRequest) -> bool:
    return bool(settings.TEKTON_PROMPT_CODEX_ENABLED and request.user.is_staff)


def _ask_form(request: HttpRequest, data=None, initial=None) -> PromptAskForm:
    return PromptAskForm(data, initial=initial, can_codex=_can_codex(request))


@require_GET
@login_required
def prompts_view(request: HttpRequest) -> HttpResponse:
    """`/prompts/`: the ask form and the history, newest first."""
    return _list(request, _ask_form(request))


def _list(request: HttpRequest, form: PromptAskForm, status: int = 200) -> HttpResponse:
    # Its own ids: the ask form on the same page has an `agent` field too.
    filters = PromptFilterForm(request.GET or None, auto_id="filter_%s")
    data = filters.cleaned_data if filters.is_valid() else {}
    rows = prompt_invocations_filter(
        prompt_invocations_visible_to(request.user),
        agent=data.get("agent") or None,
        status=data.get("status") or None,
        text=data.get("q") or None,
    )[:HISTORY_ROWS]
    rows = list(rows)
    context = {
        "form": form,
        "filters": filters,
        "rows": rows,
        "is_live": any(not r.is_finished for r in rows),
    }
    if request.htmx and request.htmx.target == "prompts-table":
        return render(request, "prompts/list.html#prompts-table", context)
    return render(request, "prompts/list.html", context, status=status)


@require_POST
@login_required
def prompt_ask_view(request: HttpRequest) -> HttpResponse:
    """Ask: queue the invocation, then show it (it fills in as it runs)."""
    from prompts.services import prompt_invocation_request

    form = _ask_form(request, request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            invocation = prompt_invocation_request(
                by=request.user,
                agent=data["agent"],
                prompt=data["prompt"],
                context=data["context"],
                model=data["model"] or None,
                intent=data["intent"] or None,
                memory=data["memory"],
                source=PromptInvocation.Source.WEB,
            )
        except FieldError as exc:
            form.add_service_error(exc.field, exc.message)
        except PermissionDenied as exc:
            form.add_service_error("agent", str(exc))
        else:
            return redirect("prompt-page", invocation_id=invocation.pk)
    return _list(request, form, status=400)


@require_GET
@login_required
def prompt_detail_view(request: HttpRequest, invocation_id: int) -> HttpResponse:
    invocation = prompt_invocations_visible_to(request.user).filter(pk=invocation_id).first()
    if invocation is None:
        raise Http404("no such prompt invocation")
    again = _ask_form(
        request,
        initial={
            "agent": invocation.agent if invocation.agent != "diamond" else "prompt",
            "prompt": invocation.prompt,
            "context": invocation.context,
            "model": invocation.requested_model,
            "intent": invocation.intent if (invocation.options or {}).get("intent_given") else "",
            "memory": True,
        },
    )
    # The answer's growth is in the response already; the rest is the progress list.
    events = [e for e in prompt_events_after(invocation.pk, 0) if e.kind != "prompt.answer"]
    # While it runs the row has no attempts yet; its events do.
    attempts = invocation.attempts or [e.payload for e in events if e.kind == "prompt.attempt"]
    context = {"inv": invocation, "form": again, "events": events, "attempts": attempts}
    if request.htmx and request.htmx.target == "prompt-main":
        return render(request, "prompts/detail.html#prompt-main", context)
    return render(request, "prompts/detail.html", context)
