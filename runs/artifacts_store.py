"""Artifacts: one row each (the record: its JSON or text is in the database) and a file copy
in the artifact storage under `<namespace>/run-<id>-<short uid>/<name>`.

The storage is Django's storage API (the STORAGES alias "artifacts"): files under the
run's artifact root by default, or any django-storages backend (S3 and compatible, GCS,
Azure) set by TEKTON_ARTIFACT_STORAGE, so a worker on one machine writes what the web
process on another serves, and what the CLI downloads into an `--output` folder
(`artifacts_export`). On a shared backend a profile's artifact root becomes a key prefix.

An artifact is written once: `(run, stage, kind)` is unique, and a second write of the
same artifact returns the existing row without touching the file. A folder (a key prefix)
belongs to one run: its `.tekton-run` object holds the run's uid, and a folder that holds
another run's uid is never written into (two databases sharing a data directory or a
bucket both have a run 1).
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
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, Storage, storages
from django.db import IntegrityError, transaction

from runs.models import Artifact, Run
from swarm.redact import redact
from swarm.stages import PATCH_FILE, STAGES, SUMMARY_FILE
from tekton_site.errors import FieldError
from tekton_site.paths import path_typed

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
    out = path_typed(path, field="output_dir", what="output folder")
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
    # No look first: the insert's unique (run, stage, kind) is the check, and an artifact
    # written earlier is the rare case (one statement less per artifact).
    artifact, content = _artifact_row(run, stage=stage, kind=kind, name=name, data=data, text=text)
    try:
        with transaction.atomic():
            artifact.save(force_insert=True)
    except IntegrityError:
        # Written before, or another writer won the unique (run, stage, kind): theirs is
        # the artifact, and its file is left as it is.
        return Artifact.objects.get(run=run, stage=stage, kind=kind), False
    _files_write(run, [(artifact.name, content)])
    return artifact, True


def artifacts_write(*, run: Run, items: list[dict[str, Any]]) -> list[tuple[Artifact, bool]]:
    """Several artifacts of a run at once (each item artifact_write's stage, kind, name and
    data or text): one insert and one claim of the run's folder for all of them; when
    one of them exists already, each is written on its own as artifact_write does.
    Returns (artifact, created) per item, in order. Call inside a transaction."""
    if len(items) == 1:
        return [artifact_write(run=run, **items[0])]
    rows = [_artifact_row(run, **item) for item in items]
    try:
        with transaction.atomic():
            Artifact.objects.bulk_create([artifact for artifact, _ in rows])
    except IntegrityError:
        return [artifact_write(run=run, **item) for item in items]
    _files_write(run, [(artifact.name, content) for artifact, content in rows])
    return [(artifact, True) for artifact, _ in rows]


def _artifact_row(
    run: Run, *, stage: str, kind: str, name: str, data: Any = None, text: str | None = None
) -> tuple[Artifact, bytes]:
    """The unsaved row of an artifact (redacted) and its file's bytes."""
    name = _safe_name(name)
    if text is not None:
        body = redact(text)
        content = body.encode("utf-8")
        stored = None
    else:
        body = ""
        stored = redact(data)
        content = json_bytes(stored)
    artifact = Artifact(
        run=run,
        stage=stage,
        kind=kind,
        name=name,
        path=f"{run_folder_key(run)}/{name}",
        sha256=hashlib.sha256(content).hexdigest(),
        size=len(content),
        content=stored,
        text=body,
    )
    return artifact, content


def _files_write(run: Run, files: list[tuple[str, bytes]]) -> None:
    run_files_put(run=run, files=files)
    if settings.TEKTON_EXECUTION == "inline":
        # The process executing is the CLI's own, so its disk is the person's: copy now.
        # Workers never write an output folder: the CLI downloads (artifacts_export).
        for name, content in files:
            output_copy(run=run, name=name, content=content)


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
    """An artifact's bytes as its file holds them, from the database record; from the
    storage only for rows written before the record held the text."""
    if artifact.content is not None:
        return json_bytes(artifact.content)
    if artifact.text:
        return artifact.text.encode("utf-8")
    storage, key = artifact_storage_key(artifact)
    with storage.open(key, "rb") as fh:
        return fh.read()


def artifact_read_json(artifact: Artifact) -> dict[str, Any] | None:
    """The JSON content of an artifact: from its row, else from its file."""
    if artifact.content is not None:
        return artifact.content
    try:
        return json.loads(artifact_bytes(artifact).decode("utf-8"))
    except (OSError, ValueError) as exc:
        logger.warning("artifact %s unreadable: %s", artifact.pk, exc)
        return None


# --- the storage -----------------------------------------------------------------------------
def run_storage(run: Run) -> tuple[Storage, str]:
    """(storage, key prefix) of a run's artifacts. A filesystem storage is rooted at the
    run's artifact root (frozen in its config); a shared backend is one bucket, where a
    profile's own artifact root becomes a prefix ("" for TEKTON_ARTIFACT_ROOT)."""
    base = storages["artifacts"]
    root = artifact_root(run)
    if isinstance(base, FileSystemStorage):
        if Path(base.location).resolve() == root:
            return base, ""
        return FileSystemStorage(location=str(root), allow_overwrite=True), ""
    if root == Path(settings.TEKTON_ARTIFACT_ROOT).expanduser().resolve():
        return base, ""
    data = Path(settings.TEKTON_DATA_DIR).resolve()
    prefix = root.relative_to(data).as_posix() if root.is_relative_to(data) else root.as_posix()
    return base, prefix.strip("/") + "/"


def run_folder_key(run: Run) -> str:
    """The run's folder, relative to its artifact root: `<namespace>/run-<id>-<uid8>`."""
    return f"{run.namespace}/{run.slug}"


def _key_check(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or "\\" in key or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"artifact key {key[:200]!r} is not a plain relative path")
    return key


def artifact_storage_key(artifact: Artifact) -> tuple[Storage, str]:
    """Where an artifact's file is: (storage, key). Raises ValueError for a recorded path
    that is not a plain relative path under the artifact root (the path check)."""
    storage, prefix = run_storage(artifact.run)
    return storage, prefix + _key_check(artifact.path)


def artifact_open(artifact: Artifact):
    """The artifact's file, opened for reading from the storage (streamed in chunks by a
    FileResponse). Raises ValueError (bad path), OSError or FileNotFoundError."""
    storage, key = artifact_storage_key(artifact)
    return storage.open(key, "rb")


def _put(storage: Storage, key: str, content: bytes) -> None:
    # Replace, whatever the backend's own rule for an existing name (a rolled-back attempt
    # may have left one): save() must not pick "name_x7Yz" instead.
    if storage.exists(key):
        storage.delete(key)
    saved = storage.save(key, ContentFile(content))
    if saved != key:
        raise OSError(f"the storage saved {key} as {saved}")


def storage_claim(storage: Storage, folder: str, run: Run) -> None:
    """Make the key prefix `folder` the run's (its OWNER_FILE object holds the run's uid),
    or check that it already is. Raises FolderTaken when it belongs to another run, or
    holds artifact files of a run that left no owner object. After writing the owner
    object it is read back, so of two runs racing for one prefix the loser sees the
    winner's uid (on a backend that overwrites) or a renamed copy (on one that does not)."""
    marker = f"{folder}/{OWNER_FILE}"
    mine = str(run.uid)
    if storage.exists(marker):
        with storage.open(marker, "rb") as fh:
            theirs = fh.read().decode("utf-8").strip()
        if theirs != mine:
            raise FolderTaken(f"{folder} holds the artifacts of another run ({theirs})")
        return
    try:
        _dirs, files = storage.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        files = []
    foreign = sorted(name for name in files if name in ARTIFACT_NAMES)
    if foreign:
        raise FolderTaken(f"{folder} already holds artifact files ({', '.join(foreign)})")
    saved = storage.save(marker, ContentFile((mine + "\n").encode("utf-8")))
    if saved != marker:
        storage.delete(saved)
        raise FolderTaken(f"{folder} was claimed by another run at the same moment")
    with storage.open(marker, "rb") as fh:
        if fh.read().decode("utf-8").strip() != mine:
            raise FolderTaken(f"{folder} was claimed by another run at the same moment")


def run_file_put(*, run: Run, name: str, content: bytes) -> str:
    """Write one file of the run (an artifact, a patch, a test output) into its folder in
    the artifact storage, claiming the folder first; returns the key. Raises FolderTaken,
    ValueError (a bad name) and the storage's own errors."""
    return run_files_put(run=run, files=[(name, content)])[0]


def run_files_put(*, run: Run, files: list[tuple[str, bytes]]) -> list[str]:
    """run_file_put for several (name, content) files, the folder claimed once."""
    storage, prefix = run_storage(run)
    folder = prefix + run_folder_key(run)
    storage_claim(storage, folder, run)
    keys = []
    for name, content in files:
        key = f"{folder}/{_safe_name(name)}"
        _put(storage, key, content)
        keys.append(key)
    return keys


def artifacts_export(*, run: Run, folder: str | Path) -> list[Path]:
    """Download every artifact of the run from the storage into `folder` (a person's
    `--output` folder, on the machine that calls this), which is claimed for the run like
    any artifact folder. Files are written whole (write, then rename) and rewritten when
    called again, so it may run after every stage or once at the end. Returns the files
    written. Raises FolderTaken when `folder` is another run's."""
    out = Path(str(folder)).expanduser().resolve()
    folder_claim(out, run)
    written = []
    for artifact in Artifact.objects.filter(run=run).order_by("id"):
        artifact.run = run
        try:
            with artifact_open(artifact) as fh:
                content = fh.read()
        except (OSError, ValueError) as exc:
            # The record is the artifact: a file missing from the storage is still served.
            logger.warning(
                "run %s: %s not in the storage (%s); exporting the record",
                run.pk,
                artifact.name,
                exc,
            )
            content = artifact_bytes(artifact)
        target = out / _safe_name(artifact.name)
        _write_atomic(target, content)
        written.append(target)
    return written
