"""Artifact files: `<artifact_root>/run-<id>/<name>`, a copy in the run's output dir, one row each.

An artifact is written once: `(run, stage, kind)` is unique, and a second write of the
same artifact returns the existing row without touching the file.
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

logger = logging.getLogger("tekton.runs.artifacts")


def artifact_root(run: Run) -> Path:
    """The run's artifact root: frozen in its config, else TEKTON_ARTIFACT_ROOT."""
    root = (run.config or {}).get("artifact_root") or settings.TEKTON_ARTIFACT_ROOT
    return Path(root).expanduser().resolve()


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


def artifact_write(
    *, run: Run, stage: str, kind: str, name: str, data: Any = None, text: str | None = None
) -> tuple[Artifact, bool]:
    """Write one artifact file and its row; returns (artifact, created).

    `data` (JSON) or `text` (the patch) is redacted before it is written. When the row
    already exists nothing is written and (existing, False) comes back. The file also
    goes to `run.output_dir` when the run has one. Call inside a transaction.
    """
    existing = Artifact.objects.filter(run=run, stage=stage, kind=kind).first()
    if existing is not None:
        return existing, False
    name = _safe_name(name)
    if text is not None:
        content = redact(text).encode("utf-8")
        stored = None
    else:
        stored = redact(data)
        content = json_bytes(stored)
    rel = f"run-{run.pk}/{name}"
    root = artifact_root(run)
    _write_atomic(root / rel, content)
    try:
        with transaction.atomic():
            artifact = Artifact.objects.create(
                run=run,
                stage=stage,
                kind=kind,
                name=name,
                path=rel,
                sha256=hashlib.sha256(content).hexdigest(),
                size=len(content),
                content=stored,
            )
    except IntegrityError:
        # Another writer won the unique (run, stage, kind): theirs is the artifact.
        return Artifact.objects.get(run=run, stage=stage, kind=kind), False
    output_copy(run=run, name=name, content=content)
    return artifact, True


def output_copy(*, run: Run, name: str, content: bytes) -> None:
    """Copy an artifact into the run's output dir (created if missing), when it has one."""
    if not run.output_dir:
        return
    _write_atomic(Path(run.output_dir) / _safe_name(name), content)


def artifact_read_json(artifact: Artifact) -> dict[str, Any] | None:
    """The JSON content of an artifact: from its row, else from its file."""
    if artifact.content is not None:
        return artifact.content
    try:
        return json.loads(artifact_path(artifact).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        logger.warning("artifact %s unreadable: %s", artifact.pk, exc)
        return None
