"""The runs REST API: thin adapters over runs.services and runs.selectors.

Each view parses with an input serializer, calls one service or selector, and formats with
an output serializer. A user sees and acts on their own runs (staff on all); another
user's run is 404, as if it did not exist. Errors take the shapes of
tekton_site.api_errors.
"""

from __future__ import annotations

import io
import math
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.http import FileResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from runs import serializers as s
from runs.artifacts_store import artifact_bytes, artifact_open
from runs.compare import stage_compare, stage_compare_options
from runs.delivery import (
    DeliveryUnavailable,
    bundle_filename,
    patch_filename,
    run_bundle_open,
    run_patch_text,
    run_test_results,
)
from runs.health import services_check
from runs.models import Run, RunEvent, StageRun
from runs.render import transcript_rounds
from runs.selectors import (
    run_artifact_named,
    run_artifacts,
    run_stages,
    run_visible,
    runs_created_since,
    runs_filtered,
    runs_in_flight_count,
    runs_visible_to,
    stage_attempts,
    stage_messages,
    stage_status,
)
from runs.services import (
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
from swarm.stages import STAGE_NAMES
from tekton_site.api_errors import Conflict, LimitExceeded
from tekton_site.api_errors import error_responses as api_error_responses
from tekton_site.errors import FieldError

_ERROR_TEXTS = {
    404: "No such run, stage or artifact, or not yours.",
    409: "Not allowed in the run's (or stage's) current state.",
    503: "A service the run needs is down: `service` says which.",
}
IN_FLIGHT = (Run.Status.QUEUED, Run.Status.RUNNING)
# A run in flight frees its slot when it finishes or blocks; nobody knows when, so clients
# are told to look again after this long.
IN_FLIGHT_RETRY_AFTER_S = 30


def error_responses(*codes: int) -> dict[int, Any]:
    return api_error_responses(*codes, texts=_ERROR_TEXTS)


def run_for(request, run_id: int, *, detail: bool = False) -> Run:
    """The run if the user may see it, else 404 (another user's run does not exist for them)."""
    run = run_visible(request.user, run_id, detail=detail)
    if run is None:
        raise exceptions.NotFound(f"run {run_id} not found")
    return run


def stage_name(run: Run, stage: str) -> str:
    """A stage named in the URL: one of the nine, else 404."""
    if stage not in STAGE_NAMES:
        raise exceptions.NotFound(f"unknown stage {stage!r}; stages are: {', '.join(STAGE_NAMES)}")
    return stage


def detail_response(run_id: int, request, code: int = status.HTTP_200_OK) -> Response:
    run = run_for(request, run_id, detail=True)
    headers = {}
    if code == status.HTTP_201_CREATED:
        headers["Location"] = reverse("run-detail", kwargs={"run_id": run.pk})
    data = s.RunDetailSerializer(run, context={"request": request}).data
    return Response(data, status=code, headers=headers)


def limits_check(user, *, creating: bool) -> None:
    """Per-user limits, counted from the database: runs queued or running
    (TEKTON_API_MAX_RUNS_IN_FLIGHT) and, when `creating`, runs created in the last minute
    (TEKTON_API_RUNS_PER_MINUTE). 0 disables a limit. Raises LimitExceeded (429). Two
    requests racing may both pass; the limits are a brake, not an invariant."""
    max_in_flight = int(settings.TEKTON_API_MAX_RUNS_IN_FLIGHT)
    if max_in_flight > 0:
        in_flight = runs_in_flight_count(user, IN_FLIGHT)
        if in_flight >= max_in_flight:
            raise LimitExceeded(
                limit="runs_in_flight",
                maximum=max_in_flight,
                wait=IN_FLIGHT_RETRY_AFTER_S,
                detail=f"you have {in_flight} runs queued or running; the limit is {max_in_flight}",
            )
    per_minute = int(settings.TEKTON_API_RUNS_PER_MINUTE)
    if creating and per_minute > 0:
        now = timezone.now()
        recent = runs_created_since(user, now - timedelta(minutes=1), per_minute)
        if len(recent) >= per_minute:
            # The slot frees when the oldest of the last `per_minute` runs leaves the window.
            wait = math.ceil((recent[-1] + timedelta(minutes=1) - now).total_seconds())
            raise LimitExceeded(
                limit="runs_per_minute",
                maximum=per_minute,
                wait=max(1, wait),
                detail=f"you created {per_minute} runs in the last minute; the limit is {per_minute}",
            )


class RunCursorPagination(CursorPagination):
    """Keyset pagination, newest first, a fixed page size."""

    page_size = settings.TEKTON_API_PAGE_SIZE
    ordering = ("-created_at", "-id")
    cursor_query_param = "cursor"

    def decode_cursor(self, request):
        bad = exceptions.ValidationError(
            {"cursor": ["invalid cursor; pass the next or previous link as given"]}
        )
        try:
            cursor = super().decode_cursor(request)
        except exceptions.NotFound:
            raise bad from None
        # A hand-made cursor with a position that is not a timestamp would fail in the query.
        if cursor is not None and cursor.position is not None:
            try:
                valid = parse_datetime(cursor.position) is not None
            except ValueError:
                valid = False
            if not valid:
                raise bad
        return cursor


class RunListCreateApi(APIView):
    @extend_schema(
        operation_id="runs_list",
        summary="List runs, newest first",
        description="Filters: `status`, `profile` (exact), `repo` (text in the path), `q` (text "
        "in the goal), `created_after` (inclusive), `created_before` (exclusive). Keyset "
        "pagination: follow `next` / `previous`.",
        parameters=[s.RunListFilterSerializer],
        responses={200: s.RunPageSerializer, **error_responses(400, 401)},
    )
    def get(self, request):
        # A plain dict, not the QueryDict: DRF reads an empty form value as "not given",
        # while the schema (rightly) says an empty filter is not a valid one.
        filters = s.RunListFilterSerializer(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        runs = runs_filtered(runs_visible_to(request.user), filters.validated_data)
        paginator = RunCursorPagination()
        page = paginator.paginate_queryset(runs, request, view=self)
        return Response(
            {
                "next": paginator.get_next_link(),
                "previous": paginator.get_previous_link(),
                "results": s.RunSerializer(page, many=True).data,
            }
        )

    @extend_schema(
        operation_id="runs_create",
        summary="Create a run (201), or with explain: true show the plan (200)",
        request=s.RunCreateInputSerializer,
        responses={
            201: s.RunDetailSerializer,
            200: s.ExplainSerializer,
            **error_responses(400, 401, 403, 429, 503),
        },
    )
    def post(self, request):
        body = s.RunCreateInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        args = {
            "goal": data["goal"],
            "repo_path": data["repo"],
            "profile_name": data.get("profile") or None,
            "stage_from": data["from"],
            "stage_to": data["to"],
            "consensus_free": list(data.get("consensus_free") or []) or None,
            "model": data.get("model") or None,
            "test_command": data.get("test_command"),
        }
        if data["explain"]:
            plan = run_plan(**args)
            explained = {**plan.explain(), "goal": plan.goal, "repo": plan.repo_path}
            return Response(s.ExplainSerializer(explained).data)
        limits_check(request.user, creating=True)
        services_check()
        run = run_create(**args, by=request.user)
        return detail_response(run.pk, request, status.HTTP_201_CREATED)


class RunDetailApi(APIView):
    @extend_schema(
        operation_id="runs_retrieve",
        summary="A run with its stages and artifacts",
        responses={200: s.RunDetailSerializer, **error_responses(401, 404)},
    )
    def get(self, request, run_id: int):
        run = run_for(request, run_id, detail=True)
        return Response(s.RunDetailSerializer(run, context={"request": request}).data)


class RunCancelApi(APIView):
    @extend_schema(
        operation_id="runs_cancel",
        summary="Cancel a queued, running or blocked run",
        request=None,
        responses={200: s.RunDetailSerializer, **error_responses(401, 403, 404, 409)},
    )
    def post(self, request, run_id: int):
        run_cancel(run=run_for(request, run_id), by=request.user)
        return detail_response(run_id, request)


class RunResumeApi(APIView):
    @extend_schema(
        operation_id="runs_resume",
        summary="Resume a failed, cancelled or blocked run from its first unfinished stage",
        request=None,
        responses={
            200: s.RunDetailSerializer,
            **error_responses(401, 403, 404, 409, 429, 503),
        },
    )
    def post(self, request, run_id: int):
        run = run_for(request, run_id)
        limits_check(request.user, creating=False)
        services_check()
        run_resume(run=run, by=request.user)
        return detail_response(run_id, request)


class RunForkApi(APIView):
    @extend_schema(
        operation_id="runs_fork",
        summary="Fork a run from a stage (201): a new run on the parent's base commit that "
        "reuses the parent's finished stages before it and runs from it",
        description="The fork has the parent's goal, repository, base commit and stage range; "
        "its stages before `from` are skipped as reused, with copies of the parent's "
        "artifacts, and the rest run with `profile` and/or `model` (neither: the parent's "
        "configuration). Every parent stage before `from` must be finished (400 naming "
        "`from` otherwise); the parent may be in any state.",
        request=s.RunForkInputSerializer,
        responses={201: s.RunDetailSerializer, **error_responses(400, 401, 403, 404, 429, 503)},
    )
    def post(self, request, run_id: int):
        parent = run_for(request, run_id)
        body = s.RunForkInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        limits_check(request.user, creating=True)
        services_check()
        fork = run_fork(
            parent=parent,
            from_stage=data["from"],
            profile_name=data.get("profile") or None,
            model=data.get("model") or None,
            by=request.user,
        )
        return detail_response(fork.pk, request, status.HTTP_201_CREATED)


class RunBudgetApi(APIView):
    @extend_schema(
        operation_id="runs_budget",
        summary="Change a run's token and/or cost budget; what is not given stays (a stage "
        "blocked by the budget runs again when retried)",
        request=s.RunBudgetInputSerializer,
        responses={200: s.RunDetailSerializer, **error_responses(400, 401, 403, 404, 409)},
    )
    def post(self, request, run_id: int):
        run = run_for(request, run_id)
        body = s.RunBudgetInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        if body.validated_data:  # like a PATCH: what is not given stays, {} changes nothing
            run_budget_set(
                run=run,
                tokens=body.validated_data.get("tokens"),
                cost_usd=body.validated_data.get("cost_usd"),
                by=request.user,
            )
        return detail_response(run_id, request)


class _StageActionApi(APIView):
    def stage_args(self, request, run_id: int, stage: str) -> tuple[Run, str]:
        run = run_for(request, run_id)
        return run, stage_name(run, stage)

    def call(self, fn, **kwargs) -> None:
        try:
            fn(**kwargs)
        except FieldError as exc:
            if exc.field == "stage":  # the stage in the URL is not part of this run
                raise exceptions.NotFound(exc.message) from None
            raise


class StageApproveApi(_StageActionApi):
    @extend_schema(
        operation_id="runs_stage_approve",
        summary="Accept a blocked stage anyway; the run goes on",
        request=None,
        responses={200: s.RunDetailSerializer, **error_responses(401, 403, 404, 409)},
    )
    def post(self, request, run_id: int, stage: str):
        run, stage = self.stage_args(request, run_id, stage)
        self.call(stage_approve, run=run, stage=stage, by=request.user)
        return detail_response(run_id, request)


class StageRetryApi(_StageActionApi):
    @extend_schema(
        operation_id="runs_stage_retry",
        summary="Run a blocked or failed stage again with a note for its prompts",
        request=s.StageRetryInputSerializer,
        responses={200: s.RunDetailSerializer, **error_responses(400, 401, 403, 404, 409)},
    )
    def post(self, request, run_id: int, stage: str):
        run, stage = self.stage_args(request, run_id, stage)
        body = s.StageRetryInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        self.call(
            stage_retry, run=run, stage=stage, note=body.validated_data["note"], by=request.user
        )
        return detail_response(run_id, request)


class StageAbortApi(_StageActionApi):
    @extend_schema(
        operation_id="runs_stage_abort",
        summary="Give up on a run at this blocked stage (the run is cancelled)",
        request=None,
        responses={200: s.RunDetailSerializer, **error_responses(401, 403, 404, 409)},
    )
    def post(self, request, run_id: int, stage: str):
        run, stage = self.stage_args(request, run_id, stage)
        status_now = stage_status(run.pk, stage)
        if status_now is None:
            raise exceptions.NotFound(f"run {run.pk} does not include stage {stage!r}")
        if status_now != StageRun.Status.BLOCKED:
            raise Conflict(
                f"stage {stage} of run {run.pk} is {status_now}; only a run blocked at this "
                "stage can be aborted"
            )
        run_abort(run=run, by=request.user)
        return detail_response(run_id, request)


def stage_of_run(run: Run, stage: str) -> str:
    """A stage named in the URL that this run includes, else 404."""
    stage = stage_name(run, stage)
    if stage_status(run.pk, stage) is None:
        raise exceptions.NotFound(f"run {run.pk} does not include stage {stage!r}")
    return stage


class StageAttemptsApi(APIView):
    @extend_schema(
        operation_id="runs_stage_attempts",
        summary="A stage's attempts set aside by retries, and what its artifact can be "
        "compared with",
        description="Each retry (or resume) keeps the attempt it replaces: its status, "
        "reason, note, draft artifact and, for code, draft patch. `compare` lists the keys "
        "that .../compare/?with= takes: those attempts that left a draft, and the parent's "
        "and forks' artifacts of the stage (only runs you may see).",
        responses={200: s.StageAttemptsSerializer, **error_responses(401, 404)},
    )
    def get(self, request, run_id: int, stage: str):
        run = run_for(request, run_id)
        stage = stage_of_run(run, stage)
        current = run_stages(run.pk, stage)[0]
        data = {
            "run": run.pk,
            "stage": stage,
            "attempt": current.attempt,
            "attempts": stage_attempts(run.pk, stage),
            "compare": stage_compare_options(request.user, run, stage),
        }
        return Response(s.StageAttemptsSerializer(data).data)


class StageCompareApi(APIView):
    @extend_schema(
        operation_id="runs_stage_compare",
        summary="A stage's artifact against a set-aside attempt, the parent or a fork, as a diff",
        description="The unified diff of the pretty JSON (keys sorted) of the other side "
        "(`with`: one of the `compare` keys of .../attempts/) and of this run's artifact of "
        "the stage (the accepted one, else the blocked stage's draft). A field that holds a "
        "patch (`patch_field`: code's `diff`) is left out of `diff` and compared as patches "
        "in `patch_diff` and `patch_files`: per file, how the two sides' changes differ. "
        "404 when `with` names nothing to compare, or the stage has no artifact yet.",
        parameters=[s.StageCompareFilterSerializer],
        responses={200: s.StageComparisonSerializer, **error_responses(400, 401, 404)},
    )
    def get(self, request, run_id: int, stage: str):
        query = s.StageCompareFilterSerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        key = query.validated_data["with"]
        run = run_for(request, run_id)
        stage = stage_of_run(run, stage)
        comparison = stage_compare(request.user, run, stage, key)
        if comparison is None:
            # Why not, said only on this path: the options cost a few queries.
            keys = [o.key for o in stage_compare_options(request.user, run, stage)]
            if key in keys:
                raise exceptions.NotFound(f"run {run.pk} has no artifact of stage {stage} yet")
            raise exceptions.NotFound(
                f"no {key} to compare stage {stage} of run {run.pk} with; "
                + (f"the options are: {', '.join(keys)}" if keys else "there is none yet")
            )
        data = {
            "run": run.pk,
            "stage": stage,
            "key": comparison.key,
            "old_label": comparison.old_label,
            "new_label": comparison.new_label,
            "same": comparison.same,
            "diff": comparison.diff,
            "patch_field": comparison.patch_field,
            "patch_diff": comparison.patch_diff,
            "patch_files": comparison.patch_files,
        }
        return Response(s.StageComparisonSerializer(data).data)


class RunArtifactListApi(APIView):
    @extend_schema(
        operation_id="runs_artifacts_list",
        summary="The run's artifact files",
        responses={200: s.ArtifactSerializer(many=True), **error_responses(401, 404)},
    )
    def get(self, request, run_id: int):
        run = run_for(request, run_id)
        artifacts = run_artifacts(run.pk)
        return Response(s.ArtifactSerializer(artifacts, many=True).data)


ARTIFACT_CONTENT_TYPES = {".json": "application/json", ".patch": "text/x-diff"}


class RunArtifactDownloadApi(APIView):
    def perform_content_negotiation(self, request, force=False):
        # The file is served as what it is, whatever the Accept header asked for.
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(
        operation_id="runs_artifacts_download",
        summary="Download one artifact file of the run",
        description="Only files recorded for this run and lying under its artifact root; "
        "any other name (another run's file, a path) is 404. Streamed from the artifact "
        "storage (files, S3, ...), or from the database record when the file is missing.",
        responses={
            (200, "application/json"): OpenApiResponse(
                OpenApiTypes.OBJECT, description="a JSON artifact"
            ),
            (200, "text/x-diff"): OpenApiResponse(
                OpenApiTypes.STR, description="the code stage's diff"
            ),
            **error_responses(401, 404),
        },
    )
    def get(self, request, run_id: int, name: str):
        run = run_for(request, run_id)
        artifact = run_artifact_named(run.pk, name)
        if artifact is None:
            raise exceptions.NotFound(f"run {run.pk} has no artifact {name[:200]!r}")
        artifact.run = run
        try:
            # Streamed from the artifact storage (whichever machine wrote it); the key
            # must be a plain path under the run's artifact root.
            body = artifact_open(artifact)
        except ValueError:
            raise exceptions.NotFound(f"run {run.pk} has no artifact {name[:200]!r}") from None
        except OSError:
            # Not in the storage (lost, or never copied): the database record is the artifact.
            try:
                body = io.BytesIO(artifact_bytes(artifact))
            except (OSError, ValueError):
                raise exceptions.NotFound(
                    f"the file of artifact {artifact.name} is missing"
                ) from None
        content_type = ARTIFACT_CONTENT_TYPES.get(Path(name).suffix, "application/octet-stream")
        return FileResponse(
            body, as_attachment=True, filename=artifact.name, content_type=content_type
        )


def transcript_build(run: Run, stages: list[StageRun], events: list[RunEvent]) -> dict[str, Any]:
    """The debate of each stage (render.transcript_rounds, as the run page shows it), with
    the votes the quorum used."""
    by_stage: dict[str, list[RunEvent]] = defaultdict(list)
    for event in events:
        by_stage[event.stage].append(event)
    out = []
    for stage in stages:
        rounds = [
            {
                "attempt": r.attempt,
                "round": r.number,
                "label": r.name,
                "messages": [
                    {
                        "seq": m.seq,
                        "role": m.role,
                        "model": m.model,
                        "position": m.position if m.has_position else None,
                        "self_confidence": m.self_confidence,
                        "vote": m.vote,
                        "answer": m.answer,
                        "created_at": m.created_at,
                    }
                    for m in r.messages
                ],
            }
            for r in transcript_rounds(by_stage.get(stage.stage, []))
        ]
        out.append(
            {
                "stage": stage.stage,
                "status": stage.status,
                "attempt": stage.attempt,
                "confidence": stage.confidence,
                "approval": stage.approval,
                "votes": [v for v in (stage.votes or []) if isinstance(v, dict)],
                "mediator": stage.mediator or {},
                "rounds": rounds,
            }
        )
    return {"run": run.pk, "stages": out}


class RunTranscriptApi(APIView):
    @extend_schema(
        operation_id="runs_transcript",
        summary="The debate round by round, with votes (one stage with ?stage=)",
        parameters=[s.TranscriptFilterSerializer],
        responses={200: s.TranscriptSerializer, **error_responses(400, 401, 404)},
    )
    def get(self, request, run_id: int):
        query = s.TranscriptFilterSerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        run = run_for(request, run_id)
        wanted = query.validated_data.get("stage")
        stages = run_stages(run.pk, wanted)
        events = stage_messages(run.pk, wanted)
        if wanted and not stages:
            raise exceptions.NotFound(f"run {run.pk} does not include stage {wanted!r}")
        transcript = transcript_build(run, stages, events)
        return Response(s.TranscriptSerializer(transcript).data)


class RunTestsApi(APIView):
    @extend_schema(
        operation_id="runs_tests",
        summary="Every test's outcome on the base and on the branch (complete, not paged)",
        description="From the runs test_debug measured in the sandbox: one result per test "
        "id with its base and branch outcome and what changed; `change` narrows them. "
        "`runs` lists every measured test run (base, branch, agents' run_tests). Before "
        "test_debug ran, `measured` is false and the lists are empty.",
        parameters=[s.TestResultsFilterSerializer],
        responses={200: s.TestResultsSerializer, **error_responses(400, 401, 404)},
    )
    def get(self, request, run_id: int):
        query = s.TestResultsFilterSerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        run = run_for(request, run_id)
        results = run_test_results(run, change=query.validated_data.get("change"))
        return Response(s.TestResultsSerializer(results).data)


class _DownloadApi(APIView):
    def perform_content_negotiation(self, request, force=False):
        # The file is served as what it is, whatever the Accept header asked for.
        return super().perform_content_negotiation(request, force=True)


class RunPatchApi(_DownloadApi):
    @extend_schema(
        operation_id="runs_patch",
        summary="The run's change as a patch: git diff <base>..<branch>",
        description="From the repository when the branch is there, else the code stage's "
        "stored diff (so a web host without the checkout serves it too). Apply it with "
        "`git apply`. 404 when the run has no change.",
        responses={
            (200, "text/x-diff"): OpenApiResponse(OpenApiTypes.STR, description="a unified diff"),
            **error_responses(401, 404),
        },
    )
    def get(self, request, run_id: int):
        run = run_for(request, run_id)
        try:
            text, _source = run_patch_text(run)
        except DeliveryUnavailable as exc:
            raise exceptions.NotFound(str(exc)) from None
        return FileResponse(
            io.BytesIO(text.encode("utf-8")),
            as_attachment=True,
            filename=patch_filename(run),
            content_type="text/x-diff",
        )


class RunBundleApi(_DownloadApi):
    @extend_schema(
        operation_id="runs_bundle",
        summary="The run's branch as a git bundle (prerequisite: the base commit)",
        description="Made on request from the repository with `git bundle create`; in a "
        "clone that has the base commit: `git fetch <file> <branch>:<branch>`. Nothing is "
        "pushed anywhere. 404 when the run has no branch or the repository is not on this "
        "host (download the patch then).",
        responses={
            (200, "application/octet-stream"): OpenApiResponse(
                OpenApiTypes.BINARY, description="a git bundle (v2)"
            ),
            **error_responses(401, 404),
        },
    )
    def get(self, request, run_id: int):
        run = run_for(request, run_id)
        try:
            handle = run_bundle_open(run)
        except DeliveryUnavailable as exc:
            raise exceptions.NotFound(str(exc)) from None
        return FileResponse(
            handle,
            as_attachment=True,
            filename=bundle_filename(run),
            content_type="application/octet-stream",
        )


class SearchApi(APIView):
    @extend_schema(
        operation_id="search",
        summary="Search a repository's index: chunks with path, lines and score, and lessons",
        description="Hybrid search (meaning and words, fused by reciprocal rank) over the "
        "chunks of one indexed commit of the repository, and over the lessons of the runs "
        "you may see. An index that is down or not built answers empty lists and `warning`.",
        parameters=[s.SearchQuerySerializer],
        responses={200: s.SearchResultSerializer, **error_responses(400, 401)},
    )
    def get(self, request):
        from runs.retrieval_search import repo_search

        query = s.SearchQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        data = query.validated_data
        found = repo_search(
            user=request.user,
            repo_path=data["repo"],
            query=data["q"],
            k=data.get("limit") or 10,
            commit=data.get("commit"),
        )
        return Response(s.SearchResultSerializer(found).data)
