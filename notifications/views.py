"""The Webhooks page: a person's hooks (paused ones say why), the form for a new one (its
secret shown once, right after), and the newest deliveries with every attempt. Thin:
parse, call a selector or a service, render."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from config_profiles.selectors import profile_names
from notifications import crypto
from notifications.forms import HookForm
from notifications.selectors import deliveries_recent, hook_visible, hooks_visible_to
from notifications.services import (
    email_enabled,
    hook_create,
    hook_delete,
    hook_pause,
    hook_resume,
)
from tekton_site.errors import FieldError, StateError


def _form(request: HttpRequest, data=None) -> HookForm:
    return HookForm(data, profiles=profile_names(), is_staff=request.user.is_staff)


def _context(request: HttpRequest, form: HookForm | None = None, **extra) -> dict:
    hooks = hooks_visible_to(request.user)
    rows = list(hooks[:200])
    return {
        "hooks": rows,
        "paused": [h for h in rows if h.is_paused],
        "deliveries": deliveries_recent(hooks, limit=25),
        "form": form or _form(request),
        "key_configured": crypto.key_configured(),
        "email_enabled": email_enabled(),
        **extra,
    }


def _page(request: HttpRequest, context: dict) -> HttpResponse:
    if request.htmx and request.htmx.target == "hooks-main":
        return render(request, "notifications/hooks.html#hooks-main", context)
    return render(request, "notifications/hooks.html", context)


@require_GET
@login_required
def hooks_view(request: HttpRequest) -> HttpResponse:
    """`/hooks/`: hooks, the new-hook form and recent deliveries (#hooks-main for htmx)."""
    return _page(request, _context(request))


@require_POST
@login_required
def hook_create_view(request: HttpRequest) -> HttpResponse:
    """Create a hook; the page comes back with its secret, shown this once."""
    form = _form(request, request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            hook, secret = hook_create(
                owner=request.user,
                name=data["name"],
                events=data["events"],
                url=data["url"],
                email=data["email"],
                profile_name=data["profile_name"],
            )
        except FieldError as exc:
            form.add_service_error(exc.field, exc.message)
        else:
            return _page(request, _context(request, created=hook, created_secret=secret))
    return _page(request, _context(request, form=form))


def _hook(request: HttpRequest, hook_id: int):
    hook = hook_visible(request.user, hook_id)
    if hook is None:
        raise Http404("no such hook")
    return hook


@require_POST
@login_required
def hook_pause_view(request: HttpRequest, hook_id: int) -> HttpResponse:
    hook_pause(hook=_hook(request, hook_id), reason="paused by its owner")
    messages.success(request, "Hook paused.")
    return redirect("hooks-page")


@require_POST
@login_required
def hook_resume_view(request: HttpRequest, hook_id: int) -> HttpResponse:
    try:
        hook_resume(hook=_hook(request, hook_id))
    except StateError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Hook resumed.")
    return redirect("hooks-page")


@require_POST
@login_required
def hook_delete_view(request: HttpRequest, hook_id: int) -> HttpResponse:
    hook_delete(hook=_hook(request, hook_id))
    messages.success(request, "Hook deleted.")
    return redirect("hooks-page")
