"""Escape attempts from inside the sandbox (issue 8, sections 4 and 7).

Each attempt is made for real through bwrap and must fail; where it makes the test mean
something, the same attempt is made outside the sandbox (mode "none" or a plain subprocess)
and must succeed there, so a test cannot pass because the attempt itself was broken.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
import tracemalloc
import uuid
from pathlib import Path

import pytest

from swarm import sandbox as sandbox_mod
from swarm.sandbox import (
    SANDBOX_ID,
    BoundedOutput,
    Sandbox,
    SandboxLimits,
    SandboxUnavailable,
    env_is_secret,
    sandbox_probe,
)
from tests.swarm.conftest import git

PROBE_OK, PROBE_WHY = sandbox_probe()
needs_bwrap = pytest.mark.skipif(not PROBE_OK, reason=f"sandbox unavailable: {PROBE_WHY}")
PY = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else None
needs_py = pytest.mark.skipif(PY is None, reason="no system python3 inside the toolchain")


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    (path / "hello.txt").write_text("hello\n")
    return path


def both(**kw) -> tuple[Sandbox, Sandbox]:
    return Sandbox(**kw), Sandbox(mode="none", **kw)


def sh(box: Sandbox, script: str, **kw):
    return box.run(["/bin/sh", "-c", script], **kw)


def py(box: Sandbox, code: str, **kw):
    return box.run([PY, "-c", code], **kw)


# --- the basics -------------------------------------------------------------------------


@needs_bwrap
def test_probe_reports_a_working_sandbox_with_its_uid():
    ok, why = sandbox_probe()
    assert ok, why
    expected = SANDBOX_ID if os.geteuid() == 0 else os.geteuid()
    assert why.endswith(f"uid {expected}")


@needs_bwrap
def test_command_runs_in_the_workspace_and_writes_there(ws: Path):
    result = sh(Sandbox(workspace=ws), "cat hello.txt; pwd; echo made > new.txt")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == ["hello", str(ws)]
    assert (ws / "new.txt").read_text() == "made\n"
    assert result.isolation == "bwrap" and result.network == "off"


@needs_bwrap
def test_workspace_appears_at_mount_at(ws: Path, tmp_path: Path):
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "hello.txt").write_text("the user's copy\n")
    result = sh(Sandbox(workspace=ws, mount_at=checkout), "pwd; cat hello.txt; echo x > w.txt")
    assert result.stdout.splitlines() == [str(checkout), "hello"]
    assert (ws / "w.txt").exists() and not (checkout / "w.txt").exists()


# --- escapes ----------------------------------------------------------------------------


@needs_bwrap
def test_writing_outside_the_workspace_fails(ws: Path, tmp_path: Path):
    shared = tmp_path / "shared"
    shared.mkdir()
    elsewhere = tmp_path / "elsewhere.txt"
    script = f"echo pwned > {shared}/f.txt; echo pwned > {elsewhere}; echo pwned > /etc/pwned"
    inside, outside = both(workspace=ws, readonly=[shared])
    result = sh(inside, script)
    assert "Read-only file system" in result.stderr
    assert not (shared / "f.txt").exists() and not elsewhere.exists()
    assert not Path("/etc/pwned").exists()
    sh(outside, f"echo ok > {shared}/f.txt; echo ok > {elsewhere}")
    assert (shared / "f.txt").read_text() == "ok\n" and elsewhere.read_text() == "ok\n"


@needs_bwrap
def test_hidden_data_directory_is_empty_inside(ws: Path, tmp_path: Path):
    tree = tmp_path / "install"
    (tree / "data").mkdir(parents=True)
    (tree / "bin").mkdir()
    (tree / "data" / "db.sqlite3").write_text("rows")
    (tree / "bin" / "tool").write_text("tool")
    inside, outside = both(workspace=ws, readonly=[tree], hidden=[tree / "data"])
    result = sh(inside, f"cat {tree}/bin/tool; echo; cat {tree}/data/db.sqlite3; ls -A {tree}/data")
    assert result.stdout.splitlines()[0] == "tool"  # the rest of the tree is there
    assert "rows" not in result.stdout
    assert "No such file" in result.stderr
    assert "rows" in sh(outside, f"cat {tree}/data/db.sqlite3").stdout


@needs_bwrap
def test_host_home_canary_is_unreadable(ws: Path):
    canary = Path.home() / f".tekton-canary-{uuid.uuid4().hex}"
    canary.write_text("canary-secret")
    try:
        inside, outside = both(workspace=ws)
        result = sh(inside, f"cat {canary}; ls -A {Path.home()}; echo HOME=$HOME; ls -A $HOME")
        assert "canary-secret" not in result.stdout
        assert canary.name not in result.stdout
        assert "HOME=/tmp/home" in result.stdout
        assert result.stdout.strip().endswith("HOME=/tmp/home")  # and it is empty
        assert "canary-secret" in sh(outside, f"cat {canary}").stdout
    finally:
        canary.unlink()


@needs_bwrap
def test_secret_env_is_absent_even_when_passed(ws: Path, monkeypatch):
    monkeypatch.setenv("TEKTON_TEST_HOST_TOKEN", "host-secret-value")
    passed = {
        "OPENAI_API_KEY": "sk-proj-abcdefghijklmnopqrstuvwx",
        "DATABASE_URL": "postgres://u:p@db/x",
        "REDIS_URL": "redis://localhost:6379/0",
        "CELERY_BROKER_URL": "amqp://",
        "DJANGO_SECRET_KEY": "dj",
        "DB_PASSWORD": "pw",
        "HARMLESS_NAME": "sk-ant-api03-abcdefghijklmnop",  # a key by its value
        "PLAIN": "visible",
    }
    for box in both(workspace=ws, env=passed):
        result = box.run(["/usr/bin/env"])
        names = {line.split("=", 1)[0] for line in result.stdout.splitlines()}
        assert "PLAIN=visible" in result.stdout.splitlines()
        assert names.isdisjoint({*passed} - {"PLAIN"}), result.stdout
        assert "TEKTON_TEST_HOST_TOKEN" not in names
        assert "host-secret-value" not in result.stdout
        assert set(result.env_dropped) == {*passed} - {"PLAIN"}
    # Outside, the process environment does carry the host's secret.
    assert "host-secret-value" in subprocess.run(["env"], capture_output=True, text=True).stdout


@needs_bwrap
@needs_py
def test_forking_past_the_process_limit_fails(ws: Path):
    code = (
        "import subprocess\n"
        "procs, failed = [], 0\n"
        "for _ in range(100):\n"
        "    try:\n"
        "        procs.append(subprocess.Popen(['sleep', '30']))\n"
        "    except OSError:\n"
        "        failed += 1\n"
        "print(len(procs), failed)\n"
        "for p in procs:\n"
        "    p.kill()\n"
    )
    limits = SandboxLimits(processes=20, wall_s=60)
    started, failed = map(int, py(Sandbox(workspace=ws), code, limits=limits).stdout.split())
    assert started < 20 and failed > 80
    if os.geteuid() == 0:
        # Root on the host is exempt from RLIMIT_NPROC: the same limit without the user
        # namespace stops nothing, which is why the sandbox runs as SANDBOX_ID.
        out = py(Sandbox(workspace=ws, mode="none"), code, limits=limits).stdout.split()
        assert out == ["100", "0"]


@needs_bwrap
@needs_py
def test_allocating_past_the_memory_limit_fails(ws: Path):
    code = "b = bytearray(400 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096]); print('ok')"
    result = py(Sandbox(workspace=ws), code, limits=SandboxLimits(memory_mb=128))
    assert result.exit_code != 0 and "MemoryError" in result.stderr
    assert subprocess.run([PY, "-c", code], capture_output=True, text=True).stdout == "ok\n"


@needs_bwrap
@pytest.mark.skipif(not os.access("/usr/bin/node", os.X_OK), reason="no node here")
def test_node_starts_under_the_memory_limit(ws: Path):
    # Node reserves far more address space than it uses: under RLIMIT_AS it would not
    # start at all with a limit this small.
    result = Sandbox(workspace=ws).run(
        ["/usr/bin/node", "-e", "console.log([1,2,3].map(x => x * 2).join(','))"],
        limits=SandboxLimits(memory_mb=256),
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "2,4,6"


@needs_bwrap
@needs_py
def test_tcp_port_on_host_loopback_is_unreachable(ws: Path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    port = server.getsockname()[1]
    accepted = []

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted.append(conn)
            conn.close()

    threading.Thread(target=accept, daemon=True).start()
    code = (
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=3); print('connected')\n"
        "except OSError as e:\n"
        "    print('refused', type(e).__name__)\n"
    )
    try:
        inside, outside = both(workspace=ws)
        assert py(inside, code).stdout.startswith("refused")
        assert py(outside, code).stdout.strip() == "connected"
        assert len(accepted) == 1  # only the outside attempt arrived
    finally:
        server.close()


@needs_bwrap
@needs_py
def test_host_unix_sockets_are_unreachable(ws: Path):
    paths = [Path(f"/tmp/tekton-test-{uuid.uuid4().hex[:8]}.sock")]
    if os.access("/run", os.W_OK):
        paths.append(Path(f"/run/tekton-test-{uuid.uuid4().hex[:8]}.sock"))
    redis = Path("/var/run/redis/redis-server.sock")
    servers = []
    try:
        for path in paths:
            server = socket.socket(socket.AF_UNIX)
            server.bind(str(path))
            os.chmod(path, 0o777)  # so a refusal inside is the sandbox's doing
            server.listen(5)
            servers.append(server)
        targets = [*paths, *([redis] if redis.exists() else [])]
        code = (
            "import socket, sys\n"
            "for p in sys.argv[1:]:\n"
            "    s = socket.socket(socket.AF_UNIX)\n"
            "    try:\n"
            "        s.connect(p); print('connected')\n"
            "    except OSError as e:\n"
            "        print('failed', type(e).__name__)\n"
        )
        inside, outside = both(workspace=ws)
        assert (
            inside.run([PY, "-c", code, *map(str, targets)]).stdout.split().count("connected") == 0
        )
        out = outside.run([PY, "-c", code, *map(str, paths)]).stdout.split()
        assert out.count("connected") == len(paths)
    finally:
        for server in servers:
            server.close()
        for path in paths:
            path.unlink(missing_ok=True)


@pytest.fixture
def worktree(tmp_path: Path) -> tuple[Path, Path]:
    """A repository with a credential in its remote URL, and a linked worktree of it."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "app.py").write_text("print('hi')\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial")
    git(repo, "remote", "add", "origin", "https://alice:hunter2@git.example.invalid/app.git")
    wt = tmp_path / "data" / "workspaces" / "run-1"
    git(repo, "worktree", "add", "-q", "--detach", str(wt))
    return repo, wt


@needs_bwrap
def test_rewriting_the_worktree_git_file_fails(worktree, tmp_path: Path):
    repo, wt = worktree
    before = (wt / ".git").read_text()
    planted = tmp_path / "planted"
    script = (
        f"echo 'gitdir: {planted}' > .git; "
        "for d in /tmp/.tekton-git/hooks /tmp/.tekton-git/worktrees/run-1; do "
        "echo 'exit 0' > $d/pwn; done; "
        "echo '[core] fsmonitor = /tmp/x' >> /tmp/.tekton-git/config; "
        "git status --porcelain && echo STATUS-OK; git log --oneline | wc -l; "
        "git config --list"
    )
    inside = Sandbox(workspace=wt, mount_at=repo)  # shown at the user's checkout path
    result = sh(inside, script)
    assert (wt / ".git").read_text() == before
    assert not list((repo / ".git" / "hooks").glob("pwn"))
    assert "fsmonitor" not in (repo / ".git" / "config").read_text()
    assert "STATUS-OK" in result.stdout  # git inside still sees the worktree...
    assert "hunter2" not in result.stdout  # ...but not the remote's credentials
    assert result.stderr.count("Read-only file system") >= 3
    # The host's git still works on the worktree, and on the user's checkout.
    assert git(wt, "status", "--porcelain") == ""
    assert git(repo, "status", "--porcelain") == ""
    # Outside the sandbox the same write goes through (restored at once).
    sh(Sandbox(workspace=wt, mode="none"), f"echo 'gitdir: {planted}' > .git")
    assert (wt / ".git").read_text() != before
    (wt / ".git").write_text(before)


def _pids_with_arg(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline.split(b"\0"):
                found.append(int(entry))
    return found


@needs_bwrap
def test_setsid_daemon_does_not_outlive_the_run(ws: Path):
    seconds = f"{300 + int(uuid.uuid4().int % 1000)}"  # a sleep no other test uses
    script = f"setsid sleep {seconds} < /dev/null > /dev/null 2>&1 & echo started"
    result = sh(Sandbox(workspace=ws), script)
    assert result.stdout.strip() == "started"
    time.sleep(0.2)
    assert _pids_with_arg(seconds) == []
    # Without the PID namespace the daemon leaves the process group and survives.
    sh(Sandbox(workspace=ws, mode="none"), script)
    time.sleep(0.2)
    survivors = _pids_with_arg(seconds)
    for pid in survivors:
        os.kill(pid, 9)
    assert survivors


@needs_bwrap
def test_fifty_megabytes_of_output_are_bounded_with_head_and_tail(ws: Path):
    script = "echo HEAD-MARK; head -c 50000000 /dev/zero | tr '\\0' x; echo; echo TAIL-MARK"
    limit = 64 * 1024
    tracemalloc.start()
    try:
        result = sh(Sandbox(workspace=ws), script, limits=SandboxLimits(output_bytes=limit))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.exit_code == 0
    assert result.stdout.startswith("HEAD-MARK\n")
    assert result.stdout.rstrip().endswith("TAIL-MARK")
    total = 50_000_000 + len("HEAD-MARK\n") + len("\nTAIL-MARK\n")
    assert result.stdout_dropped == total - limit
    assert f"[... {total - limit} bytes dropped ...]" in result.stdout
    assert peak < 8 * limit + 2_000_000  # never the whole 50 MB


@needs_bwrap
def test_sleep_past_the_wall_limit_is_killed_quickly(ws: Path):
    started = time.monotonic()
    result = Sandbox(workspace=ws).run(["sleep", "60"], limits=SandboxLimits(wall_s=1))
    assert result.timed_out
    assert time.monotonic() - started < 5
    assert "wall time limit of 1 s" in result.reason


@needs_bwrap
def test_a_command_ignoring_term_is_killed_after_the_grace_period(ws: Path):
    started = time.monotonic()
    result = sh(Sandbox(workspace=ws), "trap '' TERM; sleep 60", limits=SandboxLimits(wall_s=1))
    elapsed = time.monotonic() - started
    assert result.timed_out and result.exit_code is None
    assert 1 + sandbox_mod.GRACE_S - 0.5 < elapsed < 1 + sandbox_mod.GRACE_S + 3


@needs_bwrap
def test_a_command_that_closes_its_output_keeps_its_wall_time_then_is_stopped(ws: Path):
    script = "exec >&- 2>&-; sleep 1; echo done > after.txt; sleep 60"
    started = time.monotonic()
    result = sh(Sandbox(workspace=ws), script, limits=SandboxLimits(wall_s=3))
    assert (ws / "after.txt").read_text() == "done\n"  # not cut short when the pipes closed
    assert result.timed_out and time.monotonic() - started < 3 + sandbox_mod.GRACE_S + 2


@needs_bwrap
def test_cpu_limit_stops_a_busy_loop(ws: Path):
    result = sh(Sandbox(workspace=ws), "while :; do :; done", limits=SandboxLimits(cpu_s=1))
    assert result.exit_code == 128 + 24  # SIGXCPU
    assert "CPU time limit" in result.reason


# --- mode none, failures, helpers --------------------------------------------------------


def test_mode_none_says_so_and_still_limits(ws: Path):
    box = Sandbox(workspace=ws, mode="none", env={"GITHUB_TOKEN": "ghp_x"})
    result = sh(box, "echo $HOME; sleep 30", limits=SandboxLimits(wall_s=1))
    assert result.isolation == "none" and result.network == "host"
    assert result.facts()["isolation"] == "none"
    assert result.timed_out and result.env_dropped == ("GITHUB_TOKEN",)
    assert result.stdout.strip() != os.environ.get("HOME")


def test_missing_bwrap_is_unavailable_with_the_reason(ws: Path, monkeypatch):
    monkeypatch.setattr(sandbox_mod, "bwrap_binary", lambda: None)
    with pytest.raises(SandboxUnavailable, match="no bwrap binary"):
        Sandbox(workspace=ws).run(["true"])
    ok, why = sandbox_probe()
    assert not ok and "bwrap" in why


def test_bwrap_that_cannot_start_is_unavailable(ws: Path, monkeypatch):
    monkeypatch.setattr(sandbox_mod, "bwrap_binary", lambda: "/bin/false")
    with pytest.raises(SandboxUnavailable):
        Sandbox(workspace=ws).run(["true"])


@needs_bwrap
def test_a_mount_bwrap_cannot_make_is_unavailable_not_a_test_failure(ws: Path):
    # /usr is read-only inside: bwrap cannot create the mount point, and says so.
    box = Sandbox(workspace=ws, mount_at=Path("/usr/tekton-no-such-dir/ws"))
    with pytest.raises(SandboxUnavailable, match="bwrap: Can't mkdir"):
        box.run(["true"])


def test_bad_arguments_are_refused(ws: Path, tmp_path: Path):
    with pytest.raises(ValueError, match="mode"):
        Sandbox(workspace=ws, mode="docker")
    with pytest.raises(ValueError, match="not a directory"):
        Sandbox(workspace=tmp_path / "nope")
    with pytest.raises(ValueError, match="does not exist"):
        Sandbox(workspace=ws, readonly=[tmp_path / "missing"])
    with pytest.raises(ValueError, match="positive"):
        SandboxLimits(wall_s=0)
    with pytest.raises(ValueError, match="command"):
        Sandbox(workspace=ws, mode="none").run([])


def test_bounded_output_keeps_head_and_tail_and_counts_the_rest():
    buf = BoundedOutput(10)
    for chunk in (b"abc", b"defgh", b"ijklmnop", b"qrstuvwxyz"):
        buf.add(chunk)
    assert buf.dropped == 26 - 10
    assert buf.text() == "abcde\n[... 16 bytes dropped ...]\nvwxyz"
    small = BoundedOutput(10)
    small.add(b"short")
    assert small.text() == "short" and small.dropped == 0


@pytest.mark.parametrize(
    "name,value,secret",
    [
        ("ANTHROPIC_API_KEY", "x", True),
        ("aws_secret_access_key", "x", True),
        ("CELERY_RESULT_BACKEND", "x", True),
        ("DATABASE_URL", "x", True),
        ("PIP_INDEX_URL", "https://user:pw@pypi.example/simple", True),
        ("NOTES", "sk-or-v1-0123456789abcdef", True),
        ("PYTHONPATH", "/src", False),
        ("CI", "true", False),
    ],
)
def test_env_secret_rules(name: str, value: str, secret: bool):
    assert env_is_secret(name, value) is secret
