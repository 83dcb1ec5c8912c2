"""What goes into a stage and what comes out: the engine's whole contract with its caller.

runs/execution.py builds a StageInput and StageConfig from the database, calls
`swarm.debate.stage_run(...)`, and records the StageOutcome. Nothing here knows Django.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol


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

    runs/lessons.py answers from run history; a Milvus-backed provider replaces it later.
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
    # What is left of the run's budgets when the stage starts; None = unlimited.
    budget_tokens: int | None = None
    budget_cost_usd: float | None = None
    # Benchmarks only: run every call one after another, as the predecessor did.
    sequential: bool = False


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


class StageCancelled(Exception):
    """The caller asked the stage to stop (the run was cancelled)."""


class BudgetExceeded(Exception):
    """The run's token or cost budget ran out; the run fails with this message."""
