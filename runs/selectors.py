"""Every read of run history an adapter needs (views, API, CLI, streams, consumers,
checks): adapters call these and make no ORM queries of their own. Each function says how
many queries it makes where that matters to a page.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Count, Max, Prefetch, Q, QuerySet

from runs.models import Artifact, Run, RunEvent, StageAttempt, StageRun, TestRunRecord


def runs_visible_to(user) -> QuerySet[Run]:
    """Runs a user may see: all for None (the CLI) and staff, their own otherwise, none
    for an anonymous user."""
    runs = Run.objects.select_related("owner")
    if user is None or getattr(user, "is_staff", False) or getattr(user, "is_superuser", False):
        return runs.all()
    if not getattr(user, "is_authenticated", False):
        return runs.none()
    return runs.filter(owner=user)


def run_lineage(user, run: Run) -> tuple[Run | None, list[Run]]:
    """The parent `run` was forked from and the forks of `run`, those `user` may see."""
    visible = runs_visible_to(user)
    parent = visible.filter(pk=run.parent_id).first() if run.parent_id else None
    return parent, list(visible.filter(parent_id=run.pk).order_by("id"))


def run_visible(user, run_id: int, *, detail: bool = False) -> Run | None:
    """The run if `user` may see it (with stages and artifacts prefetched for `detail`),
    else None: another user's run does not exist for them."""
    runs = runs_visible_to(user)
    if detail:
        runs = runs.prefetch_related("stages", "artifacts")
    return runs.filter(pk=run_id).first()


def run_is_visible(user, run_id: int) -> bool:
    return runs_visible_to(user).filter(pk=run_id).exists()


def run_get(run_id: int) -> Run:
    """One run; raises Run.DoesNotExist."""
    return Run.objects.select_related("owner").get(pk=run_id)


def run_events_after(run_id: int, after_seq: int, limit: int | None = None) -> list[RunEvent]:
    """A run's events with seq > after_seq, in seq order (at most `limit`)."""
    events = RunEvent.objects.filter(run_id=run_id, seq__gt=after_seq).order_by("seq")
    if limit is not None:
        events = events[:limit]
    return list(events)


def run_detail(run_id: int) -> Run:
    """A run with its stages and artifacts prefetched; raises Run.DoesNotExist."""
    return (
        Run.objects.select_related("owner").prefetch_related("stages", "artifacts").get(pk=run_id)
    )


def run_profiles_recent(*, runs: int = 200) -> list[str]:
    """The profiles the newest runs used, each once."""
    names = Run.objects.order_by("-created_at", "-id").values_list("profile_name", flat=True)
    return list(dict.fromkeys(names[:runs]))


def run_repositories_recent(user, *, runs: int = 50, limit: int = 10) -> list[str]:
    """The distinct repositories of the user's most recent runs, newest first."""
    paths = runs_visible_to(user).order_by("-created_at", "-id").values_list("repo_path", flat=True)
    return list(dict.fromkeys(p for p in paths[:runs] if p))[:limit]


def runs_filtered(runs: QuerySet[Run], filters: dict[str, Any]) -> QuerySet[Run]:
    """`runs` narrowed by the list filters the API and the runs page share: status,
    profile, repo (text in the path), q (text in the goal), created_after, created_before.
    Missing or empty filters are ignored."""
    if filters.get("status"):
        runs = runs.filter(status=filters["status"])
    if filters.get("profile"):
        runs = runs.filter(profile_name=filters["profile"])
    if filters.get("repo"):
        runs = runs.filter(repo_path__icontains=filters["repo"])
    if filters.get("q"):
        runs = runs.filter(goal__icontains=filters["q"])
    if filters.get("created_after"):
        runs = runs.filter(created_at__gte=filters["created_after"])
    if filters.get("created_before"):
        runs = runs.filter(created_at__lt=filters["created_before"])
    return runs


def runs_page(
    runs: QuerySet[Run], before: tuple[Any, int] | None, *, size: int, stage_fields: tuple[str, ...]
) -> tuple[list[Run], bool]:
    """One keyset page of `runs`, newest first, strictly older than the `before` cursor
    (created_at, id), with the stages (only `stage_fields`) prefetched in one query.
    Returns (runs, has_more)."""
    if before is not None:
        when, pk = before
        runs = runs.filter(Q(created_at__lt=when) | Q(created_at=when, pk__lt=pk))
    runs = runs.order_by("-created_at", "-id").prefetch_related(
        Prefetch("stages", queryset=StageRun.objects.only(*stage_fields).order_by("position"))
    )
    page = list(runs[: size + 1])
    return page[:size], len(page) > size


def run_stages(run_id: int, stage: str | None = None) -> list[StageRun]:
    """A run's stages in run order (only `stage` when given)."""
    stages = StageRun.objects.filter(run_id=run_id).order_by("position")
    if stage is not None:
        stages = stages.filter(stage=stage)
    return list(stages)


def stage_status(run_id: int, stage: str) -> str | None:
    """The status of one stage of a run; None when the run does not include it."""
    return (
        StageRun.objects.filter(run_id=run_id, stage=stage).values_list("status", flat=True).first()
    )


def stage_attempts(run_id: int, stage: str) -> list[StageAttempt]:
    """The attempts of one stage that a retry or resume set aside, oldest first."""
    return list(StageAttempt.objects.filter(run_id=run_id, stage=stage).order_by("number"))


def run_message_counts(run_id: int) -> dict[str, int]:
    """Agent messages (stage.progress events) per stage, in one aggregate query."""
    rows = (
        RunEvent.objects.filter(run_id=run_id, kind="stage.progress")
        .values("stage")
        .annotate(n=Count("id"))
        .order_by()
    )
    return {row["stage"]: row["n"] for row in rows}


def run_live(run_id: int) -> tuple[Run, list[StageRun], dict[str, int]]:
    """The run (fresh), its stages and message counts: three queries. Raises
    Run.DoesNotExist."""
    run = Run.objects.select_related("owner").get(pk=run_id)
    return run, run_stages(run_id), run_message_counts(run_id)


def stage_messages(
    run_id: int, stage: str | None = None, *, newest: int | None = None
) -> list[RunEvent]:
    """The agent messages (stage.progress events) of a run, or of one stage, in seq order;
    with `newest`, only the last `newest` of them (one query either way)."""
    events = RunEvent.objects.filter(run_id=run_id, kind="stage.progress")
    if stage is not None:
        events = events.filter(stage=stage)
    if newest is None:
        return list(events.order_by("seq"))
    return list(events.order_by("-seq")[:newest])[::-1]


def stage_context(run_id: int, stage: str) -> dict[str, Any] | None:
    """What retrieval gave the stage's latest attempt (the newest `stage.context` event's
    payload: chunks with path, lines and score, lessons with their source, warnings), or
    None when nothing was recorded."""
    payload = (
        RunEvent.objects.filter(run_id=run_id, stage=stage, kind="stage.context")
        .order_by("-seq")
        .values_list("payload", flat=True)
        .first()
    )
    return payload if isinstance(payload, dict) else None


def run_warnings(run_id: int) -> list[str]:
    """The run's warnings (`run.warning` events: the index being built, out of reach), in order."""
    rows = RunEvent.objects.filter(run_id=run_id, kind="run.warning").order_by("seq")
    return [str((p or {}).get("message", "")) for p in rows.values_list("payload", flat=True)]


def run_artifacts(run_id: int, stage: str | None = None) -> list[Artifact]:
    """A run's artifacts in the order they were written (only `stage`'s when given)."""
    artifacts = Artifact.objects.filter(run_id=run_id).order_by("id")
    if stage is not None:
        artifacts = artifacts.filter(stage=stage)
    return list(artifacts)


def run_artifact_named(run_id: int, name: str) -> Artifact | None:
    return Artifact.objects.filter(run_id=run_id, name=name).order_by("id").first()


def run_last_event(run_id: int) -> dict[str, Any] | None:
    """{"seq", "kind"} of a run's newest event, or None before the first."""
    return RunEvent.objects.filter(run_id=run_id).order_by("-seq").values("seq", "kind").first()


def run_last_seq(run_id: int) -> int:
    return RunEvent.objects.filter(run_id=run_id).aggregate(m=Max("seq"))["m"] or 0


# --- the command line (manage.py tekton) ---------------------------------------------------


def run_status(run_id: int) -> str | None:
    """A run's status; None when the run is gone."""
    return Run.objects.filter(pk=run_id).values_list("status", flat=True).first()


def runs_in_flight_count(user, statuses: tuple[str, ...]) -> int:
    return Run.objects.filter(owner=user, status__in=statuses).count()


def runs_created_since(user, since: datetime, limit: int) -> list[datetime]:
    """When `user` created runs since `since`, newest first, at most `limit`."""
    return list(
        Run.objects.filter(owner=user, created_at__gte=since)
        .order_by("-created_at")
        .values_list("created_at", flat=True)[:limit]
    )


def run_has_stage_running(run_id: int) -> bool:
    """Whether one of the run's stages is running now (in any process)."""
    return StageRun.objects.filter(run_id=run_id, status=StageRun.Status.RUNNING).exists()


def run_blocked_at(run: Run) -> tuple[str | None, str]:
    """(stage, reason) of a blocked run: its blocked stage and that stage's reason, or
    (None, the run's own reason) when no stage is marked blocked."""
    blocked = (
        StageRun.objects.filter(run=run, status=StageRun.Status.BLOCKED)
        .values_list("stage", "reason")
        .first()
    )
    if blocked is None:
        return None, run.reason
    return blocked[0], blocked[1]


def runs_with_progress(user, *, status: str | None = None) -> QuerySet[Run]:
    """runs_visible_to(user), newest first, each annotated with stages_total and
    stages_done (succeeded or skipped); only runs in `status` when given."""
    done = (StageRun.Status.SUCCEEDED, StageRun.Status.SKIPPED)
    runs = runs_visible_to(user)
    if status:
        runs = runs.filter(status=status)
    # Meta.ordering is ignored once the query aggregates: order explicitly.
    return runs.annotate(
        stages_total=Count("stages"),
        stages_done=Count("stages", filter=Q(stages__status__in=done)),
    ).order_by("-created_at", "-id")


def runs_count_by_status() -> dict[str, int]:
    """Every status with its number of runs (0 included). One query."""
    counts = dict.fromkeys(Run.Status.values, 0)
    for row in Run.objects.order_by().values("status").annotate(n=Count("id")):
        counts[row["status"]] = row["n"]
    return counts


def stages_blocked_since() -> list[datetime]:
    """When each stage now waiting for a person (blocked, in a blocked run) blocked. One
    query."""
    return list(
        StageRun.objects.filter(status=StageRun.Status.BLOCKED, run__status=Run.Status.BLOCKED)
        .exclude(finished_at=None)
        .values_list("finished_at", flat=True)
    )


# --- delivery: the change, its test evidence, the review -------------------------------------


def run_test_evidence(run_id: int) -> dict[str, Any] | None:
    """The test evidence Tekton measured for a run (the `evidence` of its test_debug
    artifact), or None before test_debug wrote one. One query."""
    content = (
        Artifact.objects.filter(run_id=run_id, stage="test_debug", kind=Artifact.Kind.JSON)
        .values_list("content", flat=True)
        .first()
    )
    evidence = content.get("evidence") if isinstance(content, dict) else None
    return evidence if isinstance(evidence, dict) else None


def evidence_summary(evidence: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a person (or a client) needs to judge the change from the measured evidence:
    ship and why not, base and branch totals, newly failing and passing tests, the
    coverage of the changed lines, the command and the isolation. None before
    test_debug measured anything."""
    if not isinstance(evidence, dict):
        return None

    def side(name: str) -> dict[str, Any]:
        data = evidence.get(name) if isinstance(evidence.get(name), dict) else {}
        return {
            "totals": dict(data.get("totals") or {}),
            "exit_code": data.get("exit_code"),
            "timed_out": bool(data.get("timed_out")),
            "duration_s": data.get("duration_s"),
            "evidence": bool(data.get("evidence")),
        }

    coverage = evidence.get("changed_coverage")
    command = evidence.get("command") if isinstance(evidence.get("command"), dict) else {}
    return {
        "ship": bool(evidence.get("ship")),
        "reasons": [str(r) for r in evidence.get("reasons") or []],
        "command": command.get("command"),
        "command_source": command.get("source"),
        "base": side("base"),
        "branch": side("branch"),
        "newly_failing": [str(t) for t in evidence.get("newly_failing") or []],
        "newly_passing": [str(t) for t in evidence.get("newly_passing") or []],
        "still_failing": [str(t) for t in evidence.get("still_failing") or []],
        "changed_coverage": (
            {
                "measurable": coverage.get("measurable"),
                "covered": coverage.get("covered"),
                "percent": coverage.get("percent"),
                "files": coverage.get("files") or {},
            }
            if isinstance(coverage, dict)
            else None
        ),
        "isolation": dict(evidence.get("isolation") or {}),
        "hints": [str(h) for h in evidence.get("hints") or []],
    }


def run_evidence_summary(run: Run) -> dict[str, Any] | None:
    return evidence_summary(run_test_evidence(run.pk))


def run_test_records(run_id: int) -> list[TestRunRecord]:
    """Every measured test run of a run (base, branch, agents' run_tests), oldest first."""
    return list(TestRunRecord.objects.filter(run_id=run_id).order_by("id"))


def runs_delivery_facts(run_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Per run: its test evidence (`evidence`, or None) and its review verdict (`review`:
    the review artifact's status, ok / revise / block, or ""). One query."""
    out: dict[int, dict[str, Any]] = {pk: {"evidence": None, "review": ""} for pk in run_ids}
    rows = Artifact.objects.filter(
        run_id__in=run_ids, stage__in=("review", "test_debug"), kind=Artifact.Kind.JSON
    ).values_list("run_id", "stage", "content")
    for run_id, stage, content in rows:
        if not isinstance(content, dict):
            continue
        if stage == "review":
            out[run_id]["review"] = str(content.get("status") or "")
        elif isinstance(content.get("evidence"), dict):
            out[run_id]["evidence"] = content["evidence"]
    return out


def runs_named(user, names: list[str]) -> dict[str, Run]:
    """The runs visible to `user` among branch names `<namespace>/run-<id>-<uid8>` of this
    database's namespace, by name (a name whose uid is not the run's is left out). One
    query."""
    wanted: dict[int, str] = {}
    for name in names:
        namespace, _, slug = name.partition("/")
        parts = slug.split("-")
        if len(parts) == 3 and parts[0] == "run" and parts[1].isdigit():
            wanted[int(parts[1])] = name
    found = runs_visible_to(user).filter(pk__in=list(wanted))
    return {run.name: run for run in found if wanted.get(run.pk) == run.name}


def runs_with_branches(user, repo_path: str, limit: int = 100) -> list[Run]:
    """Runs visible to `user` on `repo_path` that recorded a branch and a head commit,
    newest first: what the workers recorded, for a web host without the checkout."""
    return list(
        runs_visible_to(user)
        .filter(repo_path=repo_path)
        .exclude(branch="")
        .exclude(head_commit="")
        .order_by("-pk")[:limit]
    )


def runs_workspace_owners() -> tuple[list[str], list[str]]:
    """(the names of runs that may still use their workspace: queued, running or blocked,
    every repository a run targeted). Two queries."""
    live = Run.objects.exclude(status__in=Run.FINISHED).values_list("namespace", "id", "uid")
    names = [f"{ns}/run-{pk}-{uid.hex[:8]}" for ns, pk, uid in live]
    repos = list(
        Run.objects.order_by().values_list("repo_path", flat=True).distinct().exclude(repo_path="")
    )
    return names, repos


def stage_usage_history(
    profile_name: str, stages: list[str], runs: int = 50
) -> dict[str, list[tuple[int, float]]]:
    """(tokens, cost) of each of `stages` in the newest `runs` succeeded runs of the
    profile, per stage (a run that did not reach a stage adds nothing to it). One query."""
    recent = Run.objects.filter(profile_name=profile_name, status=Run.Status.SUCCEEDED).order_by(
        "-pk"
    )[:runs]
    rows = StageRun.objects.filter(
        run__in=recent, stage__in=stages, status=StageRun.Status.SUCCEEDED
    ).values_list("stage", "input_tokens", "output_tokens", "cost_usd")
    out: dict[str, list[tuple[int, float]]] = {}
    for stage, tokens_in, tokens_out, cost in rows:
        out.setdefault(stage, []).append((tokens_in + tokens_out, float(cost or 0)))
    return out


def run_last_id() -> int:
    """The highest run id so far (0 with none): what `tekton ask diamond` creates after."""
    return Run.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def run_first_after(run_id: int) -> Run | None:
    """The first run created after run `run_id`, or None."""
    return Run.objects.filter(pk__gt=run_id).order_by("pk").first()
