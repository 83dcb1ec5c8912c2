"""Dashboard pages of runs: the list with the launcher, one run, the repository page, and
the actions a person takes on a run. Thin: parse, call a selector or a service, render.

One view serves the page and its htmx partials ("runs/detail.html#stage-panel" when htmx
asks for that target). The number of queries per page does not depend on the number of
runs, stages or events: stages come from one prefetch, message counts from one aggregate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from config_profiles.selectors import profile_names
from runs import render as show
from runs.artifacts_store import artifact_bytes
from runs.compare import stage_compare, stage_compare_options
from runs.delivery import repo_run_branches, run_delivery, run_test_results
from runs.forms import RunBudgetForm, RunFilterForm, RunForkForm, RunLaunchForm, StageRetryForm
from runs.health import services_check
from runs.models import Artifact, Run, StageRun
from runs.repo_health import (
    repo_health,
    repos_suggested,
    repos_targeted,
    reviews_outstanding,
    runs_recorded,
)
from runs.selectors import (
    run_artifacts,
    run_evidence_summary,
    run_lineage,
    run_live,
    run_message_counts,
    run_stages,
    run_warnings,
    runs_filtered,
    runs_page,
    runs_visible_to,
    stage_context,
    stage_messages,
)
from runs.services import (
    fork_starts,
    run_abort,
    run_budget_set,
    run_cancel,
    run_create,
    run_fork,
    run_plan,
    run_resume,
    stage_approve,
    stage_retry,
)
from swarm.stages import PATCH_FILE, STAGE_NAMES
from tekton_site.errors import FieldError, ServiceUnavailable, StateError

PAGE_SIZE = 25
# Fields the list and the strip need; the frozen config is read for the quorum only.
_STAGE_FIELDS = (
    "id",
    "run_id",
    "stage",
    "position",
    "status",
    "attempt",
    "confidence",
    "approval",
    "reason",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "cost_usd",
    "started_at",
    "finished_at",
)


def _profiles() -> list[str]:
    return profile_names()


def _cursor(run: Run) -> str:
    return f"{run.created_at.isoformat()},{run.pk}"


def _run_rows(runs: list[Run]) -> list[dict[str, Any]]:
    return [
        {
            "run": run,
            "strip": show.stage_views(run, list(run.stages.all())),
            "duration": show.fmt_duration(run.duration_s),
            "tokens": show.fmt_tokens(run.total_tokens),
            "cost": show.fmt_cost(run.cost_usd),
            "ago": show.fmt_ago(run.created_at),
            "repo_name": Path(run.repo_path).name or run.repo_path,
        }
        for run in runs
    ]


def _list_context(request: HttpRequest, launch_form: RunLaunchForm | None = None, **extra):
    profiles = _profiles()
    filters = RunFilterForm(request.GET or None, profiles=profiles)
    visible = runs_visible_to(request.user)
    runs = visible
    before = None
    if filters.is_bound and filters.is_valid():
        data = filters.cleaned_data
        runs = runs_filtered(runs, data)
        before = data.get("before")
    page, has_more = runs_page(runs, before, size=PAGE_SIZE, stage_fields=_STAGE_FIELDS)
    query = {k: v for k, v in request.GET.items() if k != "before" and v}
    known_repos = repos_suggested(visible)
    if launch_form is None:
        initial = {"repo_path": known_repos[0]["path"] if known_repos else ""}
        launch_form = RunLaunchForm(profiles=profiles, initial=initial)
    return {
        "filters": filters,
        "rows": _run_rows(page),
        "next_url": "?" + urlencode({**query, "before": _cursor(page[-1])}) if has_more else "",
        "first_url": "?" + urlencode(query) if before else "",
        "is_live": any(not run.is_finished for run in page),
        "launch_form": launch_form,
        "known_repos": known_repos,
        "stage_names": STAGE_NAMES,
        **extra,
    }


@require_GET
@login_required
def runs_list_view(request: HttpRequest) -> HttpResponse:
    """`/`: the runs the person may see (filters, search, keyset pages) and the launcher.
    htmx polling of the table (while a run on the page is live) gets the table only."""
    context = _list_context(request)
    if request.htmx and request.htmx.target == "runs-table":
        return render(request, "runs/list.html#runs-table", context)
    return render(request, "runs/list.html", context)


@require_POST
@login_required
def run_launch_view(request: HttpRequest) -> HttpResponse:
    """The launcher. action=explain shows the plan (run_plan(...).explain(), nothing is
    created); action=launch creates the run and goes to its page. Service errors are shown
    beside the field they name."""
    form = RunLaunchForm(request.POST, profiles=_profiles())
    explain = None
    if form.is_valid():
        kwargs = form.service_kwargs()
        try:
            if request.POST.get("action") == "explain":
                plan = run_plan(**kwargs)
                explain = {**plan.explain(), "goal": plan.goal, "repo": plan.repo_path}
                # Each stage row shows its own forecast.
                expected = {f["stage"]: f for f in explain["forecast"]["stages"]}
                for stage in explain["stages"]:
                    stage["expected"] = expected.get(stage["stage"])
            else:
                services_check()
                run = run_create(**kwargs, by=request.user)
                url = reverse("run-page", args=[run.pk])
                if request.htmx:
                    return HttpResponseClientRedirect(url)
                return redirect(url)
        except FieldError as exc:
            form.add_service_error(exc.field, exc.message)
        except ServiceUnavailable as exc:
            form.add_error(None, exc.message)
    context = {"launch_form": form, "explain": explain, "launcher_open": True}
    if request.htmx:
        return render(request, "runs/list.html#launcher", {**context, **_launcher_extra(request)})
    return render(request, "runs/list.html", _list_context(request, **context))


def _launcher_extra(request: HttpRequest) -> dict[str, Any]:
    return {"known_repos": repos_suggested(runs_visible_to(request.user))}


# --- one run ------------------------------------------------------------------------------


def _visible_run(request: HttpRequest, run_id: int) -> Run:
    return get_object_or_404(runs_visible_to(request.user), pk=run_id)


def _default_stage(stages: list[StageRun]) -> str:
    for wanted in (StageRun.Status.BLOCKED, StageRun.Status.RUNNING, StageRun.Status.FAILED):
        for stage in stages:
            if stage.status == wanted:
                return stage.stage
    done = [s for s in stages if s.status != StageRun.Status.QUEUED]
    if done:
        return done[-1].stage
    return stages[0].stage if stages else STAGE_NAMES[0]


def _by_budget(stage: StageRun) -> bool:
    """Whether a blocked stage waits for its run's budget to be raised."""
    return stage.reason.startswith(("budget reached", "no price for"))


def run_live_context(run: Run, stages: list[StageRun], counts: dict[str, int]) -> dict[str, Any]:
    """What the header and the timeline need; shared by the page and the UI consumer."""
    blocked = [s for s in stages if s.status == StageRun.Status.BLOCKED]
    return {
        "run": run,
        "timeline": [v for v in show.stage_views(run, stages, counts) if v.in_run],
        "duration": show.fmt_duration(run.duration_s),
        "tokens": show.fmt_tokens(run.total_tokens),
        "input_tokens": show.fmt_tokens(run.input_tokens),
        "output_tokens": show.fmt_tokens(run.output_tokens),
        **show.input_split(run),
        "cost": show.fmt_cost(run.cost_usd),
        "budget": show.fmt_budget(run.config),
        "can_cancel": run.status in (Run.Status.QUEUED, Run.Status.RUNNING, Run.Status.BLOCKED),
        "can_resume": run.status in (Run.Status.FAILED, Run.Status.CANCELLED, Run.Status.BLOCKED),
        "blocked_stages": [s.stage for s in blocked],
        "blocked_by_budget": any(_by_budget(s) for s in blocked),
        "seq": run.event_seq,
    }


def run_live_load(run_id: int) -> tuple[Run, list[StageRun], dict[str, int]]:
    """The run (fresh), its stages and message counts: three queries."""
    return run_live(run_id)


TRANSCRIPT_LIMIT = 150  # agent messages of one stage shown on the run page


def _stage_panel_context(run: Run, stage: StageRun | None) -> dict[str, Any]:
    if stage is None:
        return {"panel": None}
    # The newest messages of the stage, in order; a stage retried many times could otherwise
    # put thousands of messages on one page. The API serves the whole transcript.
    events = stage_messages(run.pk, stage.stage, newest=TRANSCRIPT_LIMIT + 1)
    transcript_cut = len(events) > TRANSCRIPT_LIMIT
    if transcript_cut:
        events = events[1:]
    artifacts = {a.kind: a for a in run_artifacts(run.pk, stage.stage)}
    json_artifact = artifacts.get(Artifact.Kind.JSON)
    content = json_artifact.content if json_artifact else None
    draft = stage.draft if isinstance(stage.draft, dict) else {}
    is_draft = content is None and bool(draft.get("artifact"))
    if is_draft:
        content = draft.get("artifact")
    patch_text, patch_error = "", ""
    patch = artifacts.get(Artifact.Kind.PATCH)
    if patch is not None:
        patch.run = run
        try:
            patch_text = artifact_bytes(patch).decode("utf-8", errors="replace")
        except (OSError, ValueError) as exc:
            patch_error = f"the patch file cannot be read: {exc.__class__.__name__}"
    elif is_draft and draft.get("patch"):
        patch_text = str(draft["patch"])
    elif isinstance(content, dict) and isinstance(content.get("diff"), str):
        patch_text = content["diff"]
    mediator = stage.mediator if isinstance(stage.mediator, dict) else {}
    return {
        "panel": stage,
        "rounds": show.transcript_rounds(events),
        "transcript_cut": transcript_cut,
        "transcript_limit": TRANSCRIPT_LIMIT,
        "votes": show.vote_rows(stage.votes),
        "mediator": {
            "status": mediator.get("status", ""),
            "rationale": mediator.get("rationale", ""),
            "dissent": show.as_strings(mediator.get("dissent")),
            "risks": show.as_strings(mediator.get("risks")),
            "checklist": show.as_strings(mediator.get("checklist")),
        },
        "checks": stage.checks if isinstance(stage.checks, list) else [],
        "artifact": json_artifact,
        "artifact_is_draft": is_draft,
        "artifact_offline": isinstance(content, dict) and bool(content.get("offline")),
        "sections": show.artifact_sections(stage.stage, content) if content is not None else [],
        "raw_json": show.artifact_json(content) if content is not None else "",
        "patch_artifact": patch,
        "patch_name": PATCH_FILE,
        "diff": show.diff_files(patch_text) if patch_text else [],
        "patch_error": patch_error,
        "retry_form": StageRetryForm(),
        "context": stage_context(run.pk, stage.stage),
        "run_warnings": run_warnings(run.pk),
        "budget_blocked": stage.status == StageRun.Status.BLOCKED and _by_budget(stage),
        "budget_tokens": int((run.config or {}).get("budget_tokens") or 0),
        "budget_cost": float((run.config or {}).get("budget_cost_usd") or 0),
    }


FAILURES_SHOWN = 50  # newly failing tests listed with their message on the run page


def _delivery_context(run: Run) -> dict[str, Any]:
    """The change card: branch, base, head, how to take it, and the test evidence."""
    if not run.base_commit:
        return {"delivery": None, "evidence": None}
    evidence = run_evidence_summary(run)
    failing = []
    if evidence and evidence["newly_failing"]:
        failing = run_test_results(run, change="newly_failing")["results"][:FAILURES_SHOWN]
    return {
        "delivery": run_delivery(run),
        "evidence": evidence,
        "evidence_rows": [("Base", evidence["base"]), ("Branch", evidence["branch"])]
        if evidence
        else [],
        "newly_failing": failing,
        "newly_failing_more": len(evidence["newly_failing"]) - len(failing) if evidence else 0,
    }


def _compare_context(request: HttpRequest, run: Run, stage: StageRun | None) -> dict[str, Any]:
    """The stage's artifact against another attempt, the parent or a fork (?compare=)."""
    if stage is None:
        return {"compare_options": [], "comparison": None}
    options = stage_compare_options(request.user, run, stage.stage)
    key = request.GET.get("compare", "")
    comparison = stage_compare(request.user, run, stage.stage, key) if key else None
    return {
        "compare_options": options,
        "compare_key": key,
        "comparison": comparison,
        "compare_files": show.diff_files(comparison.diff) if comparison and comparison.diff else [],
        # Each file's interdiff rendered alone, so it keeps its change ("only_old", ...).
        "compare_patch": [
            {"change": f.change, "file": shown}
            for f in (comparison.patch_files if comparison else ())
            for shown in show.diff_files(f.diff, nested=True)
        ],
    }


def _lineage_context(request: HttpRequest, run: Run, stages: list[StageRun]) -> dict[str, Any]:
    """The parent and forks the person may see, and the fork form."""
    starts = fork_starts(stages)
    form = RunForkForm(profiles=_profiles(), initial={"from_stage": starts[-1] if starts else ""})
    form.fields["from_stage"].choices = [(s, s) for s in starts]
    parent, forks = run_lineage(request.user, run)
    return {"parent": parent, "forks": forks, "fork_form": form}


@require_GET
@login_required
def run_detail_view(request: HttpRequest, run_id: int) -> HttpResponse:
    """`/runs/<id>/`: header, live timeline, and the selected stage (?stage=) with its
    transcript, artifact, diff and, when blocked, the approve / retry / abort forms; the
    change card (branch, base, head, how to take it, test evidence). htmx partials:
    #stage-panel, #stage-list, #run-header, #delivery (polled until the run ends)."""
    run = _visible_run(request, run_id)
    target = request.htmx.target if request.htmx else None
    if target == "delivery":
        return render(request, "runs/detail.html#delivery", {"run": run, **_delivery_context(run)})
    stages = run_stages(run.pk)
    wanted = request.GET.get("stage") or _default_stage(stages)
    selected = next((s for s in stages if s.stage == wanted), None)
    context = {
        **run_live_context(run, stages, run_message_counts(run.pk)),
        **_stage_panel_context(run, selected),
        **_compare_context(request, run, selected),
        "selected": wanted,
        "unknown_stage": None if selected else wanted,
    }
    if target in ("stage-panel", "stage-list", "run-header"):
        return render(request, f"runs/detail.html#{target}", context)
    return render(
        request,
        "runs/detail.html",
        {**context, **_delivery_context(run), **_lineage_context(request, run, stages)},
    )


def _back(run: Run, stage: str = "") -> HttpResponse:
    url = reverse("run-page", args=[run.pk])
    return redirect(f"{url}?stage={stage}" if stage else url)


def _act(request: HttpRequest, run: Run, done: str, fn, **kwargs) -> None:
    try:
        fn(run=run, by=request.user, **kwargs)
    except (StateError, FieldError) as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, done)


@require_POST
@login_required
def run_cancel_view(request: HttpRequest, run_id: int) -> HttpResponse:
    run = _visible_run(request, run_id)
    _act(request, run, f"Run {run.pk} cancelled.", run_cancel)
    return _back(run)


@require_POST
@login_required
def run_resume_view(request: HttpRequest, run_id: int) -> HttpResponse:
    run = _visible_run(request, run_id)
    try:
        services_check()
    except ServiceUnavailable as exc:
        messages.error(request, exc.message)
        return _back(run)
    _act(request, run, f"Run {run.pk} resumed.", run_resume)
    return _back(run)


@require_POST
@login_required
def run_fork_view(request: HttpRequest, run_id: int) -> HttpResponse:
    """Fork the run from a stage (the form on its page) and go to the fork's page."""
    run = _visible_run(request, run_id)
    form = RunForkForm(request.POST, profiles=_profiles())
    if not form.is_valid():
        messages.error(request, "; ".join(e for errs in form.errors.values() for e in errs))
        return _back(run)
    try:
        services_check()
        fork = run_fork(parent=run, by=request.user, **form.service_kwargs())
    except (FieldError, StateError, ServiceUnavailable) as exc:
        messages.error(request, str(exc))
        return _back(run)
    messages.success(
        request, f"Run {fork.pk} forked from run {run.pk} at {fork.forked_from_stage}."
    )
    return redirect(reverse("run-page", args=[fork.pk]))


@require_POST
@login_required
def run_budget_view(request: HttpRequest, run_id: int) -> HttpResponse:
    """Raise (or change) the run's budgets and, with `retry`, run that blocked stage again."""
    run = _visible_run(request, run_id)
    form = RunBudgetForm(request.POST)
    if not form.is_valid():
        messages.error(request, "; ".join(e for errs in form.errors.values() for e in errs))
        return _back(run, request.POST.get("retry", ""))
    data = form.cleaned_data
    stage = data["retry"]
    try:
        run_budget_set(run=run, tokens=data["tokens"], cost_usd=data["cost_usd"], by=request.user)
        if stage:
            stage_retry(run=run, stage=stage, note="", by=request.user)
    except (StateError, FieldError) as exc:
        messages.error(request, str(exc))
    else:
        run.refresh_from_db()
        done = f"Budget now {show.fmt_budget(run.config)}."
        messages.success(request, f"{done} Stage {stage} runs again." if stage else done)
    return _back(run, stage)


@require_POST
@login_required
def stage_approve_view(request: HttpRequest, run_id: int, stage: str) -> HttpResponse:
    run = _visible_run(request, run_id)
    _act(request, run, f"Stage {stage} approved; the run goes on.", stage_approve, stage=stage)
    return _back(run, stage)


@require_POST
@login_required
def stage_retry_view(request: HttpRequest, run_id: int, stage: str) -> HttpResponse:
    run = _visible_run(request, run_id)
    form = StageRetryForm(request.POST)
    if not form.is_valid():
        messages.error(request, "; ".join(e for errs in form.errors.values() for e in errs))
        return _back(run, stage)
    note = form.cleaned_data["note"]
    _act(
        request, run, f"Stage {stage} retried with your note.", stage_retry, stage=stage, note=note
    )
    return _back(run, stage)


@require_POST
@login_required
def stage_abort_view(request: HttpRequest, run_id: int, stage: str) -> HttpResponse:
    run = _visible_run(request, run_id)
    _act(request, run, f"Run {run.pk} aborted at {stage}.", run_abort)
    return _back(run, stage)


# --- repositories -------------------------------------------------------------------------


def _repo_search_context(request: HttpRequest, paths: list[str]) -> dict[str, Any] | None:
    """?q=&repo=: the repository's index searched for the person (lessons of their runs
    only); a repository their runs did not target is not searched."""
    query, repo = request.GET.get("q", "").strip(), request.GET.get("repo", "")
    if not repo or repo not in paths:
        return None
    from runs.retrieval_search import repo_search

    if not query:
        return {"repo": repo, "query": "", "error": "Type what to look for.", "found": None}
    try:
        found = repo_search(user=request.user, repo_path=repo, query=query[:2000])
    except FieldError as exc:
        return {"repo": repo, "query": query, "error": str(exc), "found": None}
    return {"repo": repo, "query": query, "error": "", "found": found}


@require_GET
@login_required
def repo_health_view(request: HttpRequest) -> HttpResponse:
    """`/repo/`: per repository that the person's runs targeted (under TEKTON_REPO_ROOTS):
    git status, branch, ahead/behind, recent commits, working-tree diff summary (when the
    checkout is on this host), the runs' recorded branches, base commits and test
    evidence (always), and the outstanding reviews: every open run branch in git with
    its run, status, test result and review verdict, and the stages waiting for a
    person, each linking to its run. ?q=&repo= searches that repository's index."""
    visible = runs_visible_to(request.user)
    reviews = reviews_outstanding(visible)
    paths = repos_targeted(visible)
    recorded = runs_recorded(visible, paths)
    repos = []
    for path in paths:
        branches, branches_error = repo_run_branches(request.user, path)
        repos.append(
            {
                "health": repo_health(path),
                "branches": branches,
                "branches_error": branches_error,
                "reviews": [r for r in reviews if r.repo_path == path],
                # What the runs recorded (the workers may be on other hosts than this one).
                "recorded": recorded.get(path, []),
            }
        )
    search = _repo_search_context(request, paths)
    for item in repos:
        if search and item["health"].path == search["repo"]:
            item["search"] = search
    listed = {r["health"].path for r in repos}
    return render(
        request,
        "runs/repo.html",
        {
            "repos": repos,
            "other_reviews": [r for r in reviews if r.repo_path not in listed],
            "namespace": settings.TEKTON_NAMESPACE,
        },
    )
