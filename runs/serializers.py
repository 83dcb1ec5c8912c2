"""Input and output shapes of the runs API. Inputs check types and choices (so the OpenAPI
schema says what is accepted); the services check everything else."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from runs.models import Artifact, Run, StageAttempt, StageRun
from swarm.stages import ROLES, STAGE_NAMES
from tekton_site.api_fields import StrictFloatField

STAGE_CHOICES = list(STAGE_NAMES)


def _rename(fields: dict, renames: dict[str, str]) -> dict:
    # "from" is a Python keyword, so these fields are declared under another name and
    # exposed under the API's name here (before DRF binds them).
    for old, new in renames.items():
        fields[new] = fields.pop(old)
    return fields


# --- inputs ---------------------------------------------------------------------------------


class RunCreateInputSerializer(serializers.Serializer):
    goal = serializers.CharField(max_length=settings.TEKTON_GOAL_MAX_CHARS)
    repo = serializers.CharField(
        max_length=1024, help_text="path of a git repository under TEKTON_REPO_ROOTS"
    )
    profile = serializers.CharField(
        max_length=100,
        required=False,
        allow_null=True,
        default=None,
        help_text="profile name (default: diamond-v5)",
    )
    stage_from = serializers.ChoiceField(choices=STAGE_CHOICES, default="plan")
    stage_to = serializers.ChoiceField(choices=STAGE_CHOICES, default="release")
    consensus_free = serializers.ListField(
        child=serializers.ChoiceField(choices=STAGE_CHOICES),
        required=False,
        default=list,
        max_length=len(STAGE_CHOICES) * 2,
    )
    model = serializers.RegexField(
        r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._:/+-]*$",
        max_length=200,
        required=False,
        allow_null=True,
        default=None,
        error_messages={"invalid": "a model id is vendor/model"},
        help_text="one vendor/model id for every role of every stage",
    )
    test_command = serializers.CharField(
        max_length=2000,
        required=False,
        allow_null=True,
        default=None,
        help_text="the repository's test command for this run (a shell line run in the "
        "sandbox), instead of .tekton.toml's or the detected one; refused under "
        "TEKTON_SANDBOX=none",
    )
    explain = serializers.BooleanField(
        default=False, help_text="answer 200 with the plan and create nothing"
    )

    def get_fields(self):
        return _rename(super().get_fields(), {"stage_from": "from", "stage_to": "to"})


class RunListFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Run.Status.choices, required=False)
    profile = serializers.CharField(max_length=100, required=False)
    repo = serializers.CharField(
        max_length=1024, required=False, help_text="text in the repository path"
    )
    q = serializers.CharField(max_length=500, required=False, help_text="text in the goal")
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)
    cursor = serializers.CharField(
        max_length=500, required=False, help_text="from `next` / `previous`"
    )


class RunForkInputSerializer(serializers.Serializer):
    stage_from = serializers.ChoiceField(
        choices=STAGE_CHOICES,
        help_text="the stage the fork runs from; the parent's finished stages before it are "
        "reused (it must be one of the parent's stages, at most its first unfinished one)",
    )
    profile = serializers.CharField(
        max_length=100,
        required=False,
        allow_null=True,
        default=None,
        help_text="profile name (default: the parent's)",
    )
    model = serializers.RegexField(
        r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._:/+-]*$",
        max_length=200,
        required=False,
        allow_null=True,
        default=None,
        error_messages={"invalid": "a model id is vendor/model"},
        help_text="one vendor/model id for every role of every stage the fork runs; with "
        "neither profile nor model the parent's configuration is reused",
    )

    def get_fields(self):
        return _rename(super().get_fields(), {"stage_from": "from"})


class StageRetryInputSerializer(serializers.Serializer):
    note = serializers.CharField(max_length=8000, help_text="goes into the retried stage's prompts")


class RunBudgetInputSerializer(serializers.Serializer):
    tokens = serializers.IntegerField(
        min_value=0, max_value=2**63 - 1, required=False, help_text="token budget; 0 = no limit"
    )
    cost_usd = StrictFloatField(
        min_value=0,
        max_value=10**8,
        required=False,
        help_text="cost budget in US dollars (kept to 1/100 cent); 0 = no limit",
    )


class TranscriptFilterSerializer(serializers.Serializer):
    stage = serializers.ChoiceField(choices=STAGE_CHOICES, required=False)


class StageCompareFilterSerializer(serializers.Serializer):
    compare_with = serializers.RegexField(
        r"^(attempt|run)-[0-9]{1,18}$",
        max_length=30,
        error_messages={"invalid": "attempt-N (a set-aside attempt) or run-N (parent or fork)"},
        help_text="what to compare the stage's artifact with: one of the `compare` keys of "
        ".../attempts/ (attempt-2, run-15)",
    )

    def get_fields(self):
        return _rename(super().get_fields(), {"compare_with": "with"})


class SearchQuerySerializer(serializers.Serializer):
    q = serializers.CharField(max_length=2000, help_text="What to look for, in words or code.")
    repo = serializers.CharField(
        max_length=4096, help_text="The repository's path (inside TEKTON_REPO_ROOTS)."
    )
    limit = serializers.IntegerField(min_value=1, max_value=50, default=10, required=False)
    commit = serializers.RegexField(
        r"^[0-9a-f]{40}$",
        required=False,
        help_text="A full commit sha; default the newest indexed commit of the repository.",
    )


# --- outputs --------------------------------------------------------------------------------


class BudgetSerializer(serializers.Serializer):
    tokens = serializers.IntegerField(help_text="the run's token budget; 0 = no limit")
    cost_usd = serializers.FloatField(help_text="the run's cost budget in US dollars; 0 = no limit")


class RunSerializer(serializers.ModelSerializer):
    repo = serializers.CharField(source="repo_path")
    profile = serializers.CharField(source="profile_name")
    stage_from = serializers.CharField(source="stage_from")
    stage_to = serializers.CharField(source="stage_to")
    owner = serializers.SerializerMethodField()
    consensus_free = serializers.SerializerMethodField()
    cost_usd = serializers.FloatField()
    total_tokens = serializers.IntegerField()
    uncached_input_tokens = serializers.IntegerField(
        help_text="input tokens billed at the full price: input - cached - cache writes"
    )
    duration_s = serializers.FloatField(allow_null=True)
    budget = serializers.SerializerMethodField()

    class Meta:
        model = Run
        fields = [
            "id",
            "goal",
            "repo",
            "profile",
            "stage_from",
            "stage_to",
            "status",
            "reason",
            "owner",
            "consensus_free",
            "input_tokens",
            "cached_input_tokens",
            "cache_write_tokens",
            "uncached_input_tokens",
            "output_tokens",
            "total_tokens",
            "cost_usd",
            "budget",
            "duration_s",
            "branch",
            "base_commit",
            "head_commit",
            "parent",
            "forked_from_stage",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "branch": {
                "help_text": "the run's branch in the repository once its change is committed"
            },
            "base_commit": {"help_text": "HEAD of the repository when the run was created"},
            "head_commit": {"help_text": "the commit the run's branch points at"},
            "parent": {"help_text": "a fork's parent run (null: not a fork, or deleted)"},
            "forked_from_stage": {
                "help_text": "the stage a fork ran from; the stages before it are its "
                'parent\'s, reused ("": not a fork)'
            },
        }

    @extend_schema_field(BudgetSerializer)
    def get_budget(self, run: Run) -> dict[str, float]:
        config = run.config or {}
        return {
            "tokens": int(config.get("budget_tokens") or 0),
            "cost_usd": float(config.get("budget_cost_usd") or 0),
        }

    def get_fields(self):
        return _rename(super().get_fields(), {"stage_from": "from", "stage_to": "to"})

    def get_owner(self, run: Run) -> str | None:
        return run.owner.get_username() if run.owner_id else None

    def get_consensus_free(self, run: Run) -> list[str]:
        return list((run.config or {}).get("consensus_free") or [])


class VoteSerializer(serializers.Serializer):
    role = serializers.CharField()
    approve = serializers.BooleanField()
    self_confidence = serializers.FloatField()
    reason = serializers.CharField(allow_blank=True, required=False)


class StageSerializer(serializers.ModelSerializer):
    votes = VoteSerializer(many=True)
    cost_usd = serializers.FloatField()
    uncached_input_tokens = serializers.IntegerField(
        help_text="input tokens billed at the full price: input - cached - cache writes"
    )
    duration_s = serializers.FloatField(allow_null=True)

    class Meta:
        model = StageRun
        fields = [
            "stage",
            "position",
            "status",
            "attempt",
            "confidence",
            "approval",
            "votes",
            "reason",
            "note",
            "input_tokens",
            "cached_input_tokens",
            "cache_write_tokens",
            "uncached_input_tokens",
            "output_tokens",
            "cost_usd",
            "duration_s",
            "started_at",
            "finished_at",
            "heartbeat_at",
        ]
        read_only_fields = fields


class ArtifactSerializer(serializers.ModelSerializer):
    class Meta:
        model = Artifact
        fields = ["name", "stage", "kind", "size", "sha256", "created_at"]
        read_only_fields = fields


class WorkspaceSerializer(serializers.Serializer):
    path = serializers.CharField(allow_null=True, help_text="the run's worktree (on the workers)")
    state = serializers.ChoiceField(
        choices=["present", "removed", "none", "unavailable"],
        help_text="present: the worktree exists here; removed: the run has none now (finished "
        "or not started); none: the repository had no commit; unavailable: the repository is "
        "not on this host",
    )


class RunDeliveryCommandsSerializer(serializers.Serializer):
    diff = serializers.CharField(required=False, help_text="git diff <base>..<branch>")
    merge = serializers.CharField(required=False, help_text="git merge <branch>")
    fetch_bundle = serializers.CharField(
        required=False, help_text="take the branch from the downloaded bundle"
    )


class RunDeliverySerializer(serializers.Serializer):
    branch = serializers.CharField(allow_null=True)
    base_commit = serializers.CharField(allow_null=True)
    head_commit = serializers.CharField(allow_null=True)
    workspace = WorkspaceSerializer()
    branch_in_git = serializers.BooleanField(
        allow_null=True, help_text="the branch exists in the repository (null: not on this host)"
    )
    branch_head = serializers.CharField(allow_null=True, help_text="the branch's commit in git")
    has_change = serializers.BooleanField(help_text="a patch can be downloaded")
    can_bundle = serializers.BooleanField(help_text="a git bundle can be downloaded")
    commands = RunDeliveryCommandsSerializer()


class TestSideSerializer(serializers.Serializer):
    totals = serializers.DictField(
        child=serializers.IntegerField(), help_text="tests, passed, failed, errors, skipped"
    )
    exit_code = serializers.IntegerField(allow_null=True)
    timed_out = serializers.BooleanField()
    duration_s = serializers.FloatField(allow_null=True)
    evidence = serializers.BooleanField(help_text="false: the run proves nothing (see reasons)")


class ChangedCoverageSerializer(serializers.Serializer):
    measurable = serializers.IntegerField(allow_null=True)
    covered = serializers.IntegerField(allow_null=True)
    percent = serializers.FloatField(allow_null=True)
    files = serializers.DictField(child=serializers.JSONField())


class TestEvidenceSummarySerializer(serializers.Serializer):
    ship = serializers.BooleanField()
    reasons = serializers.ListField(child=serializers.CharField(allow_blank=True))
    command = serializers.CharField(allow_null=True)
    command_source = serializers.CharField(allow_null=True)
    base = TestSideSerializer()
    branch = TestSideSerializer()
    newly_failing = serializers.ListField(child=serializers.CharField())
    newly_passing = serializers.ListField(child=serializers.CharField())
    still_failing = serializers.ListField(child=serializers.CharField())
    changed_coverage = ChangedCoverageSerializer(
        allow_null=True, help_text="coverage of the lines the change added or changed"
    )
    isolation = serializers.DictField(child=serializers.JSONField())
    hints = serializers.ListField(child=serializers.CharField())


class RunDetailSerializer(RunSerializer):
    stages = StageSerializer(many=True)
    artifacts = ArtifactSerializer(many=True)
    config = serializers.JSONField(help_text="the configuration frozen when the run was created")
    last_event_seq = serializers.IntegerField(source="event_seq")
    delivery = serializers.SerializerMethodField(
        help_text="the branch, its base and head, the workspace, and how to take the change"
    )
    tests = serializers.SerializerMethodField(
        help_text="the test evidence Tekton measured (null before test_debug); "
        "per-test results at /api/runs/{id}/tests/"
    )
    forks = serializers.SerializerMethodField(help_text="the ids of the runs forked from this one")

    class Meta(RunSerializer.Meta):
        fields = [
            *RunSerializer.Meta.fields,
            "last_event_seq",
            "config",
            "delivery",
            "tests",
            "forks",
            "stages",
            "artifacts",
        ]
        read_only_fields = fields

    def get_forks(self, run: Run) -> list[int]:
        forks = run.forks.all()
        request = self.context.get("request")
        if request is not None:  # another user's fork does not exist for this one
            from runs.selectors import runs_visible_to

            forks = runs_visible_to(request.user).filter(parent_id=run.pk)
        return list(forks.order_by("id").values_list("id", flat=True))

    @extend_schema_field(RunDeliverySerializer)
    def get_delivery(self, run: Run) -> dict:
        from runs.delivery import run_delivery

        return run_delivery(run).to_dict()

    @extend_schema_field(TestEvidenceSummarySerializer(allow_null=True))
    def get_tests(self, run: Run) -> dict | None:
        from runs.selectors import run_evidence_summary

        return run_evidence_summary(run)


class StageAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = StageAttempt
        fields = [
            "number",
            "status",
            "reason",
            "note",
            "confidence",
            "approval",
            "artifact",
            "patch",
            "started_at",
            "finished_at",
            "created_at",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "number": {"help_text": "1, 2, ... in the order the attempts were set aside"},
            "status": {"help_text": "the stage status the attempt ended in"},
            "reason": {"help_text": "why it ended so (blocked, failed)"},
            "note": {"help_text": "the retry note it ran with"},
            "artifact": {"help_text": "its draft artifact (null: it left none)"},
            "patch": {"help_text": 'the code stage\'s draft change ("": none)'},
            "created_at": {"help_text": "when a retry or resume set it aside"},
        }


class CompareOptionSerializer(serializers.Serializer):
    key = serializers.CharField(help_text="what ?with= takes: attempt-N or run-N")
    label = serializers.CharField()


class StageAttemptsSerializer(serializers.Serializer):
    run = serializers.IntegerField()
    stage = serializers.CharField()
    attempt = serializers.IntegerField(help_text="the stage's current attempt number")
    attempts = StageAttemptSerializer(many=True, help_text="the attempts set aside, oldest first")
    compare = CompareOptionSerializer(
        many=True,
        help_text="what the stage's artifact can be compared with: attempts that left a "
        "draft, and the parent's and forks' artifacts of the stage (runs you may see)",
    )


class PatchFileSerializer(serializers.Serializer):
    path = serializers.CharField()
    change = serializers.ChoiceField(
        choices=["only_old", "only_new", "differs"],
        help_text="only the other side's patch touches the file, only this run's, or both, "
        "differently",
    )
    diff = serializers.CharField(help_text="this file's part of patch_diff")


class StageComparisonSerializer(serializers.Serializer):
    run = serializers.IntegerField()
    stage = serializers.CharField()
    key = serializers.CharField(help_text="the ?with= compared")
    old_label = serializers.CharField(help_text="the other side (the diff's a/)")
    new_label = serializers.CharField(help_text="this run's artifact (the diff's b/)")
    same = serializers.BooleanField(help_text="both sides are the same, patch included")
    diff = serializers.CharField(
        allow_blank=True,
        help_text="a unified diff of both sides' pretty JSON, keys sorted, the patch field "
        'left out ("" when the same)',
    )
    patch_field = serializers.CharField(
        allow_null=True,
        help_text="the artifact field compared as patches (code: diff), null when none",
    )
    patch_diff = serializers.CharField(
        allow_blank=True,
        help_text="the interdiff: for each file in patch_files, a unified diff of the two "
        "patches' lines of it, each line keeping its own +/-/space after the interdiff's "
        '(a/ the other side, b/ this run; "" when the patches are the same)',
    )
    patch_files = PatchFileSerializer(
        many=True, help_text="the files the two patches change differently, in patch order"
    )


class TestResultSerializer(serializers.Serializer):
    test = serializers.CharField(help_text="the JUnit test id (classname::name)")
    base = serializers.CharField(allow_null=True, help_text="outcome on the base commit")
    branch = serializers.CharField(allow_null=True, help_text="outcome on the branch")
    change = serializers.ChoiceField(
        choices=["newly_failing", "newly_passing", "still_failing", "removed", "added", "unchanged"]
    )
    message = serializers.CharField(allow_blank=True, help_text="the failure message, redacted")


class TestRecordSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["base", "branch", "stage"])
    stage = serializers.CharField()
    commit = serializers.CharField(allow_null=True)
    reused = serializers.BooleanField(help_text="copied from an earlier run of the same base")
    command = serializers.CharField(allow_null=True)
    exit_code = serializers.IntegerField(allow_null=True)
    timed_out = serializers.BooleanField()
    duration_s = serializers.FloatField(allow_null=True)
    totals = serializers.DictField(child=serializers.IntegerField())
    evidence = serializers.BooleanField()
    reasons = serializers.ListField(child=serializers.CharField(allow_blank=True))
    created_at = serializers.DateTimeField()


class TestResultsSerializer(serializers.Serializer):
    run = serializers.IntegerField()
    measured = serializers.BooleanField(help_text="false: test_debug has not measured yet")
    base_commit = serializers.CharField(allow_null=True)
    head_commit = serializers.CharField(allow_null=True)
    count = serializers.IntegerField(help_text="the number of results (complete, not paged)")
    results = TestResultSerializer(many=True)
    runs = TestRecordSerializer(many=True, help_text="every measured test run, oldest first")


class TestResultsFilterSerializer(serializers.Serializer):
    change = serializers.ChoiceField(
        choices=[
            "newly_failing",
            "newly_passing",
            "still_failing",
            "removed",
            "added",
            "unchanged",
        ],
        required=False,
        help_text="only the tests whose outcome changed so",
    )


class RunPageSerializer(serializers.Serializer):
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = RunSerializer(many=True)


class RoleModelSerializer(serializers.Serializer):
    model = serializers.CharField(allow_null=True)
    backend = serializers.CharField(allow_null=True)


class ExplainStageSerializer(serializers.Serializer):
    stage = serializers.ChoiceField(choices=STAGE_CHOICES)
    position = serializers.IntegerField()
    depends_on = serializers.ListField(child=serializers.CharField())
    consensus_free = serializers.BooleanField()
    staggered_opening = serializers.BooleanField(
        help_text="the opening proponent goes first so the other two read its cached "
        "prompt prefix (cache_stagger on, one priced model): +1 call of latency"
    )
    roles = serializers.DictField(
        child=RoleModelSerializer(), help_text=f"role ({', '.join(ROLES)}) -> model"
    )


class ExplainTestsSerializer(serializers.Serializer):
    command = serializers.CharField(allow_null=True, help_text="what test_debug will run")
    source = serializers.CharField(allow_null=True, help_text="request, .tekton.toml or detected")
    problem = serializers.CharField(
        allow_blank=True, help_text="why no command was found (test_debug will block)"
    )
    isolation = serializers.CharField(help_text="bwrap, or none when an operator turned it off")


class ExplainStageForecastSerializer(serializers.Serializer):
    stage = serializers.ChoiceField(choices=STAGE_CHOICES)
    basis = serializers.CharField(help_text="history (N runs) or estimate (N calls)")
    calls = serializers.IntegerField()
    tokens = serializers.IntegerField(help_text="median (or the estimate)")
    tokens_p90 = serializers.IntegerField()
    cost_usd = serializers.FloatField()
    cost_usd_p90 = serializers.FloatField()


class ExplainForecastSerializer(serializers.Serializer):
    stages = ExplainStageForecastSerializer(many=True)
    tokens = serializers.IntegerField()
    tokens_p90 = serializers.IntegerField()
    cost_usd = serializers.FloatField()
    cost_usd_p90 = serializers.FloatField()
    warnings = serializers.ListField(
        child=serializers.CharField(), help_text="the forecast exceeds the run's budget"
    )


class ExplainSerializer(serializers.Serializer):
    goal = serializers.CharField()
    repo = serializers.CharField()
    profile = serializers.CharField()
    rounds = serializers.IntegerField()
    quorum = serializers.FloatField()
    threshold = serializers.FloatField()
    cache_stagger = serializers.BooleanField(
        help_text="the profile's setting: on a debate stage whose three debaters use one "
        "priced model, the opening round is staggered for the prompt cache (+1 call of "
        "latency per debate stage); each stage's staggered_opening says where it applies"
    )
    cache_stagger_note = serializers.CharField(help_text="what cache_stagger does here, a line")
    tests = ExplainTestsSerializer()
    stages = ExplainStageSerializer(many=True)
    forecast = ExplainForecastSerializer(help_text="expected tokens and cost, per stage")


class TranscriptMessageSerializer(serializers.Serializer):
    seq = serializers.IntegerField()
    role = serializers.CharField()
    model = serializers.CharField(allow_blank=True)
    position = serializers.CharField(
        allow_null=True, help_text="the debater's position (or the mediator's rationale)"
    )
    self_confidence = serializers.FloatField(allow_null=True)
    vote = serializers.JSONField(
        allow_null=True, help_text="{approve, reason} on the proposal in hand"
    )
    answer = serializers.JSONField(help_text="the whole validated answer")
    created_at = serializers.DateTimeField()


class TranscriptRoundSerializer(serializers.Serializer):
    attempt = serializers.IntegerField()
    round = serializers.IntegerField()
    label = serializers.CharField(help_text="opening, debate N or mediator")
    messages = TranscriptMessageSerializer(many=True)


class TranscriptStageSerializer(serializers.Serializer):
    stage = serializers.CharField()
    status = serializers.CharField()
    attempt = serializers.IntegerField()
    confidence = serializers.FloatField(allow_null=True)
    approval = serializers.FloatField(allow_null=True)
    votes = VoteSerializer(many=True, help_text="the votes the quorum was computed from")
    mediator = serializers.JSONField()
    rounds = TranscriptRoundSerializer(many=True)


class TranscriptSerializer(serializers.Serializer):
    run = serializers.IntegerField()
    stages = TranscriptStageSerializer(many=True)


# --- search ---------------------------------------------------------------------------------


class SearchChunkSerializer(serializers.Serializer):
    path = serializers.CharField()
    start_line = serializers.IntegerField()
    end_line = serializers.IntegerField()
    location = serializers.CharField(help_text="path:start-end")
    symbol = serializers.CharField(allow_blank=True)
    language = serializers.CharField(allow_blank=True)
    score = serializers.FloatField(help_text="Reciprocal-rank-fused score; higher is closer.")
    text = serializers.CharField(
        allow_blank=True, help_text="The chunk (its first 1,200 characters)."
    )


class SearchLessonSerializer(serializers.Serializer):
    text = serializers.CharField()
    run_id = serializers.IntegerField()
    stage = serializers.CharField()
    kind = serializers.CharField(help_text="blocked, review, test_fix or retry_note")
    outcome = serializers.CharField(allow_blank=True)
    score = serializers.FloatField()
    source = serializers.CharField(help_text="run <id> / <stage>")


class SearchResultSerializer(serializers.Serializer):
    query = serializers.CharField()
    repo = serializers.CharField()
    commit = serializers.CharField(allow_null=True, help_text="The commit searched.")
    warning = serializers.CharField(
        allow_null=True,
        help_text="Set when the index could not answer (down, not built, retrieval off): "
        "the lists are then empty or partial.",
    )
    chunks = SearchChunkSerializer(many=True)
    lessons = SearchLessonSerializer(many=True, help_text="Only from runs you may see.")
