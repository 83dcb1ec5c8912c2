"""`/system/checks/`: every system check with its status, detail and hint; re-run with the
button (htmx swaps the table, without JavaScript the page reloads)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from syschecks.services import checks_run, checks_summary


def _repo_paths(user) -> list[str]:
    # The repositories this person's runs targeted are checked too (the same list as the
    # API and `tekton check`). runs' public read interface, imported late so the checks
    # app does not load runs at import time.
    from runs.selectors import run_repositories_recent

    return run_repositories_recent(user)


@require_GET
@login_required
def checks_view(request: HttpRequest) -> HttpResponse:
    results = checks_run(repo_paths=_repo_paths(request.user))
    context = {
        "results": results,
        "summary": checks_summary(results),
        "checked_at": timezone.now(),
    }
    if request.htmx and request.htmx.target == "checks":
        return render(request, "syschecks/checks.html#checks", context)
    return render(request, "syschecks/checks.html", context)
