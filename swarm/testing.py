"""The repository's tests as evidence: which command, run in the sandbox, measured in code.

- `test_command_resolve` picks the command: the run request, else the repository's
  `.tekton.toml` (`[tests] command`, optional `setup` and `junit`), else detection (pytest
  for a Python project, `npm test`, `go test ./...`, `cargo test`). A Python repository's
  own `.venv` (in the user's checkout) is mounted read-only and put first on PATH.
- `test_run` runs it through a Sandbox (setup first), then reads the JUnit XML and the
  `coverage json` report the run left, and returns a `TestRun`.
- `evidence_compare` sets a base run against the branch run: newly failing, newly passing
  and still failing tests, the coverage of the changed lines, and `ship`.

What counts as evidence is decided here, never by a model: a run with no JUnit report, an
empty report, a pytest collection error (exit 2 with zero cases), or a non-zero exit with no
failing test is NO evidence, never a pass; `reasons` says why. Files the sandboxed command
wrote are untrusted: they are read without following symlinks, only inside the workspace or
the run's output directory, size-capped, and XML with a DOCTYPE is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import stat
import tempfile
import tomllib
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from swarm.redact import redact
from swarm.sandbox import DEFAULT_PATH, Sandbox, SandboxLimits, SandboxResult

logger = logging.getLogger("tekton.swarm.testing")

TAIL_CHARS = 6000  # output kept in a report: the first quarter and the last three
MAX_REPORT_BYTES = 32 * 1024 * 1024  # a JUnit or coverage file larger than this is refused
OUT_MOUNT_HINT = "tekton-test-out"
PYTEST_NO_EVIDENCE_CODES = {
    2: "interrupted (collection error)",
    3: "internal error",
    4: "usage error",
    5: "no tests collected",
}
OUTCOMES = ("passed", "failed", "error", "skipped")
_NETWORK_ERROR = re.compile(
    r"Temporary failure in name resolution|Name or service not known|getaddrinfo|"
    r"nodename nor servname|Network is unreachable|Connection refused|ConnectionRefusedError|"
    r"NewConnectionError|Max retries exceeded|Failed to establish a new connection|"
    r"ENOTFOUND|ECONNREFUSED|EAI_AGAIN|ENETUNREACH|Could not resolve host|dial tcp|"
    r"No address associated with hostname",
    re.IGNORECASE,
)
NETWORK_HINT = (
    "the sandbox has no network (network: off): a test that reaches a host or resolves a "
    "name fails here by design"
)


class TestCommandError(Exception):
    """The test command cannot be resolved: bad `.tekton.toml`, a refused request, nothing
    detected. The message is one line for the stage's reason."""

    __test__ = False  # not a pytest class


# --- which command ------------------------------------------------------------------------


@dataclass(frozen=True)
class TestCommand:
    """A resolved test command; `command` is a shell line run by /bin/sh in the sandbox."""

    __test__ = False

    command: str
    source: str  # "request" | ".tekton.toml" | "detected"
    setup: str | None = None
    junit: str | None = None  # where the JUnit XML lands, relative to the workspace
    language: str = "custom"  # python | node | go | rust | custom
    runner: str = "custom"  # pytest | npm | go | cargo | custom
    venv: str | None = None  # the repository's .venv, mounted read-only
    readonly: tuple[str, ...] = ()  # the venv and the interpreter it was made from
    env: dict[str, str] = field(default_factory=dict)
    coverage: bool = False  # the command runs under coverage and writes coverage json
    notes: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """What the base-results cache keys on, with the setup step."""
        return f"{self.setup or ''}\n{self.command}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["readonly"] = list(self.readonly)
        data["notes"] = list(self.notes)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TestCommand:
        values = dict(data)
        values["readonly"] = tuple(values.get("readonly") or ())
        values["notes"] = tuple(values.get("notes") or ())
        values["env"] = dict(values.get("env") or {})
        return cls(**values)


def _safe_relative(value: str, what: str) -> str:
    path = Path(value)
    if not value.strip() or path.is_absolute() or ".." in path.parts:
        raise TestCommandError(f"{what} must be a path inside the repository, got {value!r}")
    return path.as_posix()


def _load_tekton_toml(repo: Path) -> dict[str, Any] | None:
    path = repo / ".tekton.toml"
    if path.is_symlink() or not path.is_file():
        return None
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise TestCommandError(f".tekton.toml is not valid TOML: {exc}") from None
    tests = data.get("tests")
    if tests is None:
        return None
    if not isinstance(tests, dict):
        raise TestCommandError(".tekton.toml: [tests] must be a table")
    command = tests.get("command")
    if not isinstance(command, str) or not command.strip():
        raise TestCommandError(".tekton.toml: [tests] command must be a non-empty string")
    for key in ("setup", "junit"):
        if key in tests and (not isinstance(tests[key], str) or not tests[key].strip()):
            raise TestCommandError(f".tekton.toml: [tests] {key} must be a non-empty string")
    unknown = set(tests) - {"command", "setup", "junit"}
    if unknown:
        raise TestCommandError(f".tekton.toml: unknown [tests] key(s) {', '.join(sorted(unknown))}")
    return tests


def _venv_facts(venv: Path) -> tuple[tuple[str, ...], bool, bool]:
    """The paths a venv needs inside (itself and its base interpreter's prefix), and whether
    pytest and coverage are installed in it, read from its files: running the venv's
    interpreter on the host would run whatever its .pth files say."""
    readonly = [str(venv.resolve())]
    cfg = venv / "pyvenv.cfg"
    try:
        for line in cfg.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home" and value.strip():
                prefix = Path(value.strip()).resolve().parent
                if prefix.is_dir() and not str(prefix).startswith(("/usr", "/bin", "/lib")):
                    readonly.append(str(prefix))
    except OSError:
        pass
    packages = list(venv.glob("lib/python3*/site-packages"))
    has = {name: any((p / name).is_dir() for p in packages) for name in ("pytest", "coverage")}
    return tuple(readonly), has["pytest"], has["coverage"]


def _is_python(repo: Path) -> bool:
    if any(
        (repo / name).is_file()
        for name in (
            "pyproject.toml",
            "setup.py",
            "setup.cfg",
            "pytest.ini",
            "tox.ini",
            "conftest.py",
        )
    ):
        return True
    return any(repo.glob("test_*.py")) or any(repo.glob("tests/**/test_*.py"))


def test_command_resolve(
    repo_path: str | Path,
    requested: str | None,
    *,
    checkout: str | Path | None = None,
    venv: str | Path | None = None,
    sandbox_mode: str = "bwrap",
    out_dir: str = "/tmp/" + OUT_MOUNT_HINT,
) -> TestCommand:
    """Pick the test command for `repo_path` (the workspace or the checkout).

    `checkout` is the user's checkout where a `.venv` lives (default `repo_path`); `venv`
    names one explicitly. Under `sandbox_mode="none"` a typed command is refused: with no
    isolation only the repository's own `.tekton.toml` or detection may name a command.
    `out_dir` is where a detected pytest writes its JUnit and coverage reports (test_run
    mounts its output directory there). Raises TestCommandError with a one-line reason.
    """
    repo = Path(repo_path)
    if not repo.is_dir():
        raise TestCommandError(f"repository {repo} is not a directory")
    checkout_dir = Path(checkout) if checkout else repo
    venv_dir = Path(venv) if venv else checkout_dir / ".venv"
    has_venv = (venv_dir / "bin" / "python").exists()
    if has_venv:
        # A linked .venv is mounted at its real place: the link itself lives in the user's
        # checkout, which the sandbox never shows (the workspace is mounted there).
        venv_dir = venv_dir.resolve()
    readonly: tuple[str, ...] = ()
    has_pytest = has_coverage = False
    env: dict[str, str] = {}
    if has_venv:
        readonly, has_pytest, has_coverage = _venv_facts(venv_dir)
        env = {"VIRTUAL_ENV": str(venv_dir), "PATH": f"{venv_dir}/bin:{DEFAULT_PATH}"}
    python = f"{venv_dir}/bin/python" if has_venv else "python3"

    if requested is not None:
        if not requested.strip():
            raise TestCommandError("the requested test command is empty")
        if sandbox_mode == "none":
            raise TestCommandError(
                "TEKTON_SANDBOX=none: a typed test command is refused; only the repository's "
                ".tekton.toml or detection may name one"
            )
        return TestCommand(
            command=requested.strip(),
            source="request",
            language="python" if has_venv else "custom",
            runner=_runner_of(requested),
            venv=str(venv_dir) if has_venv else None,
            readonly=readonly,
            env=env,
        )
    tests = _load_tekton_toml(repo)
    if tests is not None:
        return TestCommand(
            command=tests["command"].strip(),
            source=".tekton.toml",
            setup=tests.get("setup"),
            junit=_safe_relative(tests["junit"], ".tekton.toml junit")
            if "junit" in tests
            else None,
            language="python" if has_venv else "custom",
            runner=_runner_of(tests["command"]),
            venv=str(venv_dir) if has_venv else None,
            readonly=readonly,
            env=env,
        )
    if _is_python(repo):
        notes = []
        if has_venv and not has_pytest:
            notes.append(f"{venv_dir} has no pytest installed")
        if not has_venv:
            notes.append("no .venv in the checkout: the system python3 runs the tests")
        junit = f"{out_dir}/junit.xml"
        pytest_args = f"-q -rA -p no:cacheprovider -o junit_family=xunit1 --junitxml={junit}"
        q = shlex.quote(python)
        if has_coverage:
            data = f"{out_dir}/.coverage"
            command = (
                f"{q} -m coverage run --data-file={data} --source=. --omit='.venv/*' "
                f"-m pytest {pytest_args}; rc=$?; "
                f"{q} -m coverage json --data-file={data} -q -o {out_dir}/coverage.json "
                f">/dev/null 2>&1; exit $rc"
            )
        else:
            command = f"{q} -m pytest {pytest_args}"
        return TestCommand(
            command=command,
            source="detected",
            junit=None,  # in the output directory, not the workspace
            language="python",
            runner="pytest",
            venv=str(venv_dir) if has_venv else None,
            readonly=readonly,
            env={**env, "PYTHONDONTWRITEBYTECODE": "1"},
            coverage=has_coverage,
            notes=tuple(notes),
        )
    if (repo / "package.json").is_file():
        return TestCommand(command="npm test", source="detected", language="node", runner="npm")
    if (repo / "go.mod").is_file():
        return TestCommand(
            command="go test ./...",
            source="detected",
            language="go",
            runner="go",
            env={"GOFLAGS": "-mod=mod", "GOCACHE": "/tmp/go-cache", "GOPATH": "/tmp/go"},
        )
    if (repo / "Cargo.toml").is_file():
        return TestCommand(
            command="cargo test --offline", source="detected", language="rust", runner="cargo"
        )
    raise TestCommandError(
        "no test command: none requested, no [tests] command in .tekton.toml, and no Python, "
        "npm, Go or Cargo project detected"
    )


test_command_resolve.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def _runner_of(command: str) -> str:
    words = command.split()
    if "pytest" in words or (words and words[0].endswith("pytest")):
        return "pytest"
    return "custom"


# --- one run ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TestRun:
    """One measured run of the test command. JSON-serialisable via to_dict/from_dict."""

    __test__ = False

    command: str
    source: str
    exit_code: int | None
    timed_out: bool
    duration_s: float
    totals: dict[str, int]  # tests, passed, failed, errors, skipped
    outcomes: dict[str, str]  # test id -> passed | failed | error | skipped
    coverage: dict[str, Any] | None  # {"totals": {...}, "files": {path: {executed, missing}}}
    isolation: dict[str, Any]
    stdout_tail: str
    stderr_tail: str
    evidence: bool
    reasons: list[str] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)
    messages: dict[str, str] = field(default_factory=dict)  # failing test id -> message

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TestRun:
        return cls(**dict(data))

    def failing(self) -> set[str]:
        return {t for t, o in self.outcomes.items() if o in ("failed", "error")}


def _clip(text: str, limit: int = TAIL_CHARS) -> str:
    if len(text) <= limit:
        return text
    head = limit // 4
    return f"{text[:head]}\n[... {len(text) - limit} characters cut ...]\n{text[-(limit - head) :]}"


def _read_untrusted(path: Path, allowed_roots: Sequence[Path]) -> bytes | None:
    """A file the sandboxed command wrote: no symlinks, only under an allowed root, capped."""
    try:
        real = Path(os.path.realpath(path.parent)) / path.name
    except OSError:
        return None
    if not any(real.is_relative_to(Path(os.path.realpath(r))) for r in allowed_roots):
        return None
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None  # a FIFO or device planted where the report should be
        data = handle.read(MAX_REPORT_BYTES + 1)
    return data if len(data) <= MAX_REPORT_BYTES else None


def _case_id(case: Any) -> str:
    name = case.name or ""
    classname = case.classname or ""
    file = case._elem.get("file")  # pytest's xunit1 family records the test file
    if file:
        module = file[:-3].replace("/", ".") if file.endswith(".py") else ""
        rest = (
            classname[len(module) :].lstrip(".") if module and classname.startswith(module) else ""
        )
        parts = [file, *([p for p in rest.split(".") if p] if rest else []), name]
        return "::".join(parts)
    return f"{classname}::{name}" if classname else name


def _case_outcome(case: Any) -> tuple[str, str]:
    from junitparser import Error, Failure, Skipped

    results = list(case.result)
    for kind, outcome in ((Failure, "failed"), (Error, "error"), (Skipped, "skipped")):
        for res in results:
            if isinstance(res, kind):
                message = (res.message or "") + ("\n" + res.text if res.text else "")
                return outcome, message.strip()
    return "passed", ""


def junit_parse(data: bytes) -> tuple[dict[str, str], dict[str, str]]:
    """Per-test outcomes and failure messages from JUnit XML. Raises ValueError when the
    document is not JUnit XML or carries a DOCTYPE (entities are never expanded)."""
    from junitparser import JUnitXml, TestSuite

    if b"<!DOCTYPE" in data[:4096].upper() or b"<!ENTITY" in data.upper():
        raise ValueError("JUnit XML with a DOCTYPE or entities is refused")
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError as exc:
        raise ValueError(f"JUnit XML does not parse: {exc}") from None
    if root.tag not in ("testsuites", "testsuite"):
        raise ValueError(f"not JUnit XML (root element <{root.tag}>)")
    xml = JUnitXml.fromroot(root)
    suites = [xml] if isinstance(xml, TestSuite) else list(xml)
    outcomes: dict[str, str] = {}
    messages: dict[str, str] = {}
    for suite in suites:
        for case in suite:
            test_id = _case_id(case)
            outcome, message = _case_outcome(case)
            outcomes[test_id] = outcome
            if outcome in ("failed", "error") and message:
                messages[test_id] = _clip(message, 2000)
    return outcomes, messages


def coverage_parse(data: bytes, *, mount_at: str) -> dict[str, Any]:
    """Totals and per-file executed/missing lines from `coverage json` output, with paths
    made relative to the repository."""
    raw = json.loads(data)
    files = {}
    prefix = mount_at.rstrip("/") + "/"
    for name, info in (raw.get("files") or {}).items():
        rel = name[len(prefix) :] if name.startswith(prefix) else name
        files[rel] = {
            "executed": sorted(int(n) for n in info.get("executed_lines", [])),
            "missing": sorted(int(n) for n in info.get("missing_lines", [])),
        }
    totals = raw.get("totals") or {}
    return {
        "totals": {
            "statements": int(totals.get("num_statements", 0)),
            "covered": int(totals.get("covered_lines", 0)),
            "missing": int(totals.get("missing_lines", 0)),
            "percent": round(float(totals.get("percent_covered", 0.0)), 2),
        },
        "files": files,
    }


def _totals(outcomes: Mapping[str, str]) -> dict[str, int]:
    values = list(outcomes.values())
    return {
        "tests": len(values),
        "passed": values.count("passed"),
        "failed": values.count("failed"),
        "errors": values.count("error"),
        "skipped": values.count("skipped"),
    }


SandboxFactory = Callable[..., Any]


def test_run(
    *,
    workspace: str | Path,
    command: TestCommand,
    mount_at: str | Path | None = None,
    hidden: Sequence[str | Path] = (),
    limits: SandboxLimits = SandboxLimits(),
    mode: str = "bwrap",
    sandbox_factory: SandboxFactory = Sandbox,
) -> TestRun:
    """Run `command` in a fresh sandbox over `workspace` and measure it.

    Side effects: files the tests write in the workspace stay there; the JUnit and
    coverage reports of a detected pytest go to a temporary output directory that is
    removed afterwards. Raises SandboxUnavailable when the sandbox cannot start.
    """
    workspace = Path(workspace)
    inside_root = str(Path(mount_at) if mount_at else workspace)
    out_host = Path(tempfile.mkdtemp(prefix="tekton-tests-"))
    # A detected pytest names its output directory; map that name to this run's directory.
    command = _with_out_dir(command, str(out_host))
    try:
        box = sandbox_factory(
            workspace=workspace,
            mount_at=Path(mount_at) if mount_at else None,
            readonly=[Path(p) for p in command.readonly],
            hidden=[Path(p) for p in hidden],
            env=command.env,
            limits=limits,
            mode=mode,
            writable=[out_host],
        )
        setup_result: SandboxResult | None = None
        if command.setup:
            setup_result = box.run(["/bin/sh", "-c", command.setup], limits=limits)
        if setup_result is not None and (setup_result.exit_code != 0 or setup_result.timed_out):
            result = setup_result
            ran_tests = False
        else:
            result = box.run(["/bin/sh", "-c", command.command], limits=limits)
            ran_tests = True
        junit_data = None
        if ran_tests:
            if command.junit:
                junit_data = _read_untrusted(workspace / command.junit, [workspace])
            else:
                junit_data = _read_untrusted(out_host / "junit.xml", [out_host])
        coverage_data = (
            _read_untrusted(out_host / "coverage.json", [out_host]) if command.coverage else None
        )
    finally:
        shutil.rmtree(out_host, ignore_errors=True)
    return _measure(
        command=command,
        result=result,
        ran_tests=ran_tests,
        setup_failed=not ran_tests,
        junit_data=junit_data,
        coverage_data=coverage_data,
        inside_root=inside_root,
    )


test_run.__test__ = False  # type: ignore[attr-defined]


def _with_out_dir(command: TestCommand, out: str) -> TestCommand:
    placeholder = "/tmp/" + OUT_MOUNT_HINT
    if placeholder not in command.command:
        return command
    values = command.to_dict()
    values["command"] = command.command.replace(placeholder, out)
    return TestCommand.from_dict(values)


def _measure(
    *,
    command: TestCommand,
    result: SandboxResult,
    ran_tests: bool,
    setup_failed: bool,
    junit_data: bytes | None,
    coverage_data: bytes | None,
    inside_root: str,
) -> TestRun:
    reasons: list[str] = []
    hints: list[str] = []
    outcomes: dict[str, str] = {}
    messages: dict[str, str] = {}
    if setup_failed:
        what = "timed out" if result.timed_out else f"exited {result.exit_code}"
        reasons.append(f"setup command {what}: the tests did not run")
    elif result.timed_out:
        reasons.append(f"the test run was stopped at the limit ({result.reason})")
    elif result.exit_code == 127:
        reasons.append(f"test command not found: {_first_line(result.stderr) or command.command}")
    if ran_tests and junit_data is None and not result.timed_out:
        reasons.append("no JUnit report was written: per-test results are unknown")
    if junit_data is not None:
        try:
            outcomes, messages = junit_parse(junit_data)
        except ValueError as exc:
            reasons.append(str(exc))
    totals = _totals(outcomes)
    if junit_data is not None and not totals["tests"] and not reasons:
        reasons.append("the JUnit report lists no tests: nothing ran")
    code = result.exit_code
    if command.runner == "pytest" and code in PYTEST_NO_EVIDENCE_CODES:
        reasons.append(f"pytest exit {code}: {PYTEST_NO_EVIDENCE_CODES[code]}")
    elif (
        ran_tests
        and code not in (0, None)
        and not (totals["failed"] or totals["errors"])
        and not reasons
    ):
        reasons.append(f"exit code {code} without a failing test: the run is not evidence")
    coverage = None
    if coverage_data is not None:
        try:
            coverage = coverage_parse(coverage_data, mount_at=inside_root)
        except (ValueError, TypeError, AttributeError) as exc:
            hints.append(f"coverage report unreadable: {exc}")
    output = f"{result.stdout}\n{result.stderr}\n" + "\n".join(messages.values())
    if (
        result.network == "off"
        and (totals["failed"] or totals["errors"] or code)
        and _NETWORK_ERROR.search(output)
    ):
        hints.append(NETWORK_HINT)
    return TestRun(
        command=command.command,
        source=command.source,
        exit_code=code,
        timed_out=result.timed_out,
        duration_s=result.duration_s,
        totals=totals,
        outcomes=outcomes,
        coverage=coverage,
        isolation={**result.facts(), "reason": result.reason},
        stdout_tail=redact(_clip(result.stdout)),
        stderr_tail=redact(_clip(result.stderr)),
        evidence=not reasons,
        reasons=reasons,
        hints=hints,
        messages=redact(messages),
    )


def _first_line(text: str) -> str:
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "")[:200]


# --- base against branch ------------------------------------------------------------------


@dataclass(frozen=True)
class TestEvidence:
    """What the tests say about a change, computed from two runs."""

    __test__ = False

    ship: bool
    reasons: list[str]
    base: dict[str, Any]  # totals, exit code, evidence of the base run
    branch: dict[str, Any]
    newly_failing: list[str]
    newly_passing: list[str]
    still_failing: list[str]
    removed: list[str]  # tests of the base run that the branch no longer has
    changed_coverage: dict[str, Any] | None
    hints: list[str] = field(default_factory=list)
    isolation: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TestEvidence:
        return cls(**dict(data))


def _summary(run: TestRun) -> dict[str, Any]:
    return {
        "command": run.command,
        "source": run.source,
        "exit_code": run.exit_code,
        "timed_out": run.timed_out,
        "duration_s": run.duration_s,
        "totals": dict(run.totals),
        "evidence": run.evidence,
        "reasons": list(run.reasons),
    }


def changed_coverage(
    coverage: Mapping[str, Any] | None, changed_lines: Mapping[str, set[int]]
) -> dict[str, Any] | None:
    """Coverage of the changed lines: per file, the changed lines coverage can measure
    (changed ∩ (executed ∪ missing)) and those that ran."""
    if coverage is None:
        return None
    files = coverage.get("files", {})
    per_file: dict[str, Any] = {}
    measurable = covered = 0
    for path, lines in sorted(changed_lines.items()):
        info = files.get(path)
        if info is None:
            continue
        executed = set(info.get("executed", []))
        lines_measurable = set(lines) & (executed | set(info.get("missing", [])))
        if not lines_measurable:
            continue
        lines_covered = lines_measurable & executed
        per_file[path] = {
            "measurable": len(lines_measurable),
            "covered": len(lines_covered),
            "uncovered_lines": sorted(lines_measurable - lines_covered),
        }
        measurable += len(lines_measurable)
        covered += len(lines_covered)
    return {
        "measurable": measurable,
        "covered": covered,
        "percent": round(100.0 * covered / measurable, 2) if measurable else None,
        "files": per_file,
    }


def evidence_compare(
    base: TestRun, branch: TestRun, changed_lines: Mapping[str, set[int]]
) -> TestEvidence:
    """Set the branch run against the base run. `ship` is False whenever a test newly
    fails, the branch run timed out, nothing ran, or either run is no evidence."""
    reasons: list[str] = []
    bad = ("failed", "error")
    newly_failing = sorted(
        t for t, o in branch.outcomes.items() if o in bad and base.outcomes.get(t) not in bad
    )
    newly_passing = sorted(
        t for t, o in branch.outcomes.items() if o == "passed" and base.outcomes.get(t) in bad
    )
    still_failing = sorted(
        t for t, o in branch.outcomes.items() if o in bad and base.outcomes.get(t) in bad
    )
    removed = sorted(set(base.outcomes) - set(branch.outcomes))
    if branch.timed_out:
        reasons.append("the branch run timed out")
    if not branch.evidence:
        reasons += [f"branch run is no evidence: {r}" for r in branch.reasons]
    if not base.evidence:
        reasons += [f"base run is no evidence: {r}" for r in base.reasons]
    if branch.evidence and not branch.totals.get("tests"):
        reasons.append("nothing ran on the branch")
    if newly_failing:
        reasons.append(f"{len(newly_failing)} test(s) newly failing")
    removed_failing = [t for t in removed if base.outcomes.get(t) in bad]
    if removed_failing:
        reasons.append(
            f"{len(removed_failing)} test(s) that failed on the base are gone on the branch"
        )
    hints = sorted({*base.hints, *branch.hints})
    return TestEvidence(
        ship=not reasons,
        reasons=reasons,
        base=_summary(base),
        branch=_summary(branch),
        newly_failing=newly_failing,
        newly_passing=newly_passing,
        still_failing=still_failing,
        removed=removed,
        changed_coverage=changed_coverage(branch.coverage, changed_lines),
        hints=hints,
        isolation=dict(branch.isolation),
    )


# --- the base results cache ---------------------------------------------------------------


class BaseResultsCache(Protocol):
    """Base runs by (base sha, command): a base commit's results do not change."""

    def get(self, base_sha: str, command: str) -> TestRun | None: ...

    def put(self, base_sha: str, command: str, run: TestRun) -> None: ...


def _cacheable(run: TestRun) -> bool:
    # A run stopped at the limit may pass on a quieter machine: measure it again.
    return not run.timed_out


class MemoryBaseCache:
    def __init__(self) -> None:
        self._runs: dict[tuple[str, str], dict[str, Any]] = {}

    def get(self, base_sha: str, command: str) -> TestRun | None:
        data = self._runs.get((base_sha, command))
        return TestRun.from_dict(data) if data is not None else None

    def put(self, base_sha: str, command: str, run: TestRun) -> None:
        if _cacheable(run):
            self._runs[(base_sha, command)] = run.to_dict()


class FileBaseCache:
    """One JSON file per (base sha, command) under `root`; written atomically."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, base_sha: str, command: str) -> Path:
        digest = hashlib.sha256(f"{base_sha}\0{command}".encode()).hexdigest()
        return self.root / f"{digest}.json"

    def get(self, base_sha: str, command: str) -> TestRun | None:
        path = self._path(base_sha, command)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if data.get("base_sha") != base_sha or data.get("command") != command:
            return None
        try:
            return TestRun.from_dict(data["run"])
        except (KeyError, TypeError):
            return None

    def put(self, base_sha: str, command: str, run: TestRun) -> None:
        if not _cacheable(run):
            return
        self.root.mkdir(parents=True, exist_ok=True)
        path = self._path(base_sha, command)
        payload = {"base_sha": base_sha, "command": command, "run": run.to_dict()}
        fd, tmp = tempfile.mkstemp(dir=self.root, suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle)
        os.replace(tmp, path)


def base_run_cached(
    cache: BaseResultsCache, base_sha: str, command: TestCommand, run: Callable[[], TestRun]
) -> tuple[TestRun, bool]:
    """The base run from `cache`, or `run()` stored there; and whether it was cached."""
    hit = cache.get(base_sha, command.key)
    if hit is not None:
        return hit, True
    fresh = run()
    cache.put(base_sha, command.key, fresh)
    return fresh, False
