"""A stage's repository work: its workspace (a git worktree of the run's base commit plus
the change the code stage made), the agents' tools over it, the sandbox commands and tests
run in, applying and committing the code stage's diff, and test_debug's evidence.

The database is the record: the workspace is rebuilt from the run's base commit and the
patch stored as the code stage's artifact, so any worker that has the repository at the
same path can run any stage, and a worker killed mid-stage leaves nothing the next
attempt trips on (`rebuild` resets whatever it left). Test runs are stored as
TestRunRecord rows; a base commit's are reused by (repository, commit, command).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings

from runs.models import Artifact, Run, StageRun, TestRunRecord
from runs.retrieval import code_searcher
from runs.selectors import runs_workspace_owners
from swarm.redact import redact
from swarm.sandbox import Sandbox, SandboxLimits, SandboxUnavailable, sandbox_probe
from swarm.testing import (
    TestCommand,
    TestCommandError,
    TestRun,
    evidence_compare,
    test_command_resolve,
    test_run,
)
from swarm.tools import StageTools, files_for_prompt
from swarm.workspace import Workspace, WorkspaceError, workspaces_prune

logger = logging.getLogger("tekton.runs.stage_work")

FILES_BUDGET_CHARS = 24_000  # file contents the code stage's prompt carries
CHANGED_FILES_SHOWN = 50


class StageWorkBlocked(Exception):
    """The stage cannot do its repository work here; the message is the blocked reason."""


def run_workspace(run: Run) -> Workspace:
    """The run's workspace (no I/O until used)."""
    return Workspace(
        repo=run.repo_path,
        base=run.base_commit,
        run_name=run.name,
        root=settings.TEKTON_WORKSPACE_ROOT,
    )


def run_patch(run: Run) -> str | None:
    """The code stage's stored change of this run, if it wrote one."""
    text = (
        Artifact.objects.filter(run=run, stage="code", kind=Artifact.Kind.PATCH)
        .values_list("text", flat=True)
        .first()
    )
    return text or None


# Whether bwrap works is the machine's, not the stage's: a process probes it once a
# minute, not before every stage (a probe starts a sandbox, ~15 ms of each stage's time).
# A failed probe is not kept: the next stage tries again.
PROBE_TTL_S = 60.0
_probed: tuple[float, tuple[bool, str]] | None = None
_clock = time.monotonic


def sandbox_state() -> tuple[bool, str]:
    """(usable, why not) for the configured sandbox. An operator's TEKTON_SANDBOX=none is
    usable (unisolated, and every report says so)."""
    global _probed
    if settings.TEKTON_SANDBOX == "none":
        return True, ""
    now = _clock()
    if _probed is not None and now - _probed[0] < PROBE_TTL_S:
        return _probed[1]
    state = sandbox_probe()
    _probed = (now, state) if state[0] else None
    return state


def sandbox_limits(run: Run) -> SandboxLimits:
    return SandboxLimits(**(run.config or {}).get("sandbox_limits", {}))


def _key(command: TestCommand) -> str:
    return hashlib.sha256(command.key.encode("utf-8")).hexdigest()


def evidence_none(reason: str) -> dict[str, Any]:
    """Evidence when the tests could not run at all: no ship, and why."""
    return {
        "ship": False,
        "reasons": [reason],
        "base": {},
        "branch": {},
        "newly_failing": [],
        "newly_passing": [],
        "still_failing": [],
        "removed": [],
        "changed_coverage": None,
        "hints": [],
        "isolation": {"isolation": settings.TEKTON_SANDBOX},
    }


@dataclass
class RunStageWork:
    """swarm.context.StageWork for one stage of one run (built by `stage_work_build`)."""

    run: Run
    stage: StageRun
    workspace: Workspace
    tools: StageTools | None
    patch: str | None  # the change the workspace holds for this stage (None: the base)
    sandbox_ok: bool
    sandbox_reason: str
    applied: dict[str, Any] = field(default_factory=dict)
    # test_debug: runs of the base commit measured before (by any run), looked up before
    # the engine starts, and the runs measured now, written once the engine is done: the
    # engine's threads never touch the database.
    cached: dict[str, TestRun] = field(default_factory=dict)
    measured: list[tuple[str, str, str, TestRun, bool]] = field(default_factory=list)

    @property
    def workdir(self) -> str:
        return str(self.workspace.path)

    # --- the code stage ----------------------------------------------------------------
    def apply_patch(self, diff: str) -> tuple[bool, str]:
        """Apply the code stage's diff to the base (an earlier attempt's change is dropped
        first). Returns (ok, one line); on failure the workspace is clean at the base."""
        self.workspace.rebuild([])
        result = self.workspace.apply(diff)
        self.applied = {
            "applied": result.ok,
            "method": result.method,
            "error": redact(result.error),
            "files": list(result.files),
        }
        if result.ok:
            how = "plain git apply" if result.method == "apply" else "git apply --3way"
            return True, f"applied to the workspace with {how} ({len(result.files)} file(s))"
        return False, result.error

    def commit(self, diff: str) -> dict[str, Any]:
        """Commit the applied change on the run's branch; returns the facts the code
        artifact records. Raises WorkspaceError."""
        self.workspace.rebuild([diff])
        done = self.workspace.commit(f"Tekton run {self.run.pk}: {self.run.goal[:60]}")
        return {
            "branch": done.branch,
            "base": done.base_sha,
            "head": done.head_sha,
            "diff_sha256": done.diff_sha256,
            "files": list(done.files),
            "method": self.applied.get("method") or "apply",
        }

    # --- test_debug ----------------------------------------------------------------------
    def _command(self) -> TestCommand:
        requested = (self.run.config or {}).get("test_command")
        return test_command_resolve(
            self.workspace.path,
            requested,
            checkout=self.run.repo_path,
            sandbox_mode=settings.TEKTON_SANDBOX,
        )

    def _measure(self, command: TestCommand, kind: str, patch: str | None) -> TestRun:
        self.workspace.rebuild([patch] if patch else [])
        measured = test_run(
            workspace=self.workspace.path,
            command=command,
            mount_at=self.run.repo_path,
            hidden=[settings.TEKTON_DATA_DIR],
            limits=sandbox_limits(self.run),
            mode=settings.TEKTON_SANDBOX,
        )
        commit = self.run.base_commit if kind == "base" else (self.run.head_commit or "")
        self.measured.append((kind, commit, _key(command), measured, False))
        return measured

    def _base(self, command: TestCommand) -> TestRun:
        """The base commit's run: reused when any run measured this commit with this
        command (and it did not time out), else measured now."""
        earlier = self.cached.get(_key(command))
        if earlier is None:
            return self._measure(command, TestRunRecord.Kind.BASE, None)
        self.measured.append(("base", self.run.base_commit, _key(command), earlier, True))
        return earlier

    def records_write(self) -> None:
        """Store the test runs this stage measured (or reused) as the run's records."""
        TestRunRecord.objects.bulk_create(
            TestRunRecord(
                run=self.run,
                stage=self.stage.stage,
                kind=kind,
                repo_path=self.run.repo_path,
                commit=commit,
                command_key=key,
                data=measured.to_dict(),
                reused=reused,
            )
            for kind, commit, key, measured, reused in self.measured
        )
        self.measured = []

    def test_evidence(self) -> dict[str, Any]:
        """Run the tests on the base and on the branch, in the sandbox, and compare."""
        if not self.sandbox_ok:
            return evidence_none(f"the sandbox cannot run here: {self.sandbox_reason}")
        try:
            command = self._command()
        except TestCommandError as exc:
            return evidence_none(str(exc))
        try:
            base = self._base(command)
            branch = (
                self._measure(command, TestRunRecord.Kind.BRANCH, self.patch)
                if self.patch
                else base
            )
            changed = self.workspace.changed_lines() if self.run.branch else {}
        except (WorkspaceError, SandboxUnavailable) as exc:
            return evidence_none(str(exc))
        evidence = evidence_compare(base, branch, changed).to_dict()
        evidence["command"] = {"command": command.command, "source": command.source}
        return redact(evidence)


def stage_work_build(run: Run, stage: StageRun) -> RunStageWork | None:
    """The repository work of `stage`, its workspace rebuilt to what the stage starts from
    (the base commit for plan..code, base + the code stage's change after it).

    None for a repository with no commit (nothing to work on: stages reason over the
    facts alone). Raises StageWorkBlocked with the reason when the workspace cannot be
    made (the base commit is gone, the disk is full, a stored patch no longer applies)
    or test_debug cannot run its sandbox.
    """
    if not run.base_commit:
        return None
    config = run.config or {}
    workspace = run_workspace(run)
    patch = None if stage.stage in ("plan", "research", "plan_update", "code") else run_patch(run)
    try:
        workspace.rebuild([patch] if patch else [])
    except WorkspaceError as exc:
        raise StageWorkBlocked(f"the workspace cannot be made: {exc}") from None
    ok, why = sandbox_state()
    if stage.stage == "test_debug" and not ok:
        raise StageWorkBlocked(
            f"test_debug needs the sandbox, which cannot run here: {why} "
            "(an operator may set TEKTON_SANDBOX=none to run tests unisolated)"
        )
    command: TestCommand | None = None
    try:
        command = test_command_resolve(
            workspace.path,
            config.get("test_command"),
            checkout=run.repo_path,
            sandbox_mode=settings.TEKTON_SANDBOX,
        )
    except TestCommandError:
        pass  # run_tests then says there is no test command
    sandbox = None
    if ok:
        # Agents' commands see what the tests see: the repository's .venv, its setup.
        sandbox = Sandbox(
            workspace=workspace.path,
            mount_at=Path(run.repo_path),
            readonly=[Path(p) for p in (command.readonly if command else ())],
            hidden=[settings.TEKTON_DATA_DIR],
            env=dict(command.env) if command else None,
            limits=sandbox_limits(run),
            mode=settings.TEKTON_SANDBOX,
        )
    tools = StageTools(
        workspace=workspace,
        stage=stage.stage,
        grants=config.get("tool_grants"),
        sandbox=sandbox,
        sandbox_root=run.repo_path,
        test_command=command.command if command else None,
        limits=sandbox_limits(run),
        max_calls_per_turn=int(config.get("max_tool_calls", 8)),
        max_test_runs=int(config.get("max_test_runs", 3)),
        index_search=code_searcher(run),
    )
    cached: dict[str, TestRun] = {}
    if stage.stage == "test_debug" and command is not None:
        earlier = (
            TestRunRecord.objects.filter(
                repo_path=run.repo_path,
                commit=run.base_commit,
                command_key=_key(command),
                kind=TestRunRecord.Kind.BASE,
                data__timed_out=False,
            )
            .order_by("-id")
            .first()
        )
        if earlier is not None:
            cached[_key(command)] = TestRun.from_dict(earlier.data)
    return RunStageWork(
        run=run,
        stage=stage,
        workspace=workspace,
        tools=tools,
        patch=patch,
        sandbox_ok=ok,
        sandbox_reason=why,
        cached=cached,
    )


def code_change_commit(run: Run, patch: str) -> dict[str, Any]:
    """A person approved a blocked code stage: apply its draft change to the base and
    commit it on the run's branch. Returns the facts for the artifact ({"applied": False,
    "error"} when it does not apply: the run goes on with the change as the debate left
    it, and test_debug measures the base)."""
    if not run.base_commit:
        return {"applied": False, "error": "the repository has no commit"}
    workspace = run_workspace(run)
    try:
        workspace.rebuild([])
        result = workspace.apply(patch)
        if not result.ok:
            return {"applied": False, "error": redact(result.error)}
        done = workspace.commit(f"Tekton run {run.pk}: {run.goal[:60]}")
    except WorkspaceError as exc:
        return {"applied": False, "error": redact(str(exc))}
    Run.objects.filter(pk=run.pk).update(branch=done.branch, head_commit=done.head_sha)
    return {
        "branch": done.branch,
        "base": done.base_sha,
        "head": done.head_sha,
        "diff_sha256": done.diff_sha256,
        "files": list(done.files),
        "method": result.method,
    }


_READ = object()


def stage_workspace_facts(run: Run, code_artifact: Any = _READ) -> dict[str, Any] | None:
    """What later stages are told about the change: branch, base, head and how it
    applied (from the code artifact Tekton filled; `code_artifact` is its JSON, or None
    for none, when the caller read it already)."""
    content = (
        Artifact.objects.filter(run=run, stage="code", kind=Artifact.Kind.JSON)
        .values_list("content", flat=True)
        .first()
        if code_artifact is _READ
        else code_artifact
    )
    facts = (content or {}).get("workspace") if isinstance(content, dict) else None
    if not facts:
        return None
    return {**facts, "files": list(facts.get("files") or [])[:CHANGED_FILES_SHOWN]}


def code_files_text(work: RunStageWork, paths: list[str]) -> str:
    """The contents of the files the code stage's backlog names, within a budget."""
    if not paths:
        return ""
    return files_for_prompt(work.workspace, paths, FILES_BUDGET_CHARS).text


def workspace_release(run: Run) -> None:
    """Remove a finished run's worktree (kept as the repository's spare); the branch
    stays. Never raises: an orphan is `tekton workspaces prune`'s to find."""
    if not run.base_commit:
        return
    try:
        run_workspace(run).remove()
    except (WorkspaceError, OSError) as exc:
        logger.warning("run %s: workspace not removed: %s", run.pk, redact(str(exc)))


def workspaces_prune_orphans(*, dry_run: bool = False) -> list[Path]:
    """Remove the workspaces under TEKTON_WORKSPACE_ROOT that no queued, running or
    blocked run of this namespace uses, and the stale worktree registrations in the
    repositories runs targeted; branches stay. With `dry_run`, list them only."""
    live, repos = runs_workspace_owners()
    return workspaces_prune(
        settings.TEKTON_WORKSPACE_ROOT,
        live=live,
        repos=[r for r in repos if os.path.isdir(r)],
        namespace=settings.TEKTON_NAMESPACE,
        dry_run=dry_run,
    )
