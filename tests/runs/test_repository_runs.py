"""Repository-aware runs in one process: a scripted model (behind the fake LLM server,
through the official OpenAI SDK) writes the code stage's diff; the change is applied in
the run's workspace, committed on its branch, and the repository's own tests, run in the
sandbox on the base and on the branch, decide whether it ships."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from config_profiles.models import Profile
from config_profiles.services import profile_copy, profile_update
from runs.delivery import run_bundle_open, run_patch_text, run_test_results
from runs.dispatch import run_inline
from runs.models import Artifact, Run, RunEvent, StageRun, TestRunRecord
from runs.services import run_create
from swarm.sandbox import sandbox_probe
from tests.fakes.diamond import DiamondResponder
from tests.fakes.llm_server import FakeLlmServer
from tests.support.pyvenv import venv_link

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(not sandbox_probe()[0], reason=f"no sandbox here: {sandbox_probe()[1]}"),
]

CORE = "def add(a, b):\n    return a - b\n\n\ndef sub(a, b):\n    return a - b\n"
TESTS = (
    "from calc.core import add, sub\n\n\n"
    "def test_add():\n    assert add(2, 3) == 5\n\n\n"
    "def test_sub():\n    assert sub(5, 3) == 2\n\n\n"
    "def test_sub_negative():\n    assert sub(1, 2) == -1\n"
)
FIX = (
    "diff --git a/calc/core.py b/calc/core.py\n"
    "--- a/calc/core.py\n+++ b/calc/core.py\n"
    "@@ -1,5 +1,5 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n \n \n def sub(a, b):\n"
)
BREAK = (
    "diff --git a/calc/core.py b/calc/core.py\n"
    "--- a/calc/core.py\n+++ b/calc/core.py\n"
    "@@ -3,4 +3,4 @@\n \n \n def sub(a, b):\n-    return a - b\n+    return b - a\n"
)


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=T", "-c", "user.email=t@t.invalid", *args],
        cwd=repo, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip


def _checkout_state(repo: Path) -> tuple[str, str, str, str]:
    return (
        _git(repo, "status", "--porcelain"),
        _git(repo, "stash", "list"),
        _git(repo, "rev-parse", "HEAD"),
        _git(repo, "symbolic-ref", "HEAD"),
    )


@pytest.fixture
def calc_repo(tekton_settings) -> Path:
    repo = Path(tekton_settings.TEKTON_REPO_ROOTS[0]) / "calc"
    (repo / "calc").mkdir(parents=True)
    (repo / "tests").mkdir()
    (repo / "calc" / "__init__.py").write_text("")
    (repo / "calc" / "core.py").write_text(CORE)
    (repo / "tests" / "test_core.py").write_text(TESTS)
    (repo / "README.md").write_text("# calc\n")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "calc with a bug in add")
    venv_link(repo)
    (repo / "notes.txt").write_text("uncommitted: the run ignores this\n")
    return repo


@pytest.fixture
def scripted(monkeypatch, tekton_settings, tmp_path):
    """A profile whose every model is answered by a scripted model on the fake server."""
    monkeypatch.setenv("TEKTON_LLM_BACKEND", "auto")
    tekton_settings.TEKTON_WORKSPACE_ROOT = tmp_path / "workspaces"
    server = FakeLlmServer().start()
    profile = profile_copy(profile=Profile.objects.get(name="diamond-v5"), name="scripted")
    profile_update(
        profile=profile,
        data={
            "routes": [{"match": "*/*", "backend": "openai", "base_url": server.openai_base_url}],
            "rounds": 0,
        },
    )

    def use(diff: str) -> DiamondResponder:
        server.responder = DiamondResponder(diff)
        return server.responder

    yield use
    server.stop()


def _run(repo: Path, **stages: str) -> Run:
    run = run_create(
        goal="Fix add", repo_path=repo, profile_name="scripted", dispatch=False, **stages
    )
    run_inline(run.pk)
    run.refresh_from_db()
    return run


def _evidence(run: Run) -> dict:
    return Artifact.objects.get(run=run, stage="test_debug", kind="json").content["evidence"]


def _pytest_counts(repo: Path, revision: str) -> dict[str, int]:
    """What pytest itself reports at `revision`, run outside Tekton in a clone."""
    clone = repo.parent / f"clone-{revision[:8]}"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    _git(clone, "checkout", "-q", revision)
    python = (repo / ".venv").resolve() / "bin" / "python"
    out = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=clone, capture_output=True, text=True,
    ).stdout.splitlines()[-1]  # fmt: skip
    counts = {"passed": 0, "failed": 0}
    for part in out.replace("=", "").split(" in ")[0].split(","):
        number, word = part.split()
        counts[word] = int(number)
    return counts


def test_a_change_that_fixes_the_failing_test_ships_and_leaves_the_branch(calc_repo, scripted):
    scripted(FIX)
    before = _checkout_state(calc_repo)
    run = _run(calc_repo)
    assert run.status == "succeeded", run.reason
    evidence = _evidence(run)
    assert evidence["ship"] is True
    assert evidence["newly_passing"] == ["tests/test_core.py::test_add"]
    assert evidence["newly_failing"] == []
    base, branch = evidence["base"]["totals"], evidence["branch"]["totals"]
    pytest_base = _pytest_counts(calc_repo, run.base_commit)
    pytest_branch = _pytest_counts(calc_repo, run.head_commit)
    assert (base["passed"], base["failed"]) == (pytest_base["passed"], pytest_base["failed"])
    assert (branch["passed"], branch["failed"]) == (
        pytest_branch["passed"],
        pytest_branch["failed"],
    )
    assert (branch["passed"], branch["failed"]) == (3, 0)
    assert evidence["isolation"]["network"] == "off"
    assert (
        run.branch == run.name
        and _git(calc_repo, "rev-parse", run.branch).strip() == run.head_commit
    )
    assert "a + b" in _git(calc_repo, "show", f"{run.head_commit}:calc/core.py")
    code = Artifact.objects.get(run=run, stage="code", kind="json").content
    assert (
        code["workspace"]["base"] == run.base_commit
        and code["workspace"]["head"] == run.head_commit
    )
    assert _checkout_state(calc_repo) == before  # the user's checkout never moved
    assert run.config["ignored_changes"] == ["?? notes.txt"]
    kinds = set(TestRunRecord.objects.filter(run=run).values_list("kind", flat=True))
    assert {"base", "branch"} <= kinds
    # What a person takes away: every test's outcome, and the change as patch and bundle.
    results = {r["test"]: r for r in run_test_results(run)["results"]}
    assert len(results) == pytest_branch["passed"] + pytest_branch["failed"]
    fixed = results["tests/test_core.py::test_add"]
    assert (fixed["base"], fixed["branch"], fixed["change"]) == (
        "failed",
        "passed",
        "newly_passing",
    )
    assert run_patch_text(run) == (
        _git(calc_repo, "diff", f"{run.base_commit}..{run.branch}"),
        "branch",
    )
    with run_bundle_open(run) as handle:
        assert handle.read(15) == b"# v2 git bundle"
    assert _checkout_state(calc_repo) == before


def test_a_change_that_breaks_a_test_does_not_ship_and_blocks(calc_repo, scripted):
    scripted(BREAK)
    before = _checkout_state(calc_repo)
    run = _run(calc_repo)
    assert run.status == "blocked"
    stage = StageRun.objects.get(run=run, stage="test_debug")
    assert stage.status == "blocked" and "newly failing" in stage.reason
    draft = stage.draft["artifact"]
    assert draft["ship"] is False
    assert draft["evidence"]["newly_failing"] == [
        "tests/test_core.py::test_sub", "tests/test_core.py::test_sub_negative",
    ]  # fmt: skip
    assert _checkout_state(calc_repo) == before


def test_a_diff_that_does_not_apply_is_repaired_once_then_blocks_with_the_first_error(
    calc_repo, scripted
):
    responder = scripted(FIX.replace("return a - b\n+", "return a * b\n+"))
    run = _run(calc_repo)
    code = StageRun.objects.get(run=run, stage="code")
    assert code.status == "blocked"
    assert "patch does not apply" in code.reason and "calc/core.py" in code.reason
    mediator_calls = [c for c in responder.calls if c[0] == "code" and c[2] == "mediator"]
    assert len(mediator_calls) == 2  # the answer and one repair with the apply error
    assert run.branch == "" and "tekton/" not in _git(calc_repo, "branch", "--list")


def test_a_diff_into_git_or_out_of_the_tree_is_refused(calc_repo, scripted):
    scripted(FIX.replace("calc/core.py", "../outside.py"))
    run = _run(calc_repo)
    code = StageRun.objects.get(run=run, stage="code")
    assert code.status == "blocked"
    assert not (calc_repo.parent / "outside.py").exists()


def test_every_tool_call_is_a_stage_tool_event(calc_repo, monkeypatch, tmp_path, tekton_settings):
    tekton_settings.TEKTON_WORKSPACE_ROOT = tmp_path / "workspaces"
    run = run_create(goal="Fix add", repo_path=calc_repo, stage_to="code", dispatch=False)
    run_inline(run.pk)
    tools = list(
        RunEvent.objects.filter(run=run, kind="stage.tool").values_list("payload", flat=True)
    )
    assert {t["tool"] for t in tools} == {"list_files", "read_file", "run_tests"}
    ran = next(t for t in tools if t["tool"] == "run_tests")
    assert ran["role"] == "proponent" and ran["ok"] and "exit 1" in ran["summary"]


def test_the_code_stage_gives_its_connection_back_around_git_and_waits_for_one_after(
    calc_repo, scripted, monkeypatch
):
    """Under load a query that met a busy pool failed the stage and re-ran every call it
    had paid for: after the engine and around the commit's git work, the stage thread
    takes its connection through the pool wait (runs.engine_bridge.connection_wait)."""
    from runs import execution
    from runs.stage_work import RunStageWork

    steps: list[str] = []
    real_wait, real_release, real_commit = (
        execution.connection_wait,
        execution.connection_release,
        RunStageWork.commit,
    )

    def wait(stage):
        steps.append(f"wait {stage.stage}")
        real_wait(stage)

    def release():
        steps.append("release")
        real_release()

    def commit(self, diff):
        steps.append("commit")
        return real_commit(self, diff)

    monkeypatch.setattr(execution, "connection_wait", wait)
    monkeypatch.setattr(execution, "connection_release", release)
    monkeypatch.setattr(RunStageWork, "commit", commit)
    scripted(FIX)
    # Only the code stage and the tests after it are under test: the stages before and
    # after them would add seconds and no steps that are asserted.
    run = _run(calc_repo, stage_from="code", stage_to="test_debug")
    assert run.status == "succeeded", run.reason
    at = steps.index("commit")
    assert steps[at - 1 : at + 2] == ["release", "commit", "wait code"]
    # Every stage waits for its connection after its engine ran, before writing.
    assert sum(s == "wait test_debug" for s in steps) >= 3
