"""Per-run workspaces: a `git worktree` of the target repository at the run's base commit.

A Workspace lives under a root folder of Tekton's data directory, never inside the user's
working tree. It is rebuilt anywhere from (repository, base commit, stored patches), so
any worker with the repository at the same path can execute any stage. The change is
committed on the run's branch (`tekton/run-<id>-<uid>`) of the target repository by the
host's git: the user's checkout, index, HEAD, current branch and stash never change.

Trust: the diff comes from a model and the worktree's files from sandboxed commands, so
- every git call inside the worktree names its git directory explicitly (`--git-dir`,
  found from the repository's own registration, not from the worktree's `.git` file,
  which a sandboxed command could rewrite to point at a planted git directory);
- a diff is checked before git sees it: no absolute paths, `..`, `.git`, symbolic links
  that leave the tree, binary patches, symbolic links or submodules created;
- the index of the worktree holds exactly base + applied patches (`git apply --index`),
  so what a command left behind in the files (caches, reports) is never committed.

Checking out every file is most of the cost of a workspace (on a slow disk, seconds for
10,000 files), so a finished run's worktree is kept as its repository's spare (one per
repository) and the next run's workspace is that spare moved into place and reset to the
new base: only the files that differ are written.

All git calls go through `swarm.git.git_run` (scrubbed environment, no hooks, no
fsmonitor). Mutating operations hold a per-workspace file lock, so two processes working
on the same run do not interleave.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from swarm.diffs import DiffInvalid, diff_parse
from swarm.git import GitError, git_run

log = logging.getLogger("tekton.swarm.workspace")

AUTHOR_NAME = "Tekton"
AUTHOR_EMAIL = "tekton@localhost"
_AUTHOR_ENV = {
    "GIT_AUTHOR_NAME": AUTHOR_NAME,
    "GIT_AUTHOR_EMAIL": AUTHOR_EMAIL,
    "GIT_COMMITTER_NAME": AUTHOR_NAME,
    "GIT_COMMITTER_EMAIL": AUTHOR_EMAIL,
}
# Checking out or resetting a large repository takes longer than git's default timeout.
_SLOW_TIMEOUT_S = 600.0
_STATE_DIR = ".tekton"  # under the root: one lock file and one state file per workspace
_HEX_REV = re.compile(r"[0-9a-f]{4,64}")
# What `_facts_at_once` found, per (repository, base, root), reused for a minute: every
# stage of every run makes a Workspace and asked git again (a process each, milliseconds
# of a busy worker's CPU), for facts that change only when a repository is moved or its
# history rewritten, which the git commands that follow then say.
FACTS_TTL_S = 60.0
_FACTS_KEPT = 256  # past this many, the expired ones go
_facts: dict[tuple[str, str, str], tuple[float, Path, str]] = {}
_SPARE_DIR = "spare"  # under _STATE_DIR: one finished worktree per repository, for reuse
# No two separators in a row, so "/" -> "--" names a folder and can be read back.
_RUN_NAME = re.compile(
    r"^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*(?:/[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*)*$"
)
_MODE_LINE = re.compile(
    r"^(new file mode|new mode|index [0-9a-f]+\.\.[0-9a-f]+) (120000|160000)\s*$"
)
_PATH_LINE = re.compile(r"^(rename from|rename to|copy from|copy to) (.+)$")
_DIFF_DIFF = (
    "--no-color",
    "--no-ext-diff",
    "--no-textconv",
    "--no-renames",
    "--src-prefix=a/",
    "--dst-prefix=b/",
)
ERROR_CHARS = 600
_FULL_BYTES = 1 << 20  # less free space than this after a failed write: the disk is full


class WorkspaceError(Exception):
    """A workspace operation could not be done; the message is one line for the stage."""


@dataclass(frozen=True)
class ApplyResult:
    """What applying one diff did. On failure the worktree is as it was before."""

    ok: bool
    method: str  # "apply" | "3way" on success, "" on failure
    error: str  # the FIRST error (validation, then plain apply), "" on success
    files: tuple[str, ...]  # the paths the diff touches
    attempts: tuple[tuple[str, str], ...] = ()  # (step, error) of each failed step, even on success
    patch_sha256: str = ""  # of the diff text as given


@dataclass(frozen=True)
class CommitResult:
    branch: str
    base_sha: str
    head_sha: str
    diff_sha256: str  # of `diff_text()`: git diff base..head as the download serves it
    files: tuple[str, ...]


@dataclass(frozen=True)
class CheckoutChange:
    """One uncommitted change in the user's checkout (which a run ignores)."""

    status: str  # git's two status letters: " M", "A ", "??", "R " ...
    path: str
    orig_path: str | None = None  # the old name of a rename or copy

    def __str__(self) -> str:
        moved = f"{self.orig_path} -> " if self.orig_path else ""
        return f"{self.status} {moved}{self.path}"


def run_name_check(name: str) -> str:
    """`name` if it is a valid run branch name (WorkspaceError otherwise)."""
    if not isinstance(name, str) or not _RUN_NAME.match(name) or len(name) > 200:
        raise WorkspaceError(
            f"run name {name!r} is not usable as a branch: letters, digits and single "
            "'.', '_', '-' or '/' between them"
        )
    return name


def _slug(name: str) -> str:
    return run_name_check(name).replace("/", "--")


def _one_line(text: str, limit: int = ERROR_CHARS) -> str:
    return " ".join((text or "").split())[:limit]


def _git(path: Path, *args: str, timeout: float = 30.0, **kw) -> subprocess.CompletedProcess[str]:
    try:
        return git_run(path, *args, timeout=timeout, **kw)
    except GitError as exc:
        raise WorkspaceError(str(exc)) from None


def _git_ok(path: Path, *args: str, what: str, timeout: float = 30.0, **kw) -> str:
    proc = _git(path, *args, timeout=timeout, **kw)
    if proc.returncode != 0:
        raise WorkspaceError(f"{what}: {_one_line(proc.stderr) or f'git exited {proc.returncode}'}")
    return proc.stdout


def _space_reason(text: str, where: Path) -> str | None:
    if "No space left on device" in text or "Disk quota exceeded" in text:
        return f"no space left on the device of {where}"
    if "Read-only file system" in text:
        return f"{where} is on a read-only file system"
    if "Permission denied" in text:
        return f"permission denied writing under {where}"
    return None


def _os_reason(exc: OSError, where: Path) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on the device of {where}"
    if exc.errno == errno.EROFS:
        return f"{where} is on a read-only file system"
    return f"cannot write under {where}: {exc.strerror or exc}"


def _full_reason(where: Path) -> str | None:
    """git often says only "unable to write file": ask the file system whether it is full."""
    try:
        st = os.statvfs(where)
    except OSError:
        return None
    if st.f_bavail * st.f_frsize < _FULL_BYTES or (st.f_files and st.f_favail == 0):
        return f"no space left on the device of {where}"
    return None


def _rmtree(path: Path) -> None:
    """Remove a file, a symbolic link (never followed) or a folder tree."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)
        if path.exists():  # files made read-only by a test run
            for dirpath, dirnames, _ in os.walk(path):
                for d in dirnames:
                    with contextlib.suppress(OSError):
                        os.chmod(os.path.join(dirpath, d), 0o700)
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _registry_locked(common: Path | None) -> Iterator[None]:
    """Take turns with every other Tekton thread and process on the repository's worktree
    registry (`<common>/worktrees`). git keeps no lock there: `worktree add` writes a new
    entry's files one by one, and a concurrent add, move, remove or list that reads the
    half-written entry dies ("failed to read .../commondir: Success"), which blocked one
    run in a hundred started together. The lock is an flock on the git directory itself:
    it holds across data directories and writes nothing into the user's repository.
    `common` None (not known): no lock."""
    if common is None:
        yield
        return
    try:
        fd = os.open(common, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise WorkspaceError(_os_reason(exc, common)) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _common_dir_of(repo: Path) -> Path | None:
    proc = _git(repo, "rev-parse", "--git-common-dir")
    if proc.returncode != 0 or not proc.stdout.strip():
        return None
    path = Path(proc.stdout.strip())
    return (path if path.is_absolute() else repo / path).resolve()


def _worktree_remove(repo: Path, worktree: Path, common: Path | None) -> None:
    """Unregister `worktree` with `git worktree remove --force --force` (even a locked
    one). Its files are deleted first, outside the registry lock: deleting 10,000 files
    can take a second, and other runs' workspaces wait for that lock. A failure or a
    timeout is left to the caller's own clean-up, which removes the folder and the
    registration itself."""
    _rmtree(worktree)
    with _registry_locked(common):
        try:
            git_run(
                repo, "worktree", "remove", "--force", "--force", str(worktree),
                timeout=_SLOW_TIMEOUT_S,
            )  # fmt: skip
        except GitError as exc:
            log.warning("git worktree remove %s: %s", worktree, exc)


def _admin_names(admin: Path, dotgit_real: Path | str) -> bool:
    """The registry entry `admin` names the worktree whose `.git` resolves to
    `dotgit_real` (a half-written or vanishing entry names nothing)."""
    try:
        named = (admin / "gitdir").read_text().strip()
    except OSError:
        return False
    # git writes the real path there (add, move and repair alike): compared as it is, a
    # registry of a hundred runs is scanned without resolving a hundred paths.
    return bool(named) and named == str(dotgit_real)


def _gitfile_target(worktree: Path) -> Path | None:
    """What the worktree's `.git` names, when it is a regular `gitdir:` file."""
    dotgit = worktree / ".git"
    try:
        content = dotgit.read_text() if dotgit.is_file() and not dotgit.is_symlink() else ""
    except OSError:
        return None
    if not content.startswith("gitdir:"):
        return None
    return Path(content.strip().removeprefix("gitdir:").strip())


def _gitfile_names(worktree: Path, admin: Path) -> bool:
    """The worktree's `.git` is a regular file naming `admin` (a sandboxed command could
    have rewritten it to point at a planted git directory)."""
    named = _gitfile_target(worktree)
    return named is not None and os.path.realpath(named) == os.path.realpath(admin)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


# --- diff checks ------------------------------------------------------------------------


def diff_path_problem(root: Path, path: str) -> str | None:
    """Why a path named by a diff must not be touched, or None. Lexical checks first (no
    filesystem access), then every existing prefix under `root` that is a symbolic link
    must resolve inside `root`."""
    if not path or "\0" in path:
        return "an empty path"
    if path.startswith(("/", "\\", "~")) or re.match(r"^[A-Za-z]:", path):
        return f"{path!r} is an absolute path"
    parts = PurePosixPath(path).parts
    if ".." in parts:
        return f"{path!r} goes outside the repository ('..')"
    if any(part.lower() == ".git" for part in parts):
        return f"{path!r} points inside .git"
    real_root = Path(os.path.realpath(root))
    current = root
    for part in parts:
        current = current / part
        if current.is_symlink():
            target = Path(os.path.realpath(current))
            if not target.is_relative_to(real_root):
                return f"{path!r} goes through the symbolic link {part!r}, which leads outside the repository"
        elif not current.exists():
            break
    return None


def diff_problems(root: Path, diff: str) -> tuple[tuple[str, ...], str | None]:
    """(paths the diff touches, the first reason to refuse it or None)."""
    try:
        files = diff_parse(diff)
    except DiffInvalid as exc:
        return (), str(exc)
    paths = tuple(dict.fromkeys(f.path for f in files))
    if not files:
        return paths, "the diff names no files (no 'diff --git' or '---'/'+++' headers)"
    named: list[str] = []
    for f in files:
        if f.is_binary:
            return paths, f"binary diff for {f.path!r}: only text changes can be applied"
        named += [p for p in (f.old_path, f.new_path) if p is not None]
    current = ""
    for line in diff.splitlines():
        if line.startswith("diff --git "):
            current = line[len("diff --git ") :]
        elif m := _MODE_LINE.match(line):
            kind = "symbolic link" if m.group(2) == "120000" else "submodule"
            return paths, f"the diff creates or changes a {kind} ({current}): not allowed"
        elif m := _PATH_LINE.match(line):
            named.append(m.group(2).strip())
        elif line.startswith("GIT binary patch"):
            return paths, f"binary diff ({current}): only text changes can be applied"
    for path in dict.fromkeys(named):
        if problem := diff_path_problem(root, path):
            return paths, problem
    return paths, None


# --- the user's checkout ----------------------------------------------------------------


def checkout_changes(repo: str | Path) -> list[CheckoutChange]:
    """The uncommitted changes in the user's checkout at `repo` (staged, unstaged and
    untracked), which a run ignores: it works on a commit. Read-only."""
    raw = _git_ok(
        Path(repo),
        "status",
        "--porcelain=v1",
        "-z",
        "--untracked-files=all",
        "--ignored=no",
        what=f"git status in {repo}",
    )
    changes: list[CheckoutChange] = []
    entries = raw.split("\0")
    i = 0
    while i < len(entries):
        entry = entries[i]
        i += 1
        if len(entry) < 4:
            continue
        orig = None
        if entry[0] in "RC" or entry[1] in "RC":
            orig = entries[i] if i < len(entries) else None
            i += 1
        changes.append(CheckoutChange(status=entry[:2], path=entry[3:], orig_path=orig))
    return changes


# --- the workspace ----------------------------------------------------------------------


class Workspace:
    """The worktree of one run. Cheap to construct (no I/O); every method that changes
    something is idempotent or says what it did, and raises WorkspaceError with a
    one-line reason.

    `repo` is the top level of the user's checkout, `base` the run's frozen base commit,
    `run_name` the run's branch (`tekton/run-12-3f9a1c2b`), `root` the folder that holds
    the workspaces (under the data directory, never inside `repo`).
    """

    def __init__(self, *, repo: str | Path, base: str, run_name: str, root: str | Path) -> None:
        self.repo = Path(repo).expanduser().absolute()
        self.base_rev = base
        self.branch = run_name_check(run_name)
        self.root = Path(root).expanduser().absolute()
        self.path = self.root / _slug(run_name)
        self._state_path = self.root / _STATE_DIR / f"{self.path.name}.json"
        self._lock_path = self.root / _STATE_DIR / f"{self.path.name}.lock"
        self._common: Path | None = None
        self._base: str | None = None
        self._admin: Path | None = None  # the registry entry git_dir() found last

    def __repr__(self) -> str:
        return f"Workspace({self.branch!r} at {self.path})"

    # -- facts about the repository --

    @property
    def common_dir(self) -> Path:
        """The repository's git directory (shared by every worktree)."""
        return self._check_repo()

    def _check_repo(self) -> Path:
        if self._common is None:
            if not self.repo.is_dir():
                raise WorkspaceError(f"repository {self.repo} does not exist")
            if self._facts_at_once():
                return self._common  # type: ignore[return-value]
            top = _git(self.repo, "rev-parse", "--show-toplevel")
            if top.returncode != 0 or Path(top.stdout.strip()).resolve() != self.repo.resolve():
                raise WorkspaceError(f"{self.repo} is not the top level of a git repository")
            if self.root.resolve().is_relative_to(self.repo.resolve()):
                raise WorkspaceError(
                    f"the workspace folder {self.root} is inside the repository {self.repo}"
                )
            common = _git_ok(self.repo, "rev-parse", "--git-common-dir", what="git rev-parse")
            path = Path(common.strip())
            self._common = (path if path.is_absolute() else self.repo / path).resolve()
        return self._common

    def _facts_at_once(self) -> bool:
        """The top level, the git directory and the base commit in one `git rev-parse`
        (a workspace is made for every stage, and each git process costs milliseconds of
        CPU); False when anything is off, and the separate calls then say what."""
        if not _HEX_REV.fullmatch(self.base_rev):
            return False
        key = (str(self.repo), self.base_rev, str(self.root))
        known = _facts.get(key)
        if known is not None and time.monotonic() - known[0] < FACTS_TTL_S and known[1].is_dir():
            self._common, self._base = known[1], known[2]
            return True
        # A hex revision cannot be taken for an option, so no --end-of-options is needed.
        proc = _git(
            self.repo, "rev-parse", "--show-toplevel", "--git-common-dir",
            f"{self.base_rev}^{{commit}}",
        )  # fmt: skip
        lines = proc.stdout.splitlines()
        if proc.returncode != 0 or len(lines) != 3 or not _HEX_REV.fullmatch(lines[2]):
            return False
        top, common, sha = lines
        if Path(top).resolve() != self.repo.resolve() or self.root.resolve().is_relative_to(
            self.repo.resolve()
        ):
            return False
        path = Path(common)
        self._common = (path if path.is_absolute() else self.repo / path).resolve()
        self._base = sha
        now = time.monotonic()
        if len(_facts) >= _FACTS_KEPT:  # a long-lived worker sees every run's base
            for stale in [k for k, v in _facts.items() if now - v[0] >= FACTS_TTL_S]:
                _facts.pop(stale, None)
        _facts[key] = (now, self._common, sha)
        return True

    @property
    def base(self) -> str:
        """The base commit's full sha (WorkspaceError when it is not in the repository)."""
        if self._base is None:
            self._check_repo()
            proc = _git(self.repo, "rev-parse", "-q", "--verify", f"{self.base_rev}^{{commit}}")
            if proc.returncode != 0 or not proc.stdout.strip():
                raise WorkspaceError(
                    f"base commit {self.base_rev[:12]} is not in the repository {self.repo} "
                    "(history rewritten or garbage-collected?); the run cannot be rebuilt"
                )
            self._base = proc.stdout.strip()
        return self._base

    def git_dir(self) -> Path | None:
        """The worktree's own git directory, found from the repository's registration
        (`<common>/worktrees/<id>/gitdir` names the worktree's `.git` file), or None.
        The one found last is checked first: every git command in the worktree asks, and
        scanning the registry reads every other run's entry too."""
        want = os.path.realpath(self.path / ".git")
        if self._admin is not None and _admin_names(self._admin, want):
            return self._admin
        self._admin = self._admin_for(self.path)
        return self._admin

    def _admin_for(self, path: Path) -> Path | None:
        want = os.path.realpath(path / ".git")
        admin_root = self.common_dir / "worktrees"
        # The worktree's .git file names its entry: one read instead of the registry's
        # hundred, trusted only when that entry names the worktree back (a command in the
        # sandbox can rewrite the file to name another run's entry).
        named = _gitfile_target(path)
        if named is not None and named.parent == admin_root and _admin_names(named, want):
            return named
        try:
            # git removes the folder with its last entry, maybe in another process now
            entries = os.listdir(admin_root)
        except OSError:
            return None
        return next((admin_root / e for e in entries if _admin_names(admin_root / e, want)), None)

    def _registry_git(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A git command that changes the repository's worktree registry, taking turns."""
        with _registry_locked(self.common_dir):
            return _git(self.repo, *args, timeout=_SLOW_TIMEOUT_S)

    def _wgit(self, *args: str, **kw) -> subprocess.CompletedProcess[str]:
        """git inside the worktree, with its git directory named explicitly."""
        git_dir = self._git_dir_checked()
        return _git(self.path, f"--git-dir={git_dir}", f"--work-tree={self.path}", *args, **kw)

    def _wgit_ok(self, *args: str, what: str, **kw) -> str:
        proc = self._wgit(*args, **kw)
        if proc.returncode != 0:
            raise WorkspaceError(
                f"{what}: {_one_line(proc.stderr) or f'git exited {proc.returncode}'}"
            )
        return proc.stdout

    def _git_dir_checked(self) -> Path:
        git_dir = self.git_dir()
        if git_dir is None or not self.path.is_dir():
            raise WorkspaceError(f"the workspace {self.path} does not exist; create or rebuild it")
        if not _gitfile_names(self.path, git_dir):
            raise WorkspaceError(
                f"the workspace's .git file was changed (it must name {git_dir}); rebuild it"
            )
        return git_dir

    # -- state and locking --

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self._check_repo()  # before anything is written under the root
        try:
            self._lock_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise WorkspaceError(_os_reason(exc, self.root)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._stale_git_locks_clear()
            yield
        finally:
            os.close(fd)

    def _stale_git_locks_clear(self) -> None:
        """Remove the git lock files a killed process left on this workspace: its index
        and HEAD locks, and the lock of the run's branch ref. Every git write to them is
        Tekton's own and holds the workspace lock (reads take no lock: GIT_OPTIONAL_LOCKS
        is 0), so one found while the lock is held belongs to a git that died with its
        worker, and would make the next attempt's git fail with "File exists"."""
        admin = self.git_dir() if self.common_dir.is_dir() else None
        candidates = [self.common_dir / "refs" / "heads" / f"{self.branch}.lock"]
        if admin is not None:
            candidates += [admin / "index.lock", admin / "HEAD.lock"]
        for lock in candidates:
            try:
                lock.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("stale git lock %s not removed: %s", lock, exc)
                continue
            log.warning("removed a stale git lock left by a killed process: %s", lock)

    def _state(self) -> dict:
        try:
            state = json.loads(self._state_path.read_text())
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def _state_write(self, **state) -> None:
        tmp = self._state_path.with_name(self._state_path.name + ".tmp")
        try:
            tmp.write_text(json.dumps({"repo": str(self.repo), "branch": self.branch, **state}))
            os.replace(tmp, self._state_path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise WorkspaceError(_os_reason(exc, self.root)) from None

    def _base_state(self, base: str) -> dict:
        """The state of a worktree that is exactly the base commit."""
        return {
            "base": base,
            "patches": [],
            "head": base,
            "tree": self._tree_of(base),
            "staged": False,
        }

    def _head(self) -> str:
        return self._wgit_ok("rev-parse", "HEAD", what="git rev-parse HEAD").strip()

    def _index_tree(self) -> str:
        return self._wgit_ok("write-tree", what="git write-tree").strip()

    def _tree_of(self, rev: str) -> str:
        return _git_ok(self.repo, "rev-parse", f"{rev}^{{tree}}", what="git rev-parse").strip()

    # -- create, rebuild, remove --

    def exists(self) -> bool:
        """A registered worktree with an untouched `.git` file is at the workspace path."""
        try:
            self._git_dir_checked()
        except WorkspaceError:
            return False
        return True

    def create(self) -> Path:
        """Make sure the worktree exists at the base commit and return its path.

        Idempotent: a healthy worktree of this repository made for the same base is reused
        as it is (use `rebuild` for an exact state); anything else at the path (a broken or
        foreign leftover, a half-made checkout, a rewritten `.git` file) is removed first.
        Raises WorkspaceError for a missing base commit, an unwritable or full disk; then
        nothing is left at the path and the repository has no registration for it.
        """
        with self._locked():
            self._create_locked()
        return self.path

    def _healthy(self) -> bool:
        if not self.exists():
            return False
        state = self._state()
        if state:
            return state.get("base") == self.base and state.get("repo") == str(self.repo)
        proc = self._wgit("rev-parse", "HEAD")
        return proc.returncode == 0 and proc.stdout.strip() == self.base

    def _create_locked(self) -> None:
        base = self.base
        if self._healthy():
            return
        self._discard()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WorkspaceError(_os_reason(exc, self.root)) from None
        if self._take_spare(base):
            self._state_write(**self._base_state(base))
            log.debug("workspace %s made from the spare at %s", self.branch, base[:12])
            return
        # The registry entry under the lock, the files after it: a checkout of 10,000
        # files takes seconds, and other runs' workspaces of the repository wait for the
        # lock. This is what `worktree add` does inside, a `reset --hard` in the new tree.
        proc = self._registry_git(
            "worktree", "add", "--no-checkout", "-q", "--detach", str(self.path), base,
        )  # fmt: skip
        if proc.returncode == 0 and self.exists():
            proc = self._wgit(
                "-c", "checkout.workers=0",  # parallel checkout, one worker per core
                "reset", "-q", "--hard", timeout=_SLOW_TIMEOUT_S,
            )  # fmt: skip
        if proc.returncode != 0 or not self.exists():
            reason = (
                _space_reason(proc.stderr, self.root)
                or _full_reason(self.root)
                or (
                    f"git worktree add failed: {_one_line(proc.stderr) or f'exit {proc.returncode}'}"
                )
            )
            self._discard()
            raise WorkspaceError(reason)
        try:
            self._state_write(**self._base_state(base))
        except WorkspaceError:
            self._discard()
            raise
        log.debug("workspace %s created at %s", self.branch, base[:12])

    def _discard(self) -> None:
        self._discard_at(self.path)
        self._state_path.unlink(missing_ok=True)

    def _discard_at(self, path: Path) -> None:
        """Remove whatever is at `path` and this repository's registration of it. The
        registration is removed by path, never with a global `git worktree prune`, which
        would also drop the user's own worktrees on a disk that is not mounted."""
        if path.exists() or path.is_symlink() or self._admin_for(path) is not None:
            _worktree_remove(self.repo, path, self.common_dir)
            if self._admin_for(path) is not None:  # git refused: drop it as prune does
                with _registry_locked(self.common_dir):
                    admin = self._admin_for(path)
                    if admin is not None:
                        _rmtree(admin)

    # -- the spare: a finished run's worktree, kept for the next run of the repository --

    @property
    def spare_path(self) -> Path:
        key = hashlib.sha256(str(self.common_dir).encode()).hexdigest()[:16]
        return self.root / _STATE_DIR / _SPARE_DIR / key

    @contextlib.contextmanager
    def _spare_locked(self) -> Iterator[Path]:
        spare = self.spare_path
        try:
            spare.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(spare.with_name(spare.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise WorkspaceError(_os_reason(exc, self.root)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield spare
        finally:
            os.close(fd)

    def _take_spare(self, base: str) -> bool:
        """Move the repository's spare worktree to the path and reset it to `base`: only
        the files that differ are written, instead of a full checkout. False (and the
        spare gone) when there is none or it is not healthy."""
        with self._spare_locked() as spare:
            if not spare.exists():
                return False
            admin = self._admin_for(spare)
            moved = (
                admin is not None
                and _gitfile_names(spare, admin)
                and self._registry_git("worktree", "move", str(spare), str(self.path)).returncode
                == 0
            )
            if not moved:
                self._discard_at(spare)
                return False
        try:
            self._wgit_ok("reset", "-q", "--hard", base, what="git reset", timeout=_SLOW_TIMEOUT_S)
            self._wgit_ok("clean", "-fdxq", what="git clean", timeout=_SLOW_TIMEOUT_S)
        except WorkspaceError as exc:
            log.warning("spare worktree for %s not reusable: %s", self.repo, exc)
            self._discard()
            return False
        return True

    def _give_spare(self) -> bool:
        """Keep this worktree as the repository's spare, unless it already has one."""
        with self._spare_locked() as spare:
            if spare.exists() or not self.exists():
                return False
            moved = self._registry_git("worktree", "move", str(self.path), str(spare))
            return moved.returncode == 0

    def rebuild(self, patches: Sequence[str] = ()) -> Path:
        """Make the worktree exactly base + `patches` (applied in order, each with plain
        `git apply`, then 3-way) and return its path. Cheap when it is already in that state
        (only what commands left behind is cleaned). Raises WorkspaceError when a stored
        patch no longer applies; the worktree is then clean at the base commit.
        """
        wanted = [_sha256(p) for p in patches]
        with self._locked():
            self._create_locked()
            state = self._state()
            if state.get("patches") == wanted:
                if self._untouched(state):
                    return self.path
                if state.get("tree") == self._index_tree() and state.get("head") == self._head():
                    self._restore(state["tree"])
                    return self.path
            self._wgit_ok(
                "reset", "-q", "--hard", self.base, what="git reset", timeout=_SLOW_TIMEOUT_S
            )
            self._wgit_ok("clean", "-fdxq", what="git clean", timeout=_SLOW_TIMEOUT_S)
            self._state_write(**self._base_state(self.base))
            for i, patch in enumerate(patches):
                result = self._apply_locked(patch)
                if not result.ok:
                    self._wgit_ok(
                        "reset",
                        "-q",
                        "--hard",
                        self.base,
                        what="git reset",
                        timeout=_SLOW_TIMEOUT_S,
                    )
                    self._state_write(**self._base_state(self.base))
                    raise WorkspaceError(
                        f"stored patch {i + 1} of {len(patches)} no longer applies to "
                        f"{self.base[:12]}: {result.error}"
                    )
        return self.path

    def _untouched(self, state: dict) -> bool:
        """One `git status` says the worktree is exactly the state's commit: HEAD is the
        state's head, the index is HEAD's tree (`staged` false when the state was written)
        and nothing is modified, untracked or ignored. Most stages find it so, and it saves
        the reset, the clean and the tree checks (five git processes) of a restore."""
        if state.get("staged") is not False or not state.get("head"):
            return False
        proc = self._wgit(
            "status", "--porcelain=v2", "-z", "--branch", "--untracked-files=all",
            "--ignored=matching", "--no-renames",
        )  # fmt: skip
        if proc.returncode != 0:
            return False
        entries = [e for e in proc.stdout.split("\0") if e]
        return f"# branch.oid {state['head']}" in entries and all(
            e.startswith("# ") for e in entries
        )

    def remove(self, *, recycle: bool = True) -> None:
        """Remove the worktree and its registration (`git worktree remove --force`). The
        branch stays: it is the deliverable. Idempotent.

        With `recycle`, the worktree becomes the repository's spare (one per repository,
        under the root's `.tekton/spare/`), and the next run's `create` resets it to its
        own base instead of checking out every file again: on a slow disk that is the
        difference between seconds and a fraction of one for 10,000 files.
        """
        with self._locked():
            if not self.repo.is_dir():
                _rmtree(self.path)
            elif not (recycle and self._give_spare()):
                self._discard()
            self._state_path.unlink(missing_ok=True)

    # -- applying and committing --

    def _restore(self, tree: str) -> None:
        """Worktree and index exactly `tree` on top of HEAD, nothing untracked or ignored
        left. `reset --hard` also clears unmerged entries a failed 3-way merge leaves
        (`checkout -- .` refuses them)."""
        self._wgit_ok("reset", "-q", "--hard", what="git reset", timeout=_SLOW_TIMEOUT_S)
        self._wgit_ok("clean", "-fdxq", what="git clean", timeout=_SLOW_TIMEOUT_S)
        if tree != self._index_tree():
            self._wgit_ok(
                "read-tree", "-u", "--reset", tree, what="git read-tree", timeout=_SLOW_TIMEOUT_S
            )

    def apply(self, diff: str) -> ApplyResult:
        """Apply a model's unified diff to the worktree (files and index).

        The diff is validated first (paths, binary, symbolic links; see `diff_problems`),
        then `git apply --check` + `git apply`, then `git apply --3way`. What commands left
        in the worktree is dropped before. On failure the worktree is as before and
        `error` is the first error (the plain apply's, not only the 3-way fallback's).
        Never raises for a bad diff; WorkspaceError only when the workspace is missing.
        """
        with self._locked():
            return self._apply_locked(diff)

    def _apply_locked(self, diff: str) -> ApplyResult:
        patch_sha = _sha256(diff or "")
        files, problem = diff_problems(self.path, diff or "")
        if problem:
            return ApplyResult(
                ok=False, method="", error=problem, files=files,
                attempts=(("validate", problem),), patch_sha256=patch_sha,
            )  # fmt: skip
        text = diff if diff.endswith("\n") else diff + "\n"  # a last line without \n is "corrupt"
        state = self._state()
        if self._untouched(state):
            before = state["tree"]
        else:
            before = self._index_tree()
            self._restore(before)
        attempts: list[tuple[str, str]] = []

        def failed(step: str, proc: subprocess.CompletedProcess[str]) -> None:
            detail = _one_line(proc.stderr) or f"git apply exited {proc.returncode}"
            attempts.append((step, detail))

        check = self._wgit("apply", "--index", "--check", "-", stdin=text)
        if check.returncode == 0:
            plain = self._wgit("apply", "--index", "-", stdin=text)
            if plain.returncode == 0:
                return self._applied("apply", files, patch_sha)
            failed("apply", plain)
        else:
            failed("apply", check)
        three = self._wgit("apply", "--3way", "-", stdin=text)
        if (
            three.returncode == 0
            and not self._wgit_ok("ls-files", "-u", what="git ls-files").strip()
        ):
            return self._applied("3way", files, patch_sha, attempts)
        failed("3way", three)
        self._restore(before)
        return ApplyResult(
            ok=False, method="", error=attempts[0][1], files=files,
            attempts=tuple(attempts), patch_sha256=patch_sha,
        )  # fmt: skip

    def _applied(
        self,
        method: str,
        files: tuple[str, ...],
        patch_sha: str,
        attempts: Sequence[tuple[str, str]] = (),
    ) -> ApplyResult:
        state = self._state()
        self._state_write(
            base=self.base,
            patches=[*state.get("patches", []), patch_sha],
            head=self._head(),
            tree=self._index_tree(),
            staged=True,  # the change is in the index, not yet committed
        )
        return ApplyResult(
            ok=True, method=method, error="", files=files,
            attempts=tuple(attempts), patch_sha256=patch_sha,
        )  # fmt: skip

    def commit(self, message: str) -> CommitResult:
        """Commit what was applied (the index: base + patches, never what commands left in
        the files) as one commit on top of the base, and point the run's branch at it.

        A second commit (a retried code stage after `rebuild([])` + `apply`) replaces the
        branch head. The branch only ever moves to a finished commit. No hooks run (the
        commit is made with `commit-tree`), the author is "Tekton <tekton@localhost>", and
        the user's checkout, index, HEAD and stash do not change. Raises WorkspaceError for
        an empty change, or when the branch is checked out somewhere.
        """
        with self._locked():
            base = self.base
            tree = self._index_tree()
            if tree == self._tree_of(base):
                raise WorkspaceError("the change is empty: nothing differs from the base commit")
            self._branch_not_checked_out()
            sha = self._wgit_ok(
                "commit-tree", "--no-gpg-sign", "-p", base, "-F", "-", tree,
                stdin=message.strip() + "\n" if message.strip() else "Tekton run change\n",
                env=_AUTHOR_ENV, what="git commit-tree",
            ).strip()  # fmt: skip
            _git_ok(
                self.repo, "update-ref", "-m", f"tekton: {self.branch}",
                f"refs/heads/{self.branch}", sha, what="git update-ref",
            )  # fmt: skip
            self._wgit_ok("reset", "-q", "--soft", sha, what="git reset --soft")
            state = self._state()
            self._state_write(
                base=base, patches=state.get("patches", []), head=sha, tree=tree, staged=False
            )
        diff = self.diff_text()
        files = tuple(f.path for f in diff_parse(diff))
        log.debug("workspace %s committed %s", self.branch, sha[:12])
        return CommitResult(
            branch=self.branch, base_sha=base, head_sha=sha, diff_sha256=_sha256(diff), files=files
        )

    def _branch_not_checked_out(self) -> None:
        ref = f"refs/heads/{self.branch}"
        with _registry_locked(self.common_dir):
            listing = _git_ok(
                self.repo, "worktree", "list", "--porcelain", what="git worktree list"
            )
        current = None
        for line in listing.splitlines():
            if line.startswith("worktree "):
                current = line[len("worktree ") :]
            elif line == f"branch {ref}":
                raise WorkspaceError(
                    f"the branch {self.branch} is checked out in {current}; switch that "
                    "checkout to another branch so the run can replace it"
                )

    def branch_head(self) -> str | None:
        """The run branch's commit, or None when there is no branch yet."""
        proc = _git(
            self.repo, "rev-parse", "-q", "--verify", f"refs/heads/{self.branch}^{{commit}}"
        )
        return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None

    def branch_delete(self) -> bool:
        """Delete the run's branch (a code stage that ends blocked must not leave an older
        attempt's change looking like the result). True when there was one."""
        head = self.branch_head()
        if head is None:
            return False
        _git_ok(
            self.repo,
            "update-ref",
            "-d",
            f"refs/heads/{self.branch}",
            head,
            what="git update-ref -d",
        )
        return True

    def _require_branch(self) -> str:
        head = self.branch_head()
        if head is None:
            raise WorkspaceError(f"the run has no branch {self.branch} yet (nothing committed)")
        return head

    # -- reading the result --

    def diff_text(self) -> str:
        """`git diff <base>..<branch>`: the patch a person downloads or applies."""
        head = self._require_branch()
        return _git_ok(
            self.repo,
            "diff",
            *_DIFF_DIFF,
            self.base,
            head,
            what="git diff",
            timeout=_SLOW_TIMEOUT_S,
        )

    def changed_lines(self) -> dict[str, set[int]]:
        """{path: new line numbers added or changed} of the branch against the base, for
        coverage of the changed lines. Files with only deletions are left out."""
        head = self._require_branch()
        text = _git_ok(
            self.repo, "diff", *_DIFF_DIFF, "-U0", self.base, head,
            what="git diff", timeout=_SLOW_TIMEOUT_S,
        )  # fmt: skip
        changed: dict[str, set[int]] = {}
        for f in diff_parse(text):
            lines = {
                ln.new_no
                for hunk in f.hunks
                for ln in hunk.lines
                if ln.kind == "add" and ln.new_no is not None
            }
            if f.new_path and lines:
                changed[f.new_path] = lines
        return changed

    def bundle(self, dest: str | Path) -> Path:
        """Write a git bundle of the branch (prerequisite: the base commit) to `dest`, for a
        person whose clone has the base: `git fetch <bundle> <branch>`. Written to a
        temporary name and renamed, so a failure leaves no partial file."""
        self._require_branch()
        dest = Path(dest).absolute()
        tmp = dest.with_name(f".{dest.name}.tmp")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            proc = _git(
                self.repo, "bundle", "create", "-q", str(tmp), f"refs/heads/{self.branch}",
                f"^{self.base}", timeout=_SLOW_TIMEOUT_S,
            )  # fmt: skip
            if proc.returncode != 0:
                raise WorkspaceError(
                    _space_reason(proc.stderr, dest.parent)
                    or f"git bundle create failed: {_one_line(proc.stderr)}"
                )
            os.replace(tmp, dest)
        except OSError as exc:
            raise WorkspaceError(_os_reason(exc, dest.parent)) from None
        finally:
            tmp.unlink(missing_ok=True)
        return dest


# --- the root: orphans and disk use -------------------------------------------------------


def _owner_repo(worktree: Path) -> Path | None:
    """The repository a worktree folder belongs to, read from its `.git` file
    (`gitdir: <common>/worktrees/<id>`)."""
    try:
        content = (worktree / ".git").read_text()
    except OSError:
        return None
    if not content.startswith("gitdir:"):
        return None
    admin = Path(content.removeprefix("gitdir:").strip())
    if admin.parent.name != "worktrees":
        return None
    common = admin.parent.parent
    return common.parent if common.name == ".git" else common


def workspaces_prune(
    root: str | Path,
    *,
    live: Iterable[str],
    repos: Iterable[str | Path] = (),
    spares: bool = True,
    namespace: str | None = None,
    dry_run: bool = False,
) -> list[Path]:
    """Remove the workspaces under `root` whose run name is not in `live`, the spares of
    repositories that are gone (every spare when `spares` is False), and, in each of
    `repos` (the repositories Tekton knows), the registrations of worktrees under `root`
    that are gone or not live (only those: the user's own worktrees are left alone).
    With `namespace`, only run workspaces of that namespace are candidates: another
    database sharing the root keeps its own. Branches stay. Returns the paths removed
    (folders and registrations); with `dry_run`, the paths it would remove, touching
    nothing."""
    root = Path(root).absolute()
    keep = {_slug(name) for name in live}
    mine = f"{namespace}--" if namespace else ""
    repos = [Path(r) for r in repos]
    known = {os.path.realpath(r) for r in repos}
    state_dir = root / _STATE_DIR
    spare_dir = state_dir / _SPARE_DIR
    removed: list[Path] = []

    def drop(worktree: Path) -> None:
        # git runs only in a repository the caller named: the `.git` file that names the
        # owner is in a folder sandboxed commands could write.
        removed.append(worktree)
        if dry_run:
            return
        owner = _owner_repo(worktree)
        if owner is not None and os.path.realpath(owner) in known:
            _worktree_remove(owner, worktree, _common_dir_of(owner))
        _rmtree(worktree)

    if root.is_dir():
        for entry in sorted(root.iterdir()):
            if entry.name != _STATE_DIR and entry.name not in keep and entry.name.startswith(mine):
                drop(entry)
    if spare_dir.is_dir():
        for entry in sorted(spare_dir.iterdir()):
            if entry.name.endswith(".lock"):
                continue  # a lock may be held right now; it is an empty file
            owner = _owner_repo(entry)
            if not spares or owner is None or not owner.is_dir():
                drop(entry)
    if state_dir.is_dir():
        for f in state_dir.iterdir():
            if not f.is_file():
                continue
            slug = next(
                (f.name[: -len(s)] for s in (".json.tmp", ".json", ".lock") if f.name.endswith(s)),
                f.name,
            )
            if slug not in keep and slug.startswith(mine) and not dry_run:
                f.unlink(missing_ok=True)
    real_root = Path(os.path.realpath(root))
    real_spares = Path(os.path.realpath(spare_dir))
    for repo in repos:
        common = _common_dir_of(repo)
        admin_root = common / "worktrees" if common is not None else None
        if admin_root is None or not admin_root.is_dir():
            continue
        for admin in sorted(admin_root.iterdir()):
            try:
                dotgit = Path(os.path.realpath((admin / "gitdir").read_text().strip()))
            except OSError:
                continue
            worktree = dotgit.parent
            if not worktree.is_relative_to(real_root):
                continue
            is_live = worktree.parent == real_root and worktree.name in keep
            is_spare = spares and worktree.parent == real_spares
            is_other = worktree.parent == real_root and not worktree.name.startswith(mine)
            if worktree.is_dir() and (is_live or is_spare or is_other):
                continue
            if dry_run:
                # A folder listed above takes its registration with it.
                if worktree not in {Path(os.path.realpath(p)) for p in removed}:
                    removed.append(admin)
                continue
            _worktree_remove(repo, worktree, common)
            with _registry_locked(common):
                if admin.exists():
                    _rmtree(admin)
            _rmtree(worktree)
            removed.append(admin)
    return removed


@dataclass(frozen=True)
class DiskUsage:
    workspaces: int  # run folders under the root
    spares: int  # finished worktrees kept for the next run of their repository
    bytes: int  # allocated on disk, each file once, symbolic links not followed


def workspaces_disk_usage(root: str | Path) -> DiskUsage:
    """How many workspaces and spares are under `root` and the disk they take."""
    root = Path(root)
    if not root.is_dir():
        return DiskUsage(workspaces=0, spares=0, bytes=0)
    count = sum(1 for e in root.iterdir() if e.name != _STATE_DIR and e.is_dir())
    spare_dir = root / _STATE_DIR / _SPARE_DIR
    spares = sum(1 for e in spare_dir.iterdir() if e.is_dir()) if spare_dir.is_dir() else 0
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen:
                continue
            seen.add(key)
            total += st.st_blocks * 512
    return DiskUsage(workspaces=count, spares=spares, bytes=total)
