"""Schemas of the nine stage artifacts and of the agents' answers (REQUIREMENTS.md 1 and 2).

Every model ignores extra keys (models often add some) but is strict about the declared
ones: a string is not a number, "true" is not a boolean. Every artifact carries
`offline: bool = False` so output of the offline backend says so.

Scores and confidences are floats in [0, 1] everywhere, including the debater's
five-part score (not 0..10), so one scale reads the same in every view.
"""

from __future__ import annotations

import copy
import functools
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from swarm.diffs import DiffInvalid, diff_paths
from swarm.stages import STAGE_NAMES, UnknownStageError

Confidence = Field(ge=0.0, le=1.0)


class ArtifactInvalid(ValueError):
    """Data that does not validate against a stage's artifact (or an agent's answer) schema.

    The message is short and readable: one `path: problem` per line-ish item.
    """

    def __init__(self, message: str, *, errors: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.errors = errors or []


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class _Artifact(_Strict):
    offline: bool = False


# --- 1 plan -------------------------------------------------------------------------------
class PlanArtifact(_Artifact):
    goals: list[str] = Field(min_length=1)
    milestones: list[str]
    acceptance_criteria: list[str]
    risks: list[str]
    slos: list[str]
    dri: str
    timeline: str
    confidence: float = Confidence


# --- 2 research ---------------------------------------------------------------------------
class ResearchOption(_Strict):
    name: str = Field(min_length=1)
    pros: list[str]
    cons: list[str]
    links: list[str]


class ResearchArtifact(_Artifact):
    options: list[ResearchOption] = Field(min_length=1)
    decision_matrix: list[dict[str, Any]]
    chosen: str = Field(min_length=1)
    citations: list[str]
    freshness_window_days: int = Field(default=120, ge=1)
    confidence: float = Confidence

    @model_validator(mode="after")
    def _chosen_is_an_option(self) -> ResearchArtifact:
        names = [o.name for o in self.options]
        if self.chosen not in names:
            raise ValueError(f"chosen {self.chosen!r} is not one of the options {names}")
        return self


# --- 3 plan_update ------------------------------------------------------------------------
class BacklogItem(_Strict):
    item_id: str = Field(min_length=1)
    task: str = Field(min_length=1)
    rationale: str
    dependencies: list[str]
    owner: str | None


class BacklogArtifact(_Artifact):
    items: list[BacklogItem] = Field(min_length=1)
    plan_version: str
    confidence: float = Confidence

    @model_validator(mode="after")
    def _dependencies_exist(self) -> BacklogArtifact:
        ids = {i.item_id for i in self.items}
        missing = sorted({d for i in self.items for d in i.dependencies if d not in ids})
        if missing:
            raise ValueError(f"dependencies name unknown item_ids: {', '.join(missing)}")
        return self


# --- 4 code -------------------------------------------------------------------------------
class CodeArtifact(_Artifact):
    diff: str  # unified diff text; empty only when files_changed is empty too
    files_changed: list[str]
    commands_run: list[str]
    tests_executed: list[str]
    risk_notes: list[str]
    confidence: float = Confidence
    # Filled by Tekton once the change is committed, never asked of a model: the branch,
    # base and head commits, the diff's sha256, how it applied.
    workspace: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _files_match_diff(self) -> CodeArtifact:
        if not self.diff.strip():
            if self.files_changed:
                raise ValueError("diff is empty but files_changed lists files")
            return self
        if "\n+++ " not in "\n" + self.diff or "@@" not in self.diff:
            raise ValueError("diff is not a unified diff (needs ---/+++ headers and @@ hunks)")
        try:
            in_diff = set(diff_paths(self.diff))
        except DiffInvalid as exc:
            raise ValueError(str(exc)) from None
        if set(self.files_changed) != in_diff:
            raise ValueError(
                f"files_changed {sorted(self.files_changed)} does not match the diff's files "
                f"{sorted(in_diff)}"
            )
        return self


# --- 5 review -----------------------------------------------------------------------------
class ReviewArtifact(_Artifact):
    status: Literal["ok", "revise", "block"]
    issues: list[str]
    fixlist: list[str]
    risks: list[str]
    dissent: list[str]
    confidence: float = Confidence


# --- 6 threat -----------------------------------------------------------------------------
class ThreatArtifact(_Artifact):
    dfd: str = Field(min_length=1)
    risks: list[str]
    mitigations: list[str]
    controls: list[str]
    rollback_plan: str
    compliance: dict[str, Any]
    confidence: float = Confidence


# --- 7 integrate --------------------------------------------------------------------------
class IntegrationArtifact(_Artifact):
    flags: list[str]
    migrations: list[str]
    config_map: dict[str, Any]
    rollback: str
    confidence: float = Confidence


# --- 8 test_debug -------------------------------------------------------------------------
class TestReportArtifact(_Artifact):
    __test__ = False  # not a pytest test class despite the name

    ship: bool
    junit_path: str | None
    coverage: dict[str, Any]
    flakes: list[str]
    confidence: float = Confidence
    # Computed by Tekton from the tests it ran (base and branch), never asked of a model.
    evidence: dict[str, Any] | None = None
    generated_at: str

    @field_validator("generated_at")
    @classmethod
    def _iso_datetime(cls, value: str) -> str:
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"not an ISO 8601 datetime: {value!r}") from None
        return value


# --- 9 release ----------------------------------------------------------------------------
class ReleaseArtifact(_Artifact):
    environment: str = Field(min_length=1)
    version: str = Field(min_length=1)
    canary_metrics: dict[str, Any]
    health: str
    rollback_cmds: list[str]
    links: list[str]
    confidence: float = Confidence


ARTIFACT_MODELS: dict[str, type[BaseModel]] = {
    "plan": PlanArtifact,
    "research": ResearchArtifact,
    "plan_update": BacklogArtifact,
    "code": CodeArtifact,
    "review": ReviewArtifact,
    "threat": ThreatArtifact,
    "integrate": IntegrationArtifact,
    "test_debug": TestReportArtifact,
    "release": ReleaseArtifact,
}
assert tuple(ARTIFACT_MODELS) == STAGE_NAMES  # every stage has exactly one schema


# --- agents' answers ----------------------------------------------------------------------
class DebaterScore(_Strict):
    correctness: float = Confidence
    stack_fit: float = Confidence
    ops_risk: float = Confidence
    reversibility: float = Confidence
    recency: float = Confidence


class DebaterVote(_Strict):
    approve: bool
    reason: str


class DebaterAnswer(_Strict):
    """One debater's answer in one round. `vote` is its vote on the proposal in hand (the
    proponent's latest position); a debater that gives none casts no vote that round."""

    position: str = Field(min_length=1)
    score: DebaterScore
    risks: list[str]
    checks: list[str]
    self_confidence: float = Confidence
    dissent: str | None = None
    vote: DebaterVote | None = None


class MediatorAnswer(_Strict):
    """The mediator's reconciliation. `votes` is informational only: quorum is computed in
    code from the debaters' own votes."""

    artifact: dict[str, Any]
    status: Literal["approve", "revise", "block"]
    rationale: str
    dissent: list[str]
    risks: list[str]
    checklist: list[str]
    confidence: float = Confidence
    votes: list[Any] = Field(default_factory=list)
    loops_run: int = Field(default=0, ge=0)


# --- helpers ------------------------------------------------------------------------------
def _model_for(stage: str) -> type[BaseModel]:
    try:
        return ARTIFACT_MODELS[stage]
    except KeyError:
        raise UnknownStageError(
            f"unknown stage {stage!r}; stages are: {', '.join(STAGE_NAMES)}"
        ) from None


# Facts Tekton measures or computes rather than asks of a model (REQUIREMENTS: a constraint
# the validator checks is either in the model's schema or filled by artifact_complete):
# the schema a model is given leaves these out.
TEKTON_FILLED = ("workspace", "evidence", "generated_at", "files_changed", "chosen")

# What no JSON Schema can say and Tekton cannot compute: the diff must parse. A model that
# writes a broken diff gets the repair round (and the patch check), never a silent fix.
UNSAYABLE = {"code": {"diff": "must be a unified diff whose files the change touches"}}


def artifact_complete(stage: str, data: Any, *, now: datetime | None = None) -> Any:
    """A model's artifact with what Tekton fills in, ready for artifact_validate.

    Drops what a model must not claim (workspace, evidence: Tekton's own measurements) and
    fills what a schema cannot constrain: `generated_at` is the time Tekton received the
    report, `files_changed` the diff's own paths, research's `chosen` the option the model
    named when it named one, else the first (options come best first), and plan_update's
    dependencies on no item are dropped. Anything that is not an object is left for
    artifact_validate to refuse.
    """
    if not isinstance(data, dict):
        return data
    filled = {k: v for k, v in data.items() if k not in ("workspace", "evidence")}
    if stage == "test_debug":
        filled["generated_at"] = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    elif stage == "code" and isinstance(filled.get("diff"), str):
        try:
            filled["files_changed"] = diff_paths(filled["diff"]) if filled["diff"].strip() else []
        except DiffInvalid:
            pass  # artifact_validate names the broken diff
    elif stage == "research" and isinstance(filled.get("options"), list):
        names = [o.get("name") for o in filled["options"] if isinstance(o, dict)]
        if filled.get("chosen") not in names and names:
            filled["chosen"] = names[0]
    elif stage == "plan_update" and isinstance(filled.get("items"), list):
        items = [i for i in filled["items"] if isinstance(i, dict)]
        ids = {i.get("item_id") for i in items}
        filled["items"] = [
            {**i, "dependencies": [d for d in i["dependencies"] if d in ids]}
            if isinstance(i.get("dependencies"), list)
            else i
            for i in items
        ]
    return filled


# Building a JSON Schema walks the whole model; a stage asks for the same ones ten times.
# The cached copies are never handed out: callers get their own (they may edit them).
@functools.cache
def _artifact_schema(stage: str) -> dict[str, Any]:
    schema = _model_for(stage).model_json_schema()
    for name in TEKTON_FILLED:
        schema.get("properties", {}).pop(name, None)
        if name in schema.get("required", []):
            schema["required"].remove(name)
    if stage == "research":
        schema["properties"]["options"]["description"] = (
            "best first: the first option is the one chosen"
        )
    if stage == "code":
        schema["properties"]["diff"]["description"] = (
            "a unified diff (---/+++ headers, @@ hunks) against the workspace, or empty"
        )
    return schema


@functools.cache
def _mediator_schema(stage: str) -> dict[str, Any]:
    schema = MediatorAnswer.model_json_schema()
    inner = copy.deepcopy(_artifact_schema(stage))
    defs = {**schema.get("$defs", {}), **inner.pop("$defs", {})}
    schema["properties"]["artifact"] = inner
    if defs:
        schema["$defs"] = defs
    return schema


@functools.cache
def _debater_schema() -> dict[str, Any]:
    return DebaterAnswer.model_json_schema()


def artifact_json_schema(stage: str) -> dict[str, Any]:
    """The JSON Schema of `stage`'s artifact, as providers' structured-output modes take it."""
    return copy.deepcopy(_artifact_schema(stage))


def mediator_json_schema(stage: str) -> dict[str, Any]:
    """MediatorAnswer's JSON Schema with the stage's artifact schema embedded as `artifact`."""
    return copy.deepcopy(_mediator_schema(stage))


def debater_json_schema() -> dict[str, Any]:
    return copy.deepcopy(_debater_schema())


def format_errors(exc: ValidationError, *, prefix: str = "", limit: int = 8) -> str:
    """`path: problem; path: problem` for the first `limit` errors, short enough for a reason."""
    parts = []
    for err in exc.errors()[:limit]:
        loc = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "") or "(root)"
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}")
    more = len(exc.errors()) - limit
    if more > 0:
        parts.append(f"... and {more} more")
    return "; ".join(parts)


def artifact_validate(stage: str, data: Any) -> dict[str, Any]:
    """Validate `data` as `stage`'s artifact; return it as JSON-ready data.

    Raises ArtifactInvalid (listing field paths and problems) and UnknownStageError.
    """
    model = _model_for(stage)
    if not isinstance(data, dict):
        raise ArtifactInvalid(f"{stage} artifact must be a JSON object, got {type(data).__name__}")
    try:
        return model.model_validate(data).model_dump(mode="json")
    except ValidationError as exc:
        raise ArtifactInvalid(
            f"{stage} artifact invalid: {format_errors(exc)}", errors=exc.errors()
        ) from None


def answer_validate(model: type[BaseModel], data: Any, *, what: str) -> dict[str, Any]:
    """Validate an agent's answer (DebaterAnswer, MediatorAnswer); same errors as above."""
    if not isinstance(data, dict):
        raise ArtifactInvalid(f"{what} must be a JSON object, got {type(data).__name__}")
    try:
        return model.model_validate(data).model_dump(mode="json")
    except ValidationError as exc:
        raise ArtifactInvalid(
            f"{what} invalid: {format_errors(exc)}", errors=exc.errors()
        ) from None
