"""Repository-aware runs end to end: the real CLI, a real Celery worker, PostgreSQL and
Redis, a scripted model behind the fake LLM server (it writes the code stage's diff), and
the repository's own tests run in the sandbox on the base and on the branch."""

from __future__ import annotations

import json
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from swarm.prompts import context_extract
from swarm.providers.base import Message
from swarm.sandbox import sandbox_probe
from tests.fakes.diamond import DiamondResponder, _text
from tests.fakes.llm_server import FakeLlmServer, tool_calls
from tests.integration.harness import Services, manage, wait_for
from tests.support.pyvenv import venv_link

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not sandbox_probe()[0], reason=f"no sandbox here: {sandbox_probe()[1]}"),
]

CORE = "def add(a, b):\n    return a - b\n\n\ndef sub(a, b):\n    return a - b\n"
TESTS = (
    "from calc.core import add, sub\n\n\n"
    "def test_add():\n    assert add(2, 3) == 5\n\n\n"
    "def test_sub():\n    assert sub(5, 3) == 2\n"
)
FIX = (
    "diff --git a/calc/core.py b/calc/core.py\n--- a/calc/core.py\n+++ b/calc/core.py\n"
    "@@ -1,5 +1,5 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n \n \n def sub(a, b):\n"
)
BREAK = (
    "diff --git a/calc/core.py b/calc/core.py\n--- a/calc/core.py\n+++ b/calc/core.py\n"
    "@@ -3,4 +3,4 @@\n \n \n def sub(a, b):\n-    return a - b\n+    return b - a\n"
)


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=T", "-c", "user.email=t@t.invalid", *args],
        cwd=repo, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip


def _state(repo: Path) -> tuple[str, ...]:
    return tuple(
        _git(repo, *args)
        for args in (["status", "--porcelain"], ["stash", "list"], ["rev-parse", "HEAD"])
    )


def _calc(root: Path, tests: str = TESTS) -> Path:
    repo = root / f"calc-{uuid.uuid4().hex[:6]}"
    (repo / "calc").mkdir(parents=True)
    (repo / "tests").mkdir()
    (repo / "calc" / "__init__.py").write_text("")
    (repo / "calc" / "core.py").write_text(CORE)
    (repo / "tests" / "test_core.py").write_text(tests)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "calc with a bug in add")
    venv_link(repo)
    return repo


@pytest.fixture(scope="module")
def model():
    server = FakeLlmServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def scripted_profile(services: Services, model: FakeLlmServer) -> str:
    """A profile whose models are all answered by the scripted model."""
    code = (
        "from config_profiles.models import Profile\n"
        "from config_profiles.services import profile_copy, profile_update\n"
        "p = profile_copy(profile=Profile.objects.get(name='diamond-v5'), name='scripted')\n"
        f"profile_update(profile=p, data={{'rounds': 0, 'routes': [{{'match': '*/*', "
        f"'backend': 'openai', 'base_url': '{model.openai_base_url}'}}]}})\n"
    )
    done = manage(["shell", "-c", code], env=services.env, timeout=60)
    assert done.returncode == 0, done.stderr
    return "scripted"


def _goal() -> str:
    return f"Fix add (it-{uuid.uuid4().hex[:8]})"


def _start(services: Services, repo: Path, profile: str, *extra: str, goal: str = "") -> int:
    goal = goal or _goal()
    env = {**services.env, "TEKTON_LLM_BACKEND": "auto"}
    argv = ["tekton", "run", "--goal", goal, "--repo", str(repo), "--profile", profile]
    started = manage(
        [*argv, "--detach", *extra],
        env=env,
        timeout=60,
    )
    assert started.returncode == 0, started.stderr
    (row,) = services.query("SELECT id FROM runs_run WHERE goal = %s", (goal,))
    return row["id"]


def _ended(services: Services, run_id: int) -> dict:
    return wait_for(
        lambda: (
            (r := services.query("SELECT * FROM runs_run WHERE id = %s", (run_id,))[0])["status"]
            in ("succeeded", "blocked", "failed")
            and r
        ),
        timeout=240,
        interval=0.3,
        what="the run to end or block",
    )


class _ByGoal:
    """Answers each call with the responder of the run whose goal the call carries (the
    run's <tekton-context> names it), so two scripted runs can go at once."""

    def __init__(self, responders: dict[str, DiamondResponder]) -> None:
        self.responders = responders

    def __call__(self, path, body):
        wire = json.dumps(body.get("messages") or [])
        (goal,) = [g for g in self.responders if g in wire]
        return self.responders[goal](path, body)


def _report(services: Services, run_id: int) -> dict:
    (stage,) = services.query(
        "SELECT status, reason, draft FROM runs_stagerun WHERE run_id = %s AND stage = 'test_debug'",
        (run_id,),
    )
    rows = services.query(
        "SELECT content FROM runs_artifact WHERE run_id = %s AND stage = 'test_debug' "
        "AND kind = 'json'",
        (run_id,),
    )
    report = rows[0]["content"] if rows else (stage["draft"] or {}).get("artifact")
    return {**stage, "report": report}


def test_a_fix_and_a_break_through_the_cli_and_a_worker(
    services, start_worker, model, scripted_profile
):
    start_worker(extra_env={"TEKTON_LLM_BACKEND": "auto"})

    # The fix and the break go at once (two repositories, two goals, one worker): each
    # CLI start and each run costs seconds, and neither run depends on the other.
    fixed_repo, broken_repo = _calc(services.repo_root), _calc(services.repo_root)
    before_fixed, before_broken = _state(fixed_repo), _state(broken_repo)
    fix_goal, break_goal = _goal(), _goal()
    model.responder = _ByGoal(
        {fix_goal: DiamondResponder(FIX), break_goal: DiamondResponder(BREAK)}
    )
    with ThreadPoolExecutor(2) as pool:
        starts = [
            pool.submit(_start, services, repo, scripted_profile, goal=goal)
            for repo, goal in ((fixed_repo, fix_goal), (broken_repo, break_goal))
        ]
        fixed_id, broken_id = (start.result() for start in starts)
    fixed = _ended(services, fixed_id)
    assert fixed["status"] == "succeeded", fixed["reason"]
    evidence = _report(services, fixed["id"])["report"]["evidence"]
    assert evidence["ship"] is True
    assert evidence["newly_passing"] == ["tests/test_core.py::test_add"]
    assert evidence["base"]["totals"] | {"errors": 0, "skipped": 0} == {
        "tests": 2, "passed": 1, "failed": 1, "errors": 0, "skipped": 0,
    }  # fmt: skip
    assert (evidence["branch"]["totals"]["passed"], evidence["branch"]["totals"]["failed"]) == (
        2,
        0,
    )
    assert _git(fixed_repo, "rev-parse", fixed["branch"]).strip() == fixed["head_commit"]
    assert _state(fixed_repo) == before_fixed

    broken = _ended(services, broken_id)
    assert broken["status"] == "blocked", broken["reason"]
    report = _report(services, broken["id"])
    assert report["status"] == "blocked" and "newly failing" in report["reason"]
    assert report["report"]["ship"] is False
    assert report["report"]["evidence"]["newly_failing"] == ["tests/test_core.py::test_sub"]
    assert _state(broken_repo) == before_broken
    shown = manage(["tekton", "show", str(broken["id"]), "--json"], env=services.env, timeout=60)
    assert shown.returncode == 0 and json.loads(shown.stdout)["status"] == "blocked"


def _processes_under(folder: Path) -> set[int]:
    """Processes whose command line names `folder` (a sandbox's bwrap names its binds),
    and every process below them."""
    parents: dict[int, int] = {}
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if " Z " in stat[stat.rindex(")") :][:4]:
            continue  # a zombie is gone already, waiting to be reaped
        parents[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
        if str(folder) in cmdline:
            found.add(int(entry.name))
    grew = True
    while grew:
        below = {pid for pid, parent in parents.items() if parent in found} - found
        found |= below
        grew = bool(below)
    return found


SLOW_TESTS = TESTS + "\n\ndef test_slow():\n    import time\n\n    time.sleep(2)\n"


def test_a_worker_killed_during_the_sandboxed_test_run_leaves_nothing_in_the_way(
    services, start_worker, model, scripted_profile
):
    repo = _calc(services.repo_root, tests=SLOW_TESTS)
    before = _state(repo)
    model.responder = DiamondResponder(FIX)
    first = start_worker(extra_env={"TEKTON_LLM_BACKEND": "auto"})
    run_id = _start(services, repo, scripted_profile, "--to", "test_debug")

    def sandbox_running() -> set[int]:
        (stage,) = services.query(
            "SELECT status FROM runs_stagerun WHERE run_id = %s AND stage = 'test_debug'",
            (run_id,),
        )
        return _processes_under(services.data_dir) if stage["status"] == "running" else set()

    sandbox = wait_for(sandbox_running, timeout=120, interval=0.05, what="the tests to run")
    # A worker killed inside a git command leaves git's lock; plant it as that kill would.
    (admin,) = (repo / ".git" / "worktrees").iterdir()
    (admin / "index.lock").write_text("")
    first.kill9()
    # bwrap dies with its parent, and its PID namespace (the tests, any daemon) with it.
    wait_for(
        lambda: not (sandbox & _processes_under(services.data_dir)),
        timeout=10,
        what="the killed worker's sandbox to end",
    )

    start_worker(extra_env={"TEKTON_LLM_BACKEND": "auto"})
    run = wait_for(
        lambda: (
            (r := services.query("SELECT * FROM runs_run WHERE id = %s", (run_id,))[0])["status"]
            in ("succeeded", "blocked", "failed")
            and r
        ),
        timeout=120,
        interval=0.3,
        what="the run to end after the sweep",
    )
    assert run["status"] == "succeeded", run["reason"]
    report = _report(services, run_id)
    assert report["report"]["evidence"]["ship"] is True
    (stage,) = services.query(
        "SELECT attempt FROM runs_stagerun WHERE run_id = %s AND stage = 'test_debug'", (run_id,)
    )
    assert stage["attempt"] == 2
    assert not _processes_under(services.data_dir)
    assert not list((repo / ".git").rglob("*.lock"))
    listing = _git(repo, "worktree", "list", "--porcelain")
    assert "prunable" not in listing and "locked" not in listing, listing
    worktrees = [
        line.split(" ", 1)[1] for line in listing.splitlines() if line.startswith("worktree ")
    ]
    assert worktrees[0] == str(repo)
    assert all(Path(w).is_relative_to(services.data_dir) for w in worktrees[1:]), worktrees
    assert _state(repo) == before


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


class _HangOnceInATool(DiamondResponder):
    """The code proponent's first call asks for run_command with a command that outlives
    the worker; every later call (the next attempt's too) is answered as usual."""

    def __init__(self, diff: str, command: str) -> None:
        super().__init__(diff)
        self.command = command
        self.fired = False

    def __call__(self, path, body):
        names = {
            (t.get("function") or t).get("name")
            for t in body.get("tools") or []
            if isinstance(t, dict)
        }
        wire = [m for m in body.get("messages") or [] if isinstance(m, dict)]
        messages = [Message(str(m.get("role") or "user"), _text(m.get("content"))) for m in wire]
        stage = (context_extract(messages) or {}).get("stage")
        if not self.fired and "run_command" in names and stage == "code":
            self.fired = True
            return tool_calls(("run_command", {"command": self.command}))
        return super().__call__(path, body)


def test_a_worker_killed_during_a_tool_call_leaves_nothing_in_the_way(
    services, start_worker, model, scripted_profile
):
    repo = _calc(services.repo_root)
    before = _state(repo)
    model.responder = _HangOnceInATool(FIX, "sleep 120")
    first = start_worker(extra_env={"TEKTON_LLM_BACKEND": "auto"})
    run_id = _start(services, repo, scripted_profile, "--to", "code")
    try:

        def sleeping() -> set[int]:
            pids = _processes_under(services.data_dir)
            return pids if any(b"sleep\x00120" in _cmdline(p) for p in pids) else set()

        tool = wait_for(
            sleeping,
            timeout=120,
            interval=0.05,
            what="the agent's run_command to start in the sandbox",
        )
        first.kill9()
        # The sandbox (bwrap, its PID namespace and the sleep in it) dies with the worker.
        wait_for(
            lambda: not (tool & _processes_under(services.data_dir)),
            timeout=10,
            what="the killed worker's tool call to end",
        )
        start_worker(extra_env={"TEKTON_LLM_BACKEND": "auto"})
        run = wait_for(
            lambda: (
                (r := services.query("SELECT * FROM runs_run WHERE id = %s", (run_id,))[0])[
                    "status"
                ]
                in ("succeeded", "blocked", "failed")
                and r
            ),
            timeout=120,
            interval=0.3,
            what="the run to end after the sweep",
        )
    finally:
        model.responder = None
    assert run["status"] == "succeeded", run["reason"]
    (stage,) = services.query(
        "SELECT attempt FROM runs_stagerun WHERE run_id = %s AND stage = 'code'", (run_id,)
    )
    assert stage["attempt"] == 2
    assert not _processes_under(services.data_dir)
    assert not list((repo / ".git").rglob("*.lock"))
    listing = _git(repo, "worktree", "list", "--porcelain")
    assert "prunable" not in listing and "locked" not in listing, listing
    assert _state(repo) == before
