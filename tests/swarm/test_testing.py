"""Test evidence computed in code (issue 8, sections 4, 6 and 7), on fixture repositories
made here and run for real through the sandbox with this project's own .venv (read-only)."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from swarm.sandbox import SandboxLimits, sandbox_probe
from swarm.testing import (
    NETWORK_HINT,
    FileBaseCache,
    MemoryBaseCache,
    TestCommand,
    TestCommandError,
    TestRun,
    base_run_cached,
    changed_coverage,
    evidence_compare,
    junit_parse,
    test_command_resolve,
    test_run,
)

PROBE_OK, PROBE_WHY = sandbox_probe()
needs_bwrap = pytest.mark.skipif(not PROBE_OK, reason=f"sandbox unavailable: {PROBE_WHY}")
VENV = Path(sys.prefix)  # a real venv with pytest and coverage
FAST = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}  # the fixtures use no plugins

CALC_BUGGY = "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n"
CALC_FIXED = "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n"
CALC_TESTS = (
    "from calc import add, mul\n\n\n"
    "def test_add():\n    assert add(2, 2) == 4\n\n\n"
    "def test_mul():\n    assert mul(2, 3) == 6\n\n\n"
    "def test_mul_zero():\n    assert mul(5, 0) == 0\n\n\n"
    "def test_add_negative():\n    assert add(-1, 1) == 0\n"
)


def make_pkg(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'fixture'\nversion = '0'\n")
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def resolve(root: Path, requested: str | None = None, **kw) -> TestCommand:
    command = test_command_resolve(root, requested, venv=VENV, **kw)
    return dataclasses.replace(command, env={**command.env, **FAST})


def pytest_summary(root: Path) -> dict[str, int]:
    """What pytest itself reports for `root`, run bare with the same interpreter."""
    proc = subprocess.run(
        [str(VENV / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=root,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **FAST, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    last = proc.stdout.strip().splitlines()[-1]
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|error)", last)}
    return {k: counts.get(k, 0) for k in ("passed", "failed", "skipped", "error")}


# --- resolution ---------------------------------------------------------------------------


def test_resolve_order_request_then_toml_then_detection(tmp_path: Path):
    root = make_pkg(tmp_path / "r", {"tests/test_a.py": "def test_a():\n    pass\n"})
    detected = test_command_resolve(root, None, venv=VENV)
    assert detected.source == "detected" and detected.runner == "pytest"
    assert "--junitxml=" in detected.command and detected.coverage  # the venv has both
    assert str(VENV) in detected.readonly and detected.env["PATH"].startswith(f"{VENV}/bin:")
    (root / ".tekton.toml").write_text(
        '[tests]\ncommand = "make check"\nsetup = "make deps"\njunit = "out/junit.xml"\n'
    )
    toml = test_command_resolve(root, None)
    assert (toml.source, toml.command, toml.setup, toml.junit) == (
        ".tekton.toml",
        "make check",
        "make deps",
        "out/junit.xml",
    )
    requested = test_command_resolve(root, "pytest -x tests")
    assert requested.source == "request" and requested.runner == "pytest"


def test_resolve_uses_the_checkouts_venv(tmp_path: Path):
    root = make_pkg(tmp_path / "ws", {"test_x.py": "def test_x():\n    pass\n"})
    checkout = tmp_path / "checkout"
    (checkout / ".venv" / "bin").mkdir(parents=True)
    (checkout / ".venv" / "bin" / "python").symlink_to(sys.executable)
    (checkout / ".venv" / "lib" / "python3.11" / "site-packages" / "pytest").mkdir(parents=True)
    command = test_command_resolve(root, None, checkout=checkout)
    assert command.venv == str(checkout / ".venv")
    assert command.readonly[0] == str((checkout / ".venv").resolve())
    assert not command.coverage  # this venv has pytest but no coverage
    assert command.command.startswith(f"{checkout}/.venv/bin/python -m pytest ")


def test_resolve_detects_other_runners(tmp_path: Path):
    for marker, expected in (
        ("package.json", "npm test"),
        ("go.mod", "go test ./..."),
        ("Cargo.toml", "cargo test --offline"),
    ):
        root = tmp_path / marker
        root.mkdir()
        (root / marker).write_text("{}\n")
        assert test_command_resolve(root, None).command == expected


@pytest.mark.parametrize(
    "toml,error",
    [
        ("[tests\ncommand = 1", "not valid TOML"),
        ("[tests]\ncommand = ''", "command must be a non-empty string"),
        ("[tests]\ncommand = 'x'\njunit = '../../etc/passwd'", "inside the repository"),
        ("[tests]\ncommand = 'x'\nshell = 'bash'", "unknown [tests] key(s) shell"),
    ],
)
def test_bad_tekton_toml_gets_a_one_line_error(tmp_path: Path, toml: str, error: str):
    (tmp_path / ".tekton.toml").write_text(toml)
    with pytest.raises(TestCommandError, match=re.escape(error)):
        test_command_resolve(tmp_path, None)


def test_resolve_refuses_what_it_cannot_use(tmp_path: Path):
    with pytest.raises(TestCommandError, match="no test command"):
        test_command_resolve(tmp_path, None)
    with pytest.raises(TestCommandError, match="empty"):
        test_command_resolve(tmp_path, "  ")
    with pytest.raises(TestCommandError, match="TEKTON_SANDBOX=none"):
        test_command_resolve(tmp_path, "pytest", sandbox_mode="none")
    (tmp_path / ".tekton.toml").write_text("[tests]\ncommand = 'make test'\n")
    assert test_command_resolve(tmp_path, None, sandbox_mode="none").command == "make test"


# --- runs through the sandbox ------------------------------------------------------------


@needs_bwrap
def test_a_fix_is_newly_passing_with_pytests_own_counts(tmp_path: Path):
    base_root = make_pkg(
        tmp_path / "base", {"calc/__init__.py": CALC_BUGGY, "tests/test_calc.py": CALC_TESTS}
    )
    branch_root = make_pkg(
        tmp_path / "branch", {"calc/__init__.py": CALC_FIXED, "tests/test_calc.py": CALC_TESTS}
    )
    base = test_run(workspace=base_root, command=resolve(base_root))
    branch = test_run(workspace=branch_root, command=resolve(branch_root))
    for run, root in ((base, base_root), (branch, branch_root)):
        reported = pytest_summary(root)
        assert run.evidence, run.reasons
        assert (run.totals["passed"], run.totals["failed"]) == (
            reported["passed"],
            reported["failed"],
        )
    assert base.totals == {"tests": 4, "passed": 2, "failed": 2, "errors": 0, "skipped": 0}
    assert base.exit_code == 1 and branch.exit_code == 0
    assert "assert 0 == 4" in base.messages["tests/test_calc.py::test_add"]
    evidence = evidence_compare(base, branch, {"calc/__init__.py": {2}, "README.md": {1}})
    assert evidence.ship, evidence.reasons
    assert evidence.newly_passing == [
        "tests/test_calc.py::test_add",
        "tests/test_calc.py::test_add_negative",
    ]
    assert evidence.newly_failing == [] and evidence.still_failing == []
    assert evidence.changed_coverage["measurable"] == 1
    assert evidence.changed_coverage["covered"] == 1
    assert evidence.isolation["isolation"] == "bwrap" and evidence.isolation["network"] == "off"
    # The other way round the change breaks two tests: ship is off.
    backwards = evidence_compare(branch, base, {"calc/__init__.py": {2}})
    assert not backwards.ship
    assert backwards.newly_failing == evidence.newly_passing
    assert "2 test(s) newly failing" in backwards.reasons


@needs_bwrap
def test_a_hanging_suite_is_killed_and_is_no_evidence(tmp_path: Path):
    root = make_pkg(
        tmp_path / "hang",
        {"tests/test_hang.py": "import time\n\n\ndef test_hang():\n    time.sleep(120)\n"},
    )
    run = test_run(workspace=root, command=resolve(root), limits=SandboxLimits(wall_s=4))
    assert run.timed_out and not run.evidence
    assert run.duration_s < 4 + 5
    assert any("stopped at the limit" in r for r in run.reasons)
    evidence = evidence_compare(run, run, {})
    assert not evidence.ship and "the branch run timed out" in evidence.reasons


@needs_bwrap
def test_a_suite_that_needs_the_network_fails_and_says_the_network_is_off(tmp_path: Path):
    code = (
        "import urllib.request\n\n\n"
        "def test_download():\n"
        "    urllib.request.urlopen('http://example.com/', timeout=5).read()\n\n\n"
        "def test_local():\n    assert 1 + 1 == 2\n"
    )
    root = make_pkg(tmp_path / "net", {"tests/test_net.py": code})
    run = test_run(workspace=root, command=resolve(root))
    assert run.outcomes == {
        "tests/test_net.py::test_download": "failed",
        "tests/test_net.py::test_local": "passed",
    }
    assert run.isolation["network"] == "off"
    assert NETWORK_HINT in run.hints
    assert NETWORK_HINT in evidence_compare(run, run, {}).hints


@needs_bwrap
def test_a_collection_error_is_no_evidence_never_a_pass(tmp_path: Path):
    root = make_pkg(
        tmp_path / "broken",
        {
            "tests/test_ok.py": "def test_ok():\n    pass\n",
            "tests/test_broken.py": "import no_such_module_here\n\n\ndef test_x():\n    pass\n",
        },
    )
    run = test_run(workspace=root, command=resolve(root))
    assert run.exit_code == 2
    assert not run.evidence
    assert "pytest exit 2: interrupted (collection error)" in run.reasons
    good_root = make_pkg(tmp_path / "good", {"tests/test_ok.py": "def test_ok():\n    pass\n"})
    good = test_run(workspace=good_root, command=resolve(good_root))
    assert good.evidence
    evidence = evidence_compare(good, run, {})
    assert not evidence.ship
    assert any("branch run is no evidence" in r for r in evidence.reasons)


XSKIP = """
import pytest


@pytest.fixture
def broken_teardown():
    yield
    raise RuntimeError("teardown went wrong")


@pytest.mark.xfail(reason="known bug")
def test_known_bug():
    assert False


@pytest.mark.xfail(strict=True, reason="should fail")
def test_strict_xpass():
    assert True


@pytest.mark.skip(reason="not here")
def test_skipped():
    pass


def test_teardown(broken_teardown):
    assert True


@pytest.mark.parametrize("text", ["with space", "a[b]"], ids=["with space", "br[ack]ets"])
def test_param(text):
    assert text


class TestGroup:
    def test_in_class(self):
        assert True
"""


@needs_bwrap
def test_xfail_skip_teardown_error_and_spaced_ids(tmp_path: Path):
    root = make_pkg(tmp_path / "x", {"tests/test_x.py": XSKIP})
    run = test_run(workspace=root, command=resolve(root))
    f = "tests/test_x.py"
    assert run.outcomes == {
        f"{f}::test_known_bug": "skipped",  # xfail
        f"{f}::test_strict_xpass": "failed",
        f"{f}::test_skipped": "skipped",
        f"{f}::test_teardown": "error",  # the teardown error lands on its test
        f"{f}::test_param[with space]": "passed",
        f"{f}::test_param[br[ack]ets]": "passed",
        f"{f}::TestGroup::test_in_class": "passed",
    }
    assert run.totals == {"tests": 7, "passed": 3, "failed": 1, "errors": 1, "skipped": 2}
    assert run.evidence


@needs_bwrap
def test_tekton_toml_setup_runs_first_and_its_failure_is_no_evidence(tmp_path: Path):
    root = tmp_path / "custom"
    root.mkdir()
    (root / "fixture.xml").write_text(
        '<testsuite name="s" tests="1"><testcase classname="suite" name="case one"/></testsuite>'
    )
    (root / ".tekton.toml").write_text(
        "[tests]\n"
        "setup = 'echo ready > setup.flag'\n"
        "command = 'test -f setup.flag && cp fixture.xml report.xml'\n"
        "junit = 'report.xml'\n"
    )
    run = test_run(workspace=root, command=test_command_resolve(root, None))
    assert run.evidence, run.reasons
    assert run.outcomes == {"suite::case one": "passed"} and run.source == ".tekton.toml"
    (root / ".tekton.toml").write_text(
        "[tests]\nsetup = 'exit 3'\ncommand = 'true'\njunit = 'report.xml'\n"
    )
    failed = test_run(workspace=root, command=test_command_resolve(root, None))
    assert not failed.evidence
    assert failed.reasons == ["setup command exited 3: the tests did not run"]


@needs_bwrap
def test_a_planted_report_symlink_is_not_followed(tmp_path: Path):
    secret = tmp_path / "host-secret.xml"
    secret.write_text('<testsuite><testcase classname="c" name="stolen"/></testsuite>')
    root = tmp_path / "evil"
    root.mkdir()
    (root / ".tekton.toml").write_text(
        f'[tests]\ncommand = "ln -sf {secret} report.xml"\njunit = "report.xml"\n'
    )
    run = test_run(workspace=root, command=test_command_resolve(root, None))
    assert (root / "report.xml").is_symlink()
    assert run.outcomes == {} and not run.evidence
    assert "no JUnit report was written: per-test results are unknown" in run.reasons


@needs_bwrap
def test_a_missing_test_command_says_not_found(tmp_path: Path):
    run = test_run(
        workspace=tmp_path,
        command=test_command_resolve(tmp_path, "no-such-test-runner --all"),
    )
    assert run.exit_code == 127 and not run.evidence
    assert run.reasons[0].startswith("test command not found")


@needs_bwrap
def test_exit_code_without_failures_is_no_evidence(tmp_path: Path):
    (tmp_path / "fixture.xml").write_text(
        '<testsuite><testcase classname="c" name="ok"/></testsuite>'
    )
    (tmp_path / ".tekton.toml").write_text(
        "[tests]\ncommand = 'cp fixture.xml r.xml; exit 1'\njunit = 'r.xml'\n"
    )
    run = test_run(workspace=tmp_path, command=test_command_resolve(tmp_path, None))
    assert run.outcomes == {"c::ok": "passed"} and not run.evidence
    assert run.reasons == ["exit code 1 without a failing test: the run is not evidence"]


# --- parsing, comparing, caching (no sandbox needed) -------------------------------------


def test_junit_with_a_doctype_is_refused():
    bomb = b'<?xml version="1.0"?><!DOCTYPE t [<!ENTITY a "aaaa">]><testsuite>&a;</testsuite>'
    with pytest.raises(ValueError, match="DOCTYPE"):
        junit_parse(bomb)
    with pytest.raises(ValueError, match="not JUnit"):
        junit_parse(b"<html/>")


def fake_run(outcomes: dict[str, str], **kw) -> TestRun:
    values = {
        "command": "pytest",
        "source": "detected",
        "exit_code": 1 if any(o in ("failed", "error") for o in outcomes.values()) else 0,
        "timed_out": False,
        "duration_s": 1.0,
        "totals": {"tests": len(outcomes)},
        "outcomes": outcomes,
        "coverage": None,
        "isolation": {"isolation": "bwrap", "network": "off"},
        "stdout_tail": "",
        "stderr_tail": "",
        "evidence": True,
    }
    values.update(kw)
    return TestRun(**values)


def test_deleting_a_failing_test_does_not_ship():
    base = fake_run({"t::a": "failed", "t::b": "passed"})
    branch = fake_run({"t::b": "passed"})
    evidence = evidence_compare(base, branch, {})
    assert evidence.removed == ["t::a"] and not evidence.ship


def test_a_new_failing_test_is_newly_failing_and_an_empty_run_does_not_ship():
    base = fake_run({"t::a": "passed"})
    assert evidence_compare(
        base, fake_run({"t::a": "passed", "t::new": "failed"}), {}
    ).newly_failing == ["t::new"]
    empty = evidence_compare(base, fake_run({}, totals={"tests": 0}), {})
    assert not empty.ship and "nothing ran on the branch" in empty.reasons


def test_changed_line_coverage_counts_only_measurable_lines():
    coverage = {"files": {"a.py": {"executed": [1, 2, 3], "missing": [4, 5]}}}
    result = changed_coverage(coverage, {"a.py": {2, 4, 9}, "b.md": {1}})
    assert result == {
        "measurable": 2,
        "covered": 1,
        "percent": 50.0,
        "files": {"a.py": {"measurable": 2, "covered": 1, "uncovered_lines": [4]}},
    }
    assert changed_coverage(None, {"a.py": {1}}) is None


@pytest.mark.parametrize("make_cache", [lambda p: MemoryBaseCache(), lambda p: FileBaseCache(p)])
def test_base_cache_round_trips_and_skips_timeouts(tmp_path: Path, make_cache):
    cache = make_cache(tmp_path / "cache")
    command = TestCommand(command="pytest -q", source="detected")
    run = fake_run(
        {"t::a": "passed"},
        coverage={"totals": {}, "files": {"a.py": {"executed": [1], "missing": []}}},
    )
    calls = []

    def measure() -> TestRun:
        calls.append(1)
        return run

    first, hit1 = base_run_cached(cache, "abc123", command, measure)
    second, hit2 = base_run_cached(cache, "abc123", command, measure)
    assert (hit1, hit2, len(calls)) == (False, True, 1)
    assert second == first == run
    assert cache.get("abc124", command.key) is None
    cache.put("def456", command.key, fake_run({}, timed_out=True))
    assert cache.get("def456", command.key) is None


def test_evidence_and_runs_are_json_serialisable():
    run = fake_run({"t::a b[1]": "passed"})
    assert TestRun.from_dict(run.to_dict()) == run
    evidence = evidence_compare(run, run, {})
    assert type(evidence).from_dict(evidence.to_dict()) == evidence
    command = TestCommand(command="x", source="request", readonly=("/a",), notes=("n",))
    assert TestCommand.from_dict(command.to_dict()) == command
