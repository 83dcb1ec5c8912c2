"""A run whose change is delivered, made fast: a real workspace and a real branch in a
real repository (swarm.workspace, as the code stage does), the code stage's patch, the
test evidence computed by swarm.testing.evidence_compare from two recorded test runs
(what test_debug stores, without running a sandbox), and a review verdict."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from runs.models import Artifact, Run, TestRunRecord
from runs.stage_work import run_workspace
from swarm.testing import TestRun, evidence_compare

FIX = (
    "diff --git a/src/app.py b/src/app.py\n"
    "--- a/src/app.py\n+++ b/src/app.py\n"
    "@@ -1,2 +1,6 @@\n def add(a: int, b: int) -> int:\n     return a + b\n"
    "+\n+\n+def sub(a: int, b: int) -> int:\n+    return a - b\n"
)
BASE_OUTCOMES = {
    "tests.test_app::test_add": "passed",
    "tests.test_app::test_sub": "failed",
    "tests.test_app::test_mul": "passed",
    "tests.test_app::test_old": "passed",
}
BRANCH_OUTCOMES = {
    "tests.test_app::test_add": "passed",
    "tests.test_app::test_sub": "passed",
    "tests.test_app::test_mul": "failed",
    "tests.test_app::test_new": "passed",
}


def _totals(outcomes: dict[str, str]) -> dict[str, int]:
    values = list(outcomes.values())
    return {
        "tests": len(values),
        "passed": values.count("passed"),
        "failed": values.count("failed"),
        "errors": values.count("error"),
        "skipped": values.count("skipped"),
    }


def test_run_of(outcomes: dict[str, str], messages: dict[str, str]) -> TestRun:
    return TestRun(
        command="pytest -q",
        source="detected",
        exit_code=1 if "failed" in outcomes.values() else 0,
        timed_out=False,
        duration_s=0.5,
        totals=_totals(outcomes),
        outcomes=dict(outcomes),
        coverage={"totals": {}, "files": {"src/app.py": {"executed": [1, 2, 5], "missing": [6]}}},
        isolation={"isolation": "bwrap", "network": "off"},
        stdout_tail="",
        stderr_tail="",
        evidence=True,
        messages=dict(messages),
    )


test_run_of.__test__ = False  # type: ignore[attr-defined]


def deliver(run: Run, *, review: str = "revise", diff: str = FIX) -> Run:
    """Commit `diff` on `run`'s branch in its workspace and record the code stage's patch,
    test_debug's evidence and records, and a review artifact with status `review`."""
    workspace = run_workspace(run)
    workspace.rebuild([])
    applied = workspace.apply(diff)
    assert applied.ok, applied.error
    done = workspace.commit(f"Tekton run {run.pk}: {run.goal[:60]}")
    Run.objects.filter(pk=run.pk).update(branch=done.branch, head_commit=done.head_sha)
    run.refresh_from_db()
    sha = hashlib.sha256(diff.encode()).hexdigest()
    Artifact.objects.create(
        run=run, stage="code", kind=Artifact.Kind.PATCH, name="diff.patch",
        path=f"{run.slug}/diff.patch", sha256=sha, size=len(diff), text=diff,
    )  # fmt: skip
    base = test_run_of(BASE_OUTCOMES, {"tests.test_app::test_sub": "assert 8 == 2"})
    branch = test_run_of(BRANCH_OUTCOMES, {"tests.test_app::test_mul": "assert 5 == 6"})
    evidence = evidence_compare(base, branch, workspace.changed_lines()).to_dict()
    evidence["command"] = {"command": "pytest -q", "source": "detected"}
    Artifact.objects.create(
        run=run, stage="test_debug", kind=Artifact.Kind.JSON, name="test_report.json",
        path=f"{run.slug}/test_report.json", sha256="0" * 64, size=0,
        content={"ship": evidence["ship"], "evidence": evidence},
    )  # fmt: skip
    Artifact.objects.create(
        run=run, stage="review", kind=Artifact.Kind.JSON, name="review.json",
        path=f"{run.slug}/review.json", sha256="0" * 64, size=0,
        content={"status": review, "issues": ["name the new helper"]},
    )  # fmt: skip
    for kind, commit, measured in (
        ("base", run.base_commit, base),
        ("branch", run.head_commit, branch),
    ):
        TestRunRecord.objects.create(
            run=run, stage="test_debug", kind=kind, repo_path=run.repo_path, commit=commit,
            command_key="k", data=measured.to_dict(),
        )  # fmt: skip
    return run


def head_of(repo: Path) -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()
