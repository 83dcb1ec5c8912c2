"""The nine Diamond v5 stages: names, order, dependencies, artifact files and role briefs.

Plain data. `swarm.artifacts` holds the schemas; this module names which one each stage
writes. Dependencies form a DAG: review and threat both need only code, so they may run
side by side; every other stage needs the one before it.
"""

from __future__ import annotations

from dataclasses import dataclass

STAGE_NAMES: tuple[str, ...] = (
    "plan",
    "research",
    "plan_update",
    "code",
    "review",
    "threat",
    "integrate",
    "test_debug",
    "release",
)
DEBATER_ROLES: tuple[str, ...] = ("proponent", "skeptic", "pragmatist")
ROLES: tuple[str, ...] = (*DEBATER_ROLES, "mediator")


class UnknownStageError(ValueError):
    """A stage name that is not one of the nine."""


@dataclass(frozen=True)
class StageSpec:
    name: str
    index: int  # 1-based position in the run
    artifact_file: str  # the JSON artifact's file name (code also writes diff.patch)
    produces: str  # one line: what the stage produces
    briefs: dict[str, str]  # role -> stage-specific brief
    depends_on: tuple[str, ...]  # stages whose artifacts this one needs before it may start


_FILES = {
    "plan": "plan.json",
    "research": "research.json",
    "plan_update": "backlog.json",
    "code": "code.json",
    "review": "review.json",
    "threat": "threat.json",
    "integrate": "integration.json",
    "test_debug": "test_report.json",
    "release": "release_report.json",
}
PATCH_FILE = "diff.patch"
SUMMARY_FILE = "diamond_summary.json"

_PRODUCES = {
    "plan": "goals, milestones, acceptance criteria, risks, SLOs, DRI, timeline",
    "research": "options with pros, cons and links, a decision matrix, the choice, citations",
    "plan_update": "a backlog of owned, testable items with dependencies",
    "code": "a unified diff against the repository plus commands run, tests and risk notes",
    "review": "a verdict (ok, revise or block), issues, a fix list, risks, dissent",
    "threat": "a data-flow description, STRIDE risks, mitigations, controls, rollback plan",
    "integrate": "feature flags, migrations, a config map and a rollback",
    "test_debug": "a ship / no-ship call, the test report, coverage and flakes",
    "release": "environment, version, canary metrics, health, rollback commands, links",
}

_PROPONENT = {
    "plan": "Draft the plan: milestones and acceptance criteria that make the goal verifiable.",
    "research": "Lay out the alternatives, each with pros, cons and citations, and pick one.",
    "plan_update": "Turn the plan and the research choice into backlog items.",
    "code": "Write the change as a unified diff against the repository, with its tests.",
    "review": "Assess the diff's impact and whether it is ready to merge.",
    "threat": "Build a STRIDE threat model of the change and propose mitigations.",
    "integrate": "Define rollout steps, feature flags, migrations and smoke tests.",
    "test_debug": "Run the tests, report coverage and explain each failure.",
    "release": "Set the release cadence, the metrics to watch and the comms plan.",
}
_SKEPTIC = {
    "plan": "Attack the plan: which risks are missing, which criteria cannot be checked?",
    "research": "Question source recency and licensing; reject stale or unlicensed options.",
    "plan_update": "Find missing dependencies and items nobody can finish.",
    "code": "Hunt for bugs, performance problems and security holes in the diff.",
    "review": "Name blocking issues and gaps in test coverage.",
    "threat": "Look for leaked secrets, PII exposure and supply-chain risk.",
    "integrate": "Probe the rollback path and configuration drift between environments.",
    "test_debug": "Point out flaky tests and assertions that are missing.",
    "release": "Check on-call and incident readiness before anything ships.",
}
_PRAGMATIST = {
    "plan": "Keep it executable, reversible and timeboxed.",
    "research": "Ground the choice in a decision matrix with explicit criteria.",
    "plan_update": "Make every item owned and testable.",
    "code": "Keep the surface minimal and the rollback path obvious.",
    "review": "Turn every issue into a concrete fix.",
    "threat": "Map each mitigation to a CI gate or a runbook step.",
    "integrate": "Write the operator playbook a person follows at 2 a.m.",
    "test_debug": "Triage to ship or no-ship.",
    "release": "List the approvals and hand-offs the release needs.",
}
_MEDIATOR = (
    "Reconcile the proponent, skeptic and pragmatist into the stage's artifact. Keep what "
    "survived the debate, record unresolved dissent, and answer only with JSON that "
    "validates against the artifact schema you are given."
)

_DEPENDS = {
    "plan": (),
    "research": ("plan",),
    "plan_update": ("research",),
    "code": ("plan_update",),
    "review": ("code",),
    "threat": ("code",),
    "integrate": ("review", "threat"),
    "test_debug": ("integrate",),
    "release": ("test_debug",),
}

STAGES: dict[str, StageSpec] = {
    name: StageSpec(
        name=name,
        index=i + 1,
        artifact_file=_FILES[name],
        produces=_PRODUCES[name],
        briefs={
            "proponent": _PROPONENT[name],
            "skeptic": _SKEPTIC[name],
            "pragmatist": _PRAGMATIST[name],
            "mediator": _MEDIATOR,
        },
        depends_on=_DEPENDS[name],
    )
    for i, name in enumerate(STAGE_NAMES)
}


def stage_get(name: str) -> StageSpec:
    try:
        return STAGES[name]
    except KeyError:
        raise UnknownStageError(
            f"unknown stage {name!r}; stages are: {', '.join(STAGE_NAMES)}"
        ) from None


def stage_range(start: str = "plan", end: str = "release") -> list[str]:
    """The stage names from `start` to `end` inclusive, in run order.

    Raises UnknownStageError for a name that is not a stage, ValueError when `end`
    comes before `start`.
    """
    a, b = stage_get(start).index, stage_get(end).index
    if b < a:
        raise ValueError(f"--to {end!r} comes before --from {start!r}")
    return list(STAGE_NAMES[a - 1 : b])


def stage_dependencies(
    name: str, selected: list[str] | tuple[str, ...], *, sequential: bool = False
) -> tuple[str, ...]:
    """The stages among `selected` that `name` must wait for.

    A dependency outside the selected range counts as already available (its artifact
    comes from an earlier run or is simply absent), so the first selected stage has none.
    `sequential` (the predecessor's schedule, kept for benchmarks) chains every stage to
    the one before it, so nothing runs side by side.
    """
    if sequential:
        earlier = [s for s in selected if stage_get(s).index < stage_get(name).index]
        return (max(earlier, key=lambda s: stage_get(s).index),) if earlier else ()
    return tuple(d for d in stage_get(name).depends_on if d in selected)


def stage_ancestors(name: str) -> tuple[str, ...]:
    """The stages `name` depends on, directly or through them, in run order: the artifacts
    it reads. threat's are code's and code's own (never review's, which runs beside it)."""
    found: set[str] = set()
    todo = list(stage_get(name).depends_on)
    while todo:
        dep = todo.pop()
        if dep not in found:
            found.add(dep)
            todo.extend(stage_get(dep).depends_on)
    return tuple(s for s in STAGE_NAMES if s in found)
