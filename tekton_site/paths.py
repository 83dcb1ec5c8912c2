"""Paths a person types (a repository, an output folder, a cassette, a context file):
checked before anything touches the filesystem with them, so a bad one is a FieldError
naming the field and the reason, never an OSError that escapes as a 500 or a traceback."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from django.conf import settings

from swarm.repo import is_git_repo
from tekton_site.errors import FieldError

PATH_MAX = 4096  # Linux's PATH_MAX, a byte count
NAME_MAX = 255  # one component, a byte count


def path_typed(raw: object, *, field: str, what: str) -> Path:
    """`raw` as an absolute path (~ expanded, symlinks resolved where they exist). Raises
    FieldError(field) for an empty path, a NUL byte, a path or a component too long for
    the filesystem, or one the OS refuses to look at."""
    text = str(raw or "").strip()
    if not text:
        raise FieldError(field, f"the {what} path is empty")
    if "\x00" in text:
        raise FieldError(field, f"the {what} path contains a NUL byte")
    shown = text if len(text) <= 120 else text[:60] + "…" + text[-40:]
    encoded = os.fsencode(text)
    if len(encoded) >= PATH_MAX:
        raise FieldError(
            field, f"the {what} path is {len(encoded):,} bytes; the limit is {PATH_MAX - 1:,}"
        )
    longest = max((len(part) for part in encoded.split(b"/")), default=0)
    if longest > NAME_MAX:
        raise FieldError(
            field,
            f"the {what} path {shown} has a component of {longest} bytes; the limit is {NAME_MAX}",
        )
    try:
        return Path(text).expanduser().resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
        reason = os.strerror(exc.errno) if getattr(exc, "errno", None) else str(exc)
        raise FieldError(field, f"the {what} path {shown} cannot be used: {reason}") from None


def path_exists(path: Path, *, field: str, what: str) -> bool:
    """Whether `path` exists; a path the OS refuses to stat is a FieldError, not False."""
    try:
        path.stat()
    except FileNotFoundError:
        return False
    except NotADirectoryError:
        return False
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return False
        raise FieldError(
            field, f"the {what} path cannot be used: {os.strerror(exc.errno or 0)}"
        ) from None
    return True


def repo_check(repo_path: str | Path, *, field_name: str = "repo_path") -> Path:
    """The repository's resolved path: it exists, is inside TEKTON_REPO_ROOTS and is a git
    repository. Raises FieldError naming `field_name`."""
    field = field_name
    if not str(repo_path or "").strip():
        raise FieldError(field, "a repository path is required")
    path = path_typed(repo_path, field=field, what="repository")
    if not path_exists(path, field=field, what="repository"):
        raise FieldError(field, f"repository {path} does not exist")
    roots = [Path(r).expanduser().resolve() for r in settings.TEKTON_REPO_ROOTS]
    if not any(path == root or path.is_relative_to(root) for root in roots):
        listed = ", ".join(str(r) for r in roots) or "(none configured)"
        raise FieldError(
            field,
            f"repository {path} is outside the allowed roots ({listed}); set TEKTON_REPO_ROOTS to allow it",
        )
    if not path.is_dir() or not is_git_repo(path):
        raise FieldError(field, f"{path} is not a git repository")
    return path


def record_path_check(raw: str | Path) -> Path:
    """A cassette to record into: a file whose folder exists or can be made."""
    path = path_typed(raw, field="record_path", what="cassette")
    if path_exists(path, field="record_path", what="cassette") and path.is_dir():
        raise FieldError("record_path", f"the cassette {path} is a folder; name a file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FieldError(
            "record_path", f"cannot create the cassette's folder {path.parent}: {exc.strerror}"
        ) from None
    if not os.access(path.parent, os.W_OK):
        raise FieldError("record_path", f"the cassette's folder {path.parent} is not writable")
    return path
