"""What goes into a stage and what comes out: the engine's whole contract with its caller.

runs/execution.py builds a StageInput and StageConfig from the database, calls
`swarm.debate.stage_run(...)`, and records the StageOutcome. Nothing here knows Django.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from swarm.stages import DEBATER_ROLES


@dataclass(frozen=True)
class RepoFacts:
    """Real facts about the target repository (swarm.repo.repo_facts builds them)."""

    path: str
    branch: str | None
    head: str | None  # commit sha, None for a repository with no commits
    is_dirty: bool
    changed_files: tuple[str, ...]
    files: tuple[str, ...]  # tracked files, capped (see repo_facts)
    file_count: int
    languages: dict[str, int]  # language -> file count
    test_paths: tuple[str, ...]  # files and folders that look like tests
    readme_excerpt: str = ""


@dataclass(frozen=True)
class Lesson:
    """Something learned in an earlier run that the stage should see."""

    text: str
    source: str  # e.g. "run 12 / review"
    score: float = 0.0


class LessonsProvider(Protocol):
    """Retrieval hook: lessons from earlier runs and chunks of the repository.

    swarm.retrieval.MilvusLessons answers by meaning from the index; runs/lessons.py from
    run history when retrieval is off.
    """

    def lessons_for(
        self, *, goal: str, stage: str, repo_path: str, limit: int = 5
    ) -> list[Lesson]: ...


@dataclass(frozen=True)
class StageInput:
    stage: str
    goal: str
    repo: RepoFacts
    prior_artifacts: dict[
        str, dict[str, Any]
    ]  # stage name -> its full artifact, earlier stages only
    lessons: tuple[Lesson, ...] = ()
    note: str = ""  # a person's note when the stage is retried
    attempt: int = 1
    run_id: int | None = None
    # Repository work the stage reasons over, all computed by Tekton, never by a model:
    # the run's branch and how the code stage's change applied ({branch, base, head,
    # applied, files, ...}), the test evidence once test_debug measured it, and the
    # contents of the files the code stage is about to change.
    workspace: dict[str, Any] | None = None
    evidence: dict[str, Any] | None = None
    files_text: str = ""
    # The code-facing stages: the repository chunks retrieval found nearest the goal and
    # the backlog, with their path:lines, best first (swarm.retrieval.CodeSearch.render).
    code_context: str = ""


@dataclass(frozen=True)
class StageConfig:
    models: dict[str, str]  # role -> vendor/model id, for this stage
    rounds: int = 2  # debate rounds after the opening round
    quorum: float = 2 / 3  # weighted approval needed
    threshold: float = 0.70  # mediator confidence needed
    consensus_free: bool = False
    max_tokens: int = 4096
    temperature: float = 0.2
    timeout: float = 120.0
    # What is left of the run's budgets when the stage starts; None = unlimited. The
    # engine keeps to them when its caller passes no shared budget (swarm.budget).
    budget_tokens: int | None = None
    budget_cost_usd: float | None = None
    # Benchmarks only: run every call one after another, as the predecessor did.
    sequential: bool = False
    # On one priced model: the opening proponent goes first and the stage's calls share
    # one answer-tools list, so the others and the mediator read its cached prefix (one
    # call's latency more per stage). Off (run config "cache_stagger": false): all three
    # open at once, each call offered its own answer schema only.
    cache_stagger: bool = True
    # Ask providers for streamed answers (published as deltas while they are written).
    # Off (run config "stream": false): one plain call each, no deltas; what is stored
    # is the same either way.
    stream: bool = True
    # A debater's turn makes at most this many tool calls; then it must answer.
    max_tool_calls: int = 8
    # How many times a diff that does not apply goes back with the error before the
    # stage blocks (like the mediator's repair).
    apply_repairs: int = 1


def opening_staggered(
    models: dict[str, str | None],
    price_of: Callable[[str], tuple[float, float] | None],
    *,
    cache_stagger: bool,
    sequential: bool = False,
) -> bool:
    """Whether a debate stage whose debaters use `models` (role -> model) staggers its
    opening round: on, not sequential, the three on one model and that model priced
    above 0 where it is answered (`price_of`). Also what --explain says of each stage."""
    if not cache_stagger or sequential:
        return False
    model = models.get(DEBATER_ROLES[0])
    if not model or any(models.get(role) != model for role in DEBATER_ROLES):
        return False
    price = price_of(model)  # None: unpriced, so no saving to show for the wait
    return price is not None and price[0] > 0


@dataclass(frozen=True)
class Vote:
    role: str
    approve: bool
    self_confidence: float  # its weight in the quorum
    reason: str = ""


@dataclass
class StageOutcome:
    status: Literal["succeeded", "blocked"]
    reason: str  # why it blocked, or a one-line summary of why it passed
    artifact: dict[str, Any] | None  # validated artifact (JSON-ready), None if none validated
    patch: str | None = None  # code stage: the unified diff
    confidence: float | None = None
    votes: list[Vote] = field(default_factory=list)
    approval: float | None = None  # weighted approval in [0, 1]
    mediator: dict[str, Any] = field(
        default_factory=dict
    )  # rationale, dissent, risks, checklist, loops_run
    checks: list[dict[str, Any]] = field(
        default_factory=list
    )  # consensus-free: [{name, ok, detail}]
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    # Blocked because the run's token or cost budget is reached (reason says how far).
    budget_reached: bool = False


class StageWork(Protocol):
    """What a stage may do with the repository; the caller builds it (runs/stage_work.py)
    and every method may be missing (None): the engine then does without.

    - `tools`: the stage's tools (swarm.tools.StageTools: `.definitions`, `.turn(role)`).
    - `apply_patch(diff) -> (ok, detail)`: apply the code stage's diff to the workspace
      (blocking; the engine calls it in a thread).
    - `test_evidence() -> dict`: test_debug runs the tests on the base and on the branch
      and returns the evidence (swarm.testing.TestEvidence.to_dict(); blocking).
    - `workdir`: where command-line backends run (the workspace), or None.
    """

    tools: Any
    workdir: str | None

    def apply_patch(self, diff: str) -> tuple[bool, str]: ...

    def test_evidence(self) -> dict[str, Any]: ...


class StageCancelled(Exception):
    """The caller asked the stage to stop (the run was cancelled)."""


class BudgetExceeded(Exception):
    """The run's token or cost budget is reached ("budget reached: 412,000 of 400,000
    tokens"): the stage blocks with this message until a person raises the budget."""
