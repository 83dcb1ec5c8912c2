"""The one unified-diff parser (`unidiff`): file lists for validation, per-file hunks for
rendering, the facts workspaces check before they apply a patch, and how two patches
differ (`interdiff`).

A model writes the diff, so the text is untrusted: parsing never touches the filesystem,
and paths come back exactly as the diff names them (a/ and b/ prefixes removed); deciding
whether a path is allowed is the caller's job.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from unidiff import PatchedFile, PatchSet, UnidiffParseError


class DiffInvalid(ValueError):
    """The text is not a unified diff unidiff can read (the message says where)."""


@dataclass(frozen=True)
class DiffLine:
    kind: str  # "add" | "del" | "ctx" | "meta" ("\ No newline at end of file")
    text: str  # without the leading +/-/space and without the line break
    old_no: int | None
    new_no: int | None


@dataclass(frozen=True)
class DiffHunk:
    header: str  # "@@ -12,7 +12,9 @@ def f():"
    lines: tuple[DiffLine, ...]


@dataclass(frozen=True)
class FileDiff:
    path: str  # the new path, or the old one for a deletion
    old_path: str | None  # None for a new file
    new_path: str | None  # None for a deletion
    added: int
    removed: int
    is_binary: bool
    hunks: tuple[DiffHunk, ...]


def _strip(name: str) -> str | None:
    name = name.split("\t", 1)[0].strip()
    if name == "/dev/null":
        return None
    return name[2:] if name.startswith(("a/", "b/")) else name


_KIND = {"+": "add", "-": "del", " ": "ctx", "\\": "meta"}


def _file(patched: PatchedFile) -> FileDiff:
    old, new = _strip(patched.source_file or ""), _strip(patched.target_file or "")
    hunks = []
    for hunk in patched:
        header = f"@@ -{hunk.source_start},{hunk.source_length} +{hunk.target_start},{hunk.target_length} @@"
        if hunk.section_header:
            header += f" {hunk.section_header}"
        lines = tuple(
            DiffLine(
                kind=_KIND.get(line.line_type, "ctx"),
                text=line.value.rstrip("\n").rstrip("\r")
                if line.line_type != "\\"
                else ("\\" + line.value).rstrip("\n"),
                old_no=line.source_line_no,
                new_no=line.target_line_no,
            )
            for line in hunk
        )
        hunks.append(DiffHunk(header=header, lines=lines))
    return FileDiff(
        path=new or old or patched.path,
        old_path=old,
        new_path=new,
        added=patched.added,
        removed=patched.removed,
        is_binary=bool(patched.is_binary_file),
        hunks=tuple(hunks),
    )


def diff_parse(text: str) -> list[FileDiff]:
    """The files of a unified diff, in order. Raises DiffInvalid for text unidiff cannot
    read (a hunk shorter or longer than its header says, a hunk before any file header);
    text with no file header at all parses to []."""
    try:
        return [_file(f) for f in PatchSet(text or "")]
    except UnidiffParseError as exc:
        raise DiffInvalid(f"not a valid unified diff: {exc}") from None


def diff_paths(text: str) -> list[str]:
    """The paths a diff touches (new name, or old name for a deletion), each once, in order.
    Raises DiffInvalid."""
    return list(dict.fromkeys(f.path for f in diff_parse(text)))


# --- comparing two patches ----------------------------------------------------------------


@dataclass(frozen=True)
class FileInterdiff:
    path: str
    change: str  # "only_old" | "only_new" | "differs"
    diff: str  # a unified diff of the file's patch lines, old side a/, new side b/


_PREFIX = {"add": "+", "del": "-", "ctx": " ", "meta": ""}  # meta text keeps its "\"


def _patch_lines(file: FileDiff) -> list[str]:
    """A file's part of a patch as text lines, hunk headers included: what the interdiff
    compares. Line numbers stay in the headers: both sides patch the same base, so a
    shifted hunk is worth one changed line."""
    lines = ["binary file\n"] if file.is_binary else []
    for hunk in file.hunks:
        lines.append(hunk.header + "\n")
        lines += [_PREFIX[ln.kind] + ln.text + "\n" for ln in hunk.lines]
    return lines


def interdiff(old: str, new: str) -> list[FileInterdiff]:
    """How two patches of the same base differ, per file, the way `git range-diff` shows
    it: each file only one side touches whole, and for a file both touch a unified diff of
    the two patches' lines (each keeps its own +/-/space after the interdiff's). Files both
    patch alike are left out, so identical patches give []. Raises DiffInvalid."""
    before = {f.path: _patch_lines(f) for f in diff_parse(old)}
    after = {f.path: _patch_lines(f) for f in diff_parse(new)}
    found = []
    for path in dict.fromkeys([*before, *after]):
        a, b = before.get(path, []), after.get(path, [])
        if a == b:
            continue
        change = "differs" if path in before and path in after else "only_old" if a else "only_new"
        body = difflib.unified_diff(
            a,
            b,
            fromfile=f"a/{path}" if path in before else "/dev/null",
            tofile=f"b/{path}" if path in after else "/dev/null",
        )
        found.append(FileInterdiff(path, change, "".join(body)))
    return found
