"""Artifacts: one row each (the record: its JSON or text is in the database) and a file copy
under `<artifact_root>/<namespace>/run-<id>-<short uid>/<name>`, plus a copy in the run's
output folder when it has one.

An artifact is written once: `(run, stage, kind)` is unique, and a second write of the
same artifact returns the existing row without touching the file. A folder belongs to one
run: its `.tekton-run` file holds the run's uid, and a folder that holds another run's
uid is never written into (two databases sharing a data directory both have a run 1).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from runs.models import Artifact, Run
from swarm.redact import redact
from swarm.stages import PATCH_FILE, STAGES, SUMMARY_FILE
from tekton_site.errors import FieldError

logger = logging.getLogger("tekton.runs.artifacts")

OWNER_FILE = ".tekton-run"
ARTIFACT_NAMES = frozenset({*(s.artifact_file for s in STAGES.values()), PATCH_FILE, SUMMARY_FILE})


class FolderTaken(Exception):
    """The folder belongs to another run (its owner file names another uid)."""


def artifact_root(run: Run) -> Path:
    """The run's artifact root: frozen in its config, else TEKTON_ARTIFACT_ROOT."""
    root = (run.config or {}).get("artifact_root") or settings.TEKTON_ARTIFACT_ROOT
    return Path(root).expanduser().resolve()


def artifact_dir(run: Run) -> Path:
    """Where the run's artifact files go."""
    return artifact_root(run) / run.namespace / run.slug


def artifact_path(artifact: Artifact) -> Path:
    """Absolute path of an artifact's file, refusing anything outside the artifact root."""
    root = artifact_root(artifact.run)
    path = (root / artifact.path).resolve()
    if not path.is_relative_to(root):
        raise ValueError(f"artifact {artifact.pk} points outside the artifact root")
    return path


def json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _write_atomic(path: Path, content: bytes) -> None:
    # Write-then-rename so a reader never sees half a file.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _safe_name(name: str) -> str:
    if not name or "/" in name or "\\" in name or name in (".", "..") or name.startswith("."):
        raise ValueError(f"bad artifact file name {name!r}")
    return name


def folder_claim(folder: Path, run: Run) -> None:
    """Make `folder` the run's (created if missing), or check that it already is.

    Raises FolderTaken when it belongs to another run, or holds artifact files of a run
    that left no owner file, so nothing of another run is ever replaced."""
    folder.mkdir(parents=True, exist_ok=True)
    owner = folder / OWNER_FILE
    mine = str(run.uid)
    try:
        fd = os.open(owner, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        theirs = owner.read_text(encoding="utf-8").strip()
        if theirs != mine:
            raise FolderTaken(f"{folder} holds the artifacts of another run ({theirs})") from None
        return
    foreign = sorted(p.name for p in folder.iterdir() if p.name in ARTIFACT_NAMES)
    if foreign:
        os.close(fd)
        owner.unlink()
        raise FolderTaken(f"{folder} already holds artifact files ({', '.join(foreign)})")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(mine + "\n")


def output_dir_check(path: str | Path) -> Path:
    """The resolved output folder a person asked for, created if missing. Raises
    FieldError("output_dir") when it cannot be created or is another run's."""
    out = Path(str(path)).expanduser().resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FieldError(
            "output_dir", f"cannot create output directory {out}: {exc.strerror}"
        ) from None
    owner = out / OWNER_FILE
    if owner.exists() or any((out / n).exists() for n in ARTIFACT_NAMES):
        raise FieldError(
            "output_dir",
            f"{out} already holds the artifacts of another run; choose an empty folder",
        )
    return out


def artifact_write(
    *, run: Run, stage: str, kind: str, name: str, data: Any = None, text: str | None = None
) -> tuple[Artifact, bool]:
    """Record one artifact and write its file copies; returns (artifact, created).

    `data` (JSON) or `text` (the patch) is redacted before it is stored. When the row
    already exists nothing is written and (existing, False) comes back. The row is the
    record and is written first; the file goes to the run's artifact folder and, when the
    run has one, its output folder. Call inside a transaction (a failed file write rolls
    the row back). Raises FolderTaken when the run's folder belongs to another run.
    """
    existing = Artifact.objects.filter(run=run, stage=stage, kind=kind).first()
    if existing is not None:
        return existing, False
    name = _safe_name(name)
    if text is not None:
        body = redact(text)
        content = body.encode("utf-8")
        stored = None
    else:
        body = ""
        stored = redact(data)
        content = json_bytes(stored)
    folder = artifact_dir(run)
    try:
        with transaction.atomic():
            artifact = Artifact.objects.create(
                run=run,
                stage=stage,
                kind=kind,
                name=name,
                path=(folder / name).relative_to(artifact_root(run)).as_posix(),
                sha256=hashlib.sha256(content).hexdigest(),
                size=len(content),
                content=stored,
                text=body,
            )
    except IntegrityError:
        # Another writer won the unique (run, stage, kind): theirs is the artifact.
        return Artifact.objects.get(run=run, stage=stage, kind=kind), False
    folder_claim(folder, run)
    _write_atomic(folder / name, content)
    output_copy(run=run, name=name, content=content)
    return artifact, True


def output_copy(*, run: Run, name: str, content: bytes) -> None:
    """Copy an artifact into the run's output folder, when it has one and it is the run's."""
    if not run.output_dir:
        return
    try:
        folder_claim(Path(run.output_dir), run)
    except FolderTaken as exc:
        logger.warning("run %s: not copying %s: %s", run.pk, name, exc)
        return
    _write_atomic(Path(run.output_dir) / _safe_name(name), content)


def artifact_bytes(artifact: Artifact) -> bytes:
    """An artifact's bytes as its file holds them, from the database record; from the file
    only for rows written before the record held the text."""
    if artifact.content is not None:
        return json_bytes(artifact.content)
    if artifact.text:
        return artifact.text.encode("utf-8")
    return artifact_path(artifact).read_bytes()


def artifact_read_json(artifact: Artifact) -> dict[str, Any] | None:
    """The JSON content of an artifact: from its row, else from its file."""
    if artifact.content is not None:
        return artifact.content
    try:
        return json.loads(artifact_path(artifact).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        logger.warning("artifact %s unreadable: %s", artifact.pk, exc)
        return None
