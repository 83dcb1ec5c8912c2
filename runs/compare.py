"""Comparing a stage's artifact: with the attempts a retry set aside (StageAttempt), with
the run's parent and with its forks. A unified diff of the pretty JSON of both sides,
rendered by runs.render.diff_files like a change's diff; a field that holds a patch (the
code stage's `diff`) is left out of it and compared as patches instead (an interdiff: per
file, how the two sides' changes differ), since as JSON it is one line of escaped text.

Read-only: nothing here writes to the database.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Any

from runs.models import Artifact, Run, StageAttempt, StageRun
from runs.selectors import run_lineage
from swarm.diffs import DiffInvalid, FileInterdiff, interdiff
from swarm.stages import PATCH_FILE, stage_get

# The artifact fields that hold a unified diff, by stage: only code's so far.
PATCH_FIELDS = {"code": "diff"}


@dataclass(frozen=True)
class CompareOption:
    key: str  # "attempt-2", "run-15": what ?compare= names
    label: str


@dataclass(frozen=True)
class Comparison:
    key: str
    old_label: str
    new_label: str
    diff: str  # the JSON diff, the patch field left out; "" when the same
    patch_field: str | None = None  # the field compared as patches, if the stage has one
    patch_files: tuple[FileInterdiff, ...] = ()  # the files whose changes differ

    @property
    def patch_diff(self) -> str:
        """The interdiff as one unified diff ("" when both patches are the same)."""
        return "".join(f.diff for f in self.patch_files)

    @property
    def same(self) -> bool:
        return not self.diff and not self.patch_files


def _current(run_id: int, stage: str) -> dict[str, Any] | None:
    """A run's artifact of `stage` as the run page shows it: the accepted one, else the
    blocked stage's draft."""
    content = (
        Artifact.objects.filter(run_id=run_id, stage=stage, kind=Artifact.Kind.JSON)
        .values_list("content", flat=True)
        .first()
    )
    if content is not None:
        return content
    draft = StageRun.objects.filter(run_id=run_id, stage=stage).values_list("draft", flat=True)
    draft = draft.first()
    return draft.get("artifact") if isinstance(draft, dict) else None


def _related_runs(user, run: Run) -> list[tuple[Run, str]]:
    """The parent and the forks of `run` that `user` may see, each with how it is named."""
    parent, forks = run_lineage(user, run)
    found: list[tuple[Run, str]] = []
    if parent is not None:
        found.append((parent, f"parent run {parent.pk}"))
    for fork in forks:
        found.append((fork, f"fork run {fork.pk} (from {fork.forked_from_stage})"))
    return found


def stage_compare_options(user, run: Run, stage: str) -> list[CompareOption]:
    """What `stage` of `run` can be compared with: its set-aside attempts that left a
    draft, and the parent's and forks' artifacts of the stage."""
    options = [
        CompareOption(f"attempt-{a.number}", f"attempt {a.number} ({a.status})")
        for a in StageAttempt.objects.filter(run=run, stage=stage, artifact__isnull=False)
    ]
    related = _related_runs(user, run)
    have = set(
        Artifact.objects.filter(
            run_id__in=[r.pk for r, _ in related], stage=stage, kind=Artifact.Kind.JSON
        ).values_list("run_id", flat=True)
    )
    have |= set(
        StageRun.objects.filter(
            run_id__in=[r.pk for r, _ in related], stage=stage, draft__isnull=False
        ).values_list("run_id", flat=True)
    )
    options += [CompareOption(f"run-{r.pk}", label) for r, label in related if r.pk in have]
    return options


def _pretty(content: Any) -> list[str]:
    return json.dumps(content, indent=2, ensure_ascii=False, sort_keys=True).splitlines(
        keepends=True
    )


def json_diff(old: Any, new: Any, name: str) -> str:
    """The unified diff of two JSON documents (keys sorted, so order does not count)."""
    lines = list(
        difflib.unified_diff(_pretty(old), _pretty(new), fromfile=f"a/{name}", tofile=f"b/{name}")
    )
    # A last line with no newline would run into the next header.
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def patch_compare(old: str, new: str, name: str) -> tuple[FileInterdiff, ...]:
    """Two patches per file (swarm.diffs.interdiff). One that does not parse (a model's
    draft can be broken) is compared as plain lines, as the one file `name`."""
    try:
        return tuple(interdiff(old, new))
    except DiffInvalid:
        lines = difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=f"a/{name}",
            tofile=f"b/{name}",
        )
        text = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
        return (FileInterdiff(name, "differs", text),) if text else ()


def _split(content: Any, field: str | None) -> tuple[Any, str]:
    """The artifact without its patch field, and the patch ("" when it has none)."""
    if field is None or not isinstance(content, dict):
        return content, ""
    rest = {k: v for k, v in content.items() if k != field}
    patch = content.get(field)
    return rest, patch if isinstance(patch, str) else ""


def stage_compare(user, run: Run, stage: str, key: str) -> Comparison | None:
    """`stage`'s artifact of `run` now against the side `key` names (one of
    stage_compare_options), or None when `key` names nothing `user` may compare."""
    options = {o.key: o for o in stage_compare_options(user, run, stage)}
    option = options.get(key)
    current = _current(run.pk, stage)
    if option is None or current is None:
        return None
    kind, _, ident = key.partition("-")
    if kind == "attempt":
        old = (
            StageAttempt.objects.filter(run=run, stage=stage, number=int(ident))
            .values_list("artifact", flat=True)
            .first()
        )
    else:
        old = _current(int(ident), stage)
    field = PATCH_FIELDS.get(stage)
    (old, old_patch), (current, new_patch) = _split(old, field), _split(current, field)
    return Comparison(
        key=key,
        old_label=option.label,
        new_label=f"run {run.pk}" + (" (now)" if kind == "attempt" else ""),
        diff=json_diff(old, current, stage_get(stage).artifact_file),
        patch_field=field,
        patch_files=patch_compare(old_patch, new_patch, PATCH_FILE) if field else (),
    )
