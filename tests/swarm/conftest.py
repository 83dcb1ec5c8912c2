"""Fixtures for the engine's tests: real temporary git repositories, a scripted completer,
and known-good artifacts. No database, no network."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from swarm.context import StageConfig, StageInput
from swarm.providers.base import Completion, CompletionRequest, Usage
from swarm.repo import repo_facts
from swarm.stages import ROLES

GIT_ID = ["-c", "user.name=Tekton Test", "-c", "user.email=test@tekton.invalid"]


def git(path: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", *GIT_ID, *args], cwd=path, capture_output=True, text=True, check=True
    )
    return proc.stdout


def make_repo(path: Path, files: dict[str, str], *, commit: bool = True) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    for name, text in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    if files:
        git(path, "add", "-A")
    if commit and files:
        git(path, "commit", "-q", "-m", "initial")
    return path


SAMPLE_FILES = {
    "README.md": "# Sample\n\nA small service used by the engine tests.\n",
    "app/main.py": "def health():\n    return 'ok'\n",
    "app/util.js": "export const x = 1;\n",
    "tests/test_main.py": "from app.main import health\n\n\ndef test_health():\n    assert health() == 'ok'\n",
}


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", SAMPLE_FILES)


@pytest.fixture
def facts(git_repo: Path):
    return repo_facts(git_repo)


def stage_input(facts, stage: str = "plan", **kw: Any) -> StageInput:
    return StageInput(
        stage=stage,
        goal=kw.pop("goal", "Add a /health endpoint"),
        repo=facts,
        prior_artifacts=kw.pop("prior_artifacts", {}),
        **kw,
    )


def config(**kw: Any) -> StageConfig:
    models = kw.pop("models", {role: f"test/{role}" for role in ROLES})
    return StageConfig(models=models, **kw)


def valid_artifacts() -> dict[str, dict[str, Any]]:
    """One schema-valid artifact per stage (the code diff adds docs/note.md)."""
    diff = (
        "diff --git a/docs/note.md b/docs/note.md\n"
        "new file mode 100644\n"
        "--- /dev/null\n"
        "+++ b/docs/note.md\n"
        "@@ -0,0 +1,2 @@\n"
        "+# Note\n"
        "+Health endpoint plan.\n"
    )
    return {
        "plan": {
            "goals": ["health endpoint"],
            "milestones": ["m1"],
            "acceptance_criteria": ["GET /health returns 200"],
            "risks": ["none"],
            "slos": ["99.9%"],
            "dri": "alice",
            "timeline": "1 week",
            "confidence": 0.8,
        },
        "research": {
            "options": [{"name": "flask route", "pros": ["small"], "cons": [], "links": []}],
            "decision_matrix": [{"option": "flask route", "fit": 0.9}],
            "chosen": "flask route",
            "citations": [],
            "confidence": 0.8,
        },
        "plan_update": {
            "items": [
                {
                    "item_id": "T1",
                    "task": "route",
                    "rationale": "r",
                    "dependencies": [],
                    "owner": None,
                },
                {
                    "item_id": "T2",
                    "task": "test",
                    "rationale": "r",
                    "dependencies": ["T1"],
                    "owner": "bob",
                },
            ],
            "plan_version": "2",
            "confidence": 0.8,
        },
        "code": {
            "diff": diff,
            "files_changed": ["docs/note.md"],
            "commands_run": [],
            "tests_executed": [],
            "risk_notes": [],
            "confidence": 0.8,
        },
        "review": {
            "status": "ok",
            "issues": [],
            "fixlist": [],
            "risks": [],
            "dissent": [],
            "confidence": 0.8,
        },
        "threat": {
            "dfd": "client -> app",
            "risks": [],
            "mitigations": [],
            "controls": [],
            "rollback_plan": "revert",
            "compliance": {},
            "confidence": 0.8,
        },
        "integrate": {
            "flags": [],
            "migrations": [],
            "config_map": {},
            "rollback": "revert",
            "confidence": 0.8,
        },
        "test_debug": {
            "ship": True,
            "junit_path": None,
            "coverage": {"lines": 0.9},
            "flakes": [],
            "confidence": 0.8,
            "generated_at": "2025-01-02T03:04:05+00:00",
        },
        "release": {
            "environment": "staging",
            "version": "1.2.3",
            "canary_metrics": {},
            "health": "green",
            "rollback_cmds": ["git revert HEAD"],
            "links": [],
            "confidence": 0.8,
        },
    }


def debater_answer(approve: bool = True, conf: float = 0.8, **kw: Any) -> dict[str, Any]:
    answer = {
        "position": kw.pop("position", "do it"),
        "score": {
            k: 0.7 for k in ("correctness", "stack_fit", "ops_risk", "reversibility", "recency")
        },
        "risks": [],
        "checks": [],
        "self_confidence": conf,
        "dissent": None,
        "vote": {"approve": approve, "reason": "because"},
    }
    answer.update(kw)
    return answer


def mediator_answer(
    artifact: dict[str, Any], confidence: float = 0.85, **kw: Any
) -> dict[str, Any]:
    answer = {
        "artifact": artifact,
        "status": "approve",
        "rationale": "agreed",
        "dissent": [],
        "risks": [],
        "checklist": [],
        "confidence": confidence,
        "votes": [],
        "loops_run": 2,
    }
    answer.update(kw)
    return answer


Handler = Callable[[CompletionRequest], Any]


class ScriptedCompleter:
    """Answers each request with `handler(request)`: a dict (sent as JSON text), a str
    (sent as is) or an exception (raised). Counts calls in flight to prove concurrency."""

    name = "scripted"

    def __init__(self, handler: Handler):
        self.handler = handler
        self.requests: list[CompletionRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def complete(self, request: CompletionRequest) -> Completion:
        self.requests.append(request)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            # Yield twice so every sibling started by gather gets to this point first.
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            result = self.handler(request)
        finally:
            self.in_flight -= 1
        if isinstance(result, BaseException):
            raise result
        text = result if isinstance(result, str) else json.dumps(result)
        return Completion(
            text=text,
            parsed=None,
            usage=Usage(input_tokens=100, output_tokens=10),
            cost_usd=0.001,
            latency_s=0.0,
            provider=self.name,
            model=request.model,
        )


def by_kind(
    *,
    debaters: Callable[[str, int], Any] | None = None,
    mediator: Callable[[int], Any] | None = None,
    stage: str = "plan",
) -> Handler:
    """A handler routing on request metadata. `mediator(n)` gets the mediator call number
    (0 first, 1 the repair); `debaters(role, round)` answers debaters (repairs included)."""
    artifacts = valid_artifacts()
    counter = {"mediator": 0}

    def handle(request: CompletionRequest) -> Any:
        meta = request.metadata
        if meta["role"] == "mediator":
            n = counter["mediator"]
            counter["mediator"] += 1
            return mediator(n) if mediator else mediator_answer(artifacts[stage])
        return debaters(meta["role"], meta["round"]) if debaters else debater_answer()

    return handle
