"""The memory journal: every front-door invocation remembered under one directory.

    <memory>/journal.md          one section per invocation: time, agent, outcome, previews
    <memory>/events.jsonl        one JSON object a line: start, attempt, step, end
    <memory>/invocations/<UTC>/  prompt.md, context.md, response.md (or stdout.txt and
                                 stderr.txt), metadata.json (provider, model, tokens,
                                 cost, duration, git sha / branch / dirty, chain tried)
    <memory>/latest              a link to the newest invocation's folder

Folder names are the start time in UTC (20261201T120003Z), with -2, -3 ... on a clash.
Everything is redacted (swarm.redact, one Labeller per invocation) before it is written.
Files are replaced whole (written aside, then renamed) and journal lines are appended in
one write each, so a reader never sees half a file. metadata.json says RUNNING from the
start; an invocation that raises (Ctrl-C included) ends FAILED with what is known.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swarm.redact import Labeller, redact

OK, FAILED, DRY_RUN, RUNNING = "OK", "FAILED", "DRY-RUN", "RUNNING"
INVOCATIONS = "invocations"
PREVIEW_CHARS = 160
_STAMP = "%Y%m%dT%H%M%SZ"


class JournalError(Exception):
    """The memory directory cannot be written (or read)."""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _preview(text: str, limit: int = PREVIEW_CHARS) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _write_whole(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _append(path: Path, text: str) -> None:
    # O_APPEND and one write: concurrent invocations' lines do not interleave.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)


def git_facts(path: str | Path | None) -> dict[str, Any]:
    """{"git_sha", "git_branch", "git_dirty"} of the repository at `path`; {} outside one."""
    if path is None:
        return {}
    from swarm.git import GitError, git_out, git_run

    try:
        top = git_out(path, "rev-parse", "--show-toplevel").strip()
        sha = git_run(top, "rev-parse", "HEAD").stdout.strip() or None
        branch = git_out(top, "rev-parse", "--abbrev-ref", "HEAD").strip()
        dirty = bool(git_out(top, "status", "--porcelain", "--untracked-files=no").strip())
    except GitError:
        return {}
    return {"git_sha": sha, "git_branch": branch, "git_dirty": dirty}


@dataclass
class Invocation:
    """One invocation being journaled; made by Journal.invocation."""

    journal: Journal
    folder: Path
    started_at: datetime.datetime
    meta: dict[str, Any]
    labeller: Labeller = field(default_factory=Labeller)
    outcome: str = RUNNING
    _t0: float = field(default_factory=time.monotonic)

    @property
    def id(self) -> str:
        return self.folder.name

    def _red(self, value: Any) -> Any:
        return redact(value, labeller=self.labeller)

    def event(self, kind: str, **data: Any) -> None:
        record = {"ts": _now().isoformat(), "invocation": self.id, "kind": kind, **data}
        _append(self.journal.events_path, json.dumps(self._red(record), default=str) + "\n")

    def update(self, **meta: Any) -> None:
        """Merge facts into metadata.json (model, tokens ...), as soon as they are known."""
        self.meta.update(meta)
        self._write_meta()

    def _write_meta(self) -> None:
        data = {**self.meta, "outcome": self.outcome, "id": self.id}
        _write_whole(
            self.folder / "metadata.json", json.dumps(self._red(data), indent=2, default=str)
        )

    def write(self, name: str, text: str) -> None:
        _write_whole(self.folder / name, self._red(text))

    def finish(
        self,
        outcome: str,
        *,
        response: str | None = None,
        stdout: str | None = None,
        stderr: str | None = None,
        error: str | None = None,
        **meta: Any,
    ) -> None:
        if self.outcome != RUNNING:
            return  # finished already
        if response is not None:
            self.write("response.md", response)
        if stdout is not None:
            self.write("stdout.txt", stdout)
        if stderr is not None:
            self.write("stderr.txt", stderr)
        self.outcome = outcome
        self.meta.update(meta)
        self.meta["finished_at"] = _now().isoformat()
        self.meta["duration_s"] = round(time.monotonic() - self._t0, 3)
        if error:
            self.meta["error"] = error
        self._write_meta()
        self.event("end", outcome=outcome, error=error)
        self.journal.section_append(self, response or stdout or error or "")


class Journal:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    @property
    def events_path(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def journal_path(self) -> Path:
        return self.root / "journal.md"

    def check_writable(self) -> None:
        """Raise JournalError (one line) unless the directory can be made and written."""
        try:
            (self.root / INVOCATIONS).mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.root):
                pass
        except OSError as exc:
            raise JournalError(
                f"memory directory {self.root} is not writable: {exc.strerror or exc}"
            ) from None

    def _folder_new(self, when: datetime.datetime) -> Path:
        base = when.strftime(_STAMP)
        n = 1
        while True:
            name = base if n == 1 else f"{base}-{n}"
            path = self.root / INVOCATIONS / name
            try:
                path.mkdir()
                return path
            except FileExistsError:
                n += 1

    def _latest_point(self, folder: Path) -> None:
        link = self.root / "latest"
        tmp = self.root / f".latest-{os.getpid()}"
        tmp.unlink(missing_ok=True)
        try:
            tmp.symlink_to(Path(INVOCATIONS) / folder.name)
            os.replace(tmp, link)
        except OSError:
            tmp.unlink(missing_ok=True)  # a filesystem without links: the folders suffice

    @contextmanager
    def invocation(
        self, *, agent: str, command: str, prompt: str, context: str = "", **meta: Any
    ) -> Iterator[Invocation]:
        """Journal one invocation. The body calls `inv.finish(OK|FAILED|DRY_RUN, ...)`; an
        exception (or Ctrl-C) out of it is journaled FAILED, then goes on up."""
        self.check_writable()
        started = _now()
        folder = self._folder_new(started)
        inv = Invocation(
            self,
            folder,
            started,
            {"agent": agent, "command": command, "started_at": started.isoformat(), **meta},
        )
        inv.write("prompt.md", prompt)
        if context:
            inv.write("context.md", context)
        inv._write_meta()
        self._latest_point(folder)
        inv.event("start", agent=agent, command=command, prompt=_preview(prompt))
        try:
            yield inv
        except BaseException as exc:
            reason = (
                "interrupted"
                if isinstance(exc, KeyboardInterrupt | asyncio.CancelledError)
                else (" ".join(str(exc).split()) or type(exc).__name__)
            )
            inv.finish(FAILED, error=reason[:500])
            raise
        if inv.outcome == RUNNING:
            inv.finish(FAILED, error="ended without an outcome")

    def section_append(self, inv: Invocation, answer: str) -> None:
        m = inv.meta
        when = inv.started_at.strftime("%Y-%m-%d %H:%M:%S UTC")
        lines = [f"## {when} · {m.get('command', m.get('agent'))} · {inv.outcome}", ""]
        lines.append(f"- folder: {INVOCATIONS}/{inv.id}")
        facts = []
        if m.get("model"):
            facts.append(f"{m['model']}" + (f" ({m['provider']})" if m.get("provider") else ""))
        if m.get("tokens_in") is not None:
            facts.append(f"tokens {m.get('tokens_in', 0)} in / {m.get('tokens_out', 0)} out")
        if m.get("cost_usd") is not None:
            facts.append(f"${float(m['cost_usd']):.4f}")
        facts.append(f"{m.get('duration_s', 0):.1f} s")
        lines.append("- " + " · ".join(facts))
        if m.get("intent"):
            lines.append(f"- intent: {m['intent']}")
        lines.append(f"- prompt: {_preview(self._read(inv.folder / 'prompt.md'))}")
        if answer:
            lines.append(f"- answer: {_preview(inv._red(answer))}")
        _append(self.journal_path, "\n".join(lines) + "\n\n")

    # --- reading -----------------------------------------------------------------------
    @staticmethod
    def _read(path: Path) -> str:
        try:
            return path.read_text(encoding="utf-8")
        except OSError:
            return ""

    def entries(self) -> list[dict[str, Any]]:
        """Every invocation's metadata, newest first, with its prompt and answer texts."""
        folder = self.root / INVOCATIONS
        if not folder.is_dir():
            return []
        found = []
        for path in sorted(folder.iterdir(), key=lambda p: _sort_key(p.name), reverse=True):
            try:
                meta = json.loads((path / "metadata.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            meta["folder"] = str(path)
            meta["prompt"] = self._read(path / "prompt.md")
            meta["response"] = self._read(path / "response.md")
            found.append(meta)
        return found

    def search(self, text: str) -> list[dict[str, Any]]:
        needle = text.lower()
        return [
            e
            for e in self.entries()
            if needle in e["prompt"].lower()
            or needle in e["response"].lower()
            or needle in str(e.get("model", "")).lower()
            or needle in str(e.get("command", "")).lower()
        ]

    def recent_context(self, *, sessions: int = 5, events: int = 10, budget: int = 4000) -> str:
        """The recent journal as context for the next prompt: the last `sessions`
        invocations and `events` events, newest first, cut to `budget` characters."""
        parts: list[str] = []
        for e in self.entries()[:sessions]:
            parts.append(
                f"- {e.get('started_at', '')} {e.get('command', '')} {e.get('outcome', '')}: "
                f"asked {_preview(e['prompt'], 300)!r}; answered {_preview(e['response'], 300)!r}"
            )
        lines = self._read(self.events_path).splitlines()[-events:]
        if lines:
            parts.append("Recent events:")
            for raw in reversed(lines):
                try:
                    ev = json.loads(raw)
                except ValueError:
                    continue
                extra = {k: v for k, v in ev.items() if k not in ("ts", "invocation", "kind")}
                parts.append(f"- {ev.get('ts', '')} {ev.get('kind', '')} {json.dumps(extra)[:200]}")
        text = "\n".join(parts)
        return text if len(text) <= budget else text[: budget - 1] + "…"

    def prune(self, *, older_than: datetime.timedelta, dry_run: bool = False) -> list[str]:
        """Remove the invocations that started before now - `older_than`, their journal
        sections and events; return the removed folders' names (with `dry_run`, the
        names it would remove, removing nothing)."""
        cutoff = _now() - older_than
        folder = self.root / INVOCATIONS
        if not folder.is_dir():
            return []
        removed = []
        for path in sorted(folder.iterdir()):
            started = _stamp_time(path.name)
            if started is not None and started < cutoff:
                if not dry_run:
                    shutil.rmtree(path, ignore_errors=True)
                removed.append(path.name)
        if not removed or dry_run:
            return removed
        gone = set(removed)
        sections = self._read(self.journal_path).split("\n## ")
        kept = [s for s in sections if not any(f"{INVOCATIONS}/{name}\n" in s for name in gone)]
        text = "\n## ".join(kept)
        _write_whole(self.journal_path, text if text.strip() else "")
        events = [
            line
            for line in self._read(self.events_path).splitlines()
            if not any(f'"invocation": "{name}"' in line for name in gone)
        ]
        _write_whole(self.events_path, "".join(f"{line}\n" for line in events))
        link = self.root / "latest"
        if link.is_symlink() and not link.exists():
            link.unlink()
            remaining = sorted((folder.iterdir()), key=lambda p: _sort_key(p.name))
            if remaining:
                self._latest_point(remaining[-1])
        return removed


def _stamp_time(name: str) -> datetime.datetime | None:
    try:
        return datetime.datetime.strptime(name.split("-")[0], _STAMP).replace(tzinfo=datetime.UTC)
    except ValueError:
        return None


def _sort_key(name: str) -> tuple[str, int]:
    stamp, _, n = name.partition("-")
    return stamp, int(n) if n.isdigit() else 1


def duration_parse(text: str) -> datetime.timedelta:
    """'14d', '12h', '30m', '2w' as a timedelta; ValueError otherwise."""
    units = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    raw = text.strip().lower()
    if len(raw) < 2 or raw[-1] not in units or not raw[:-1].isdigit():
        raise ValueError(f"a duration is a number and a unit (m, h, d, w), like 14d; got {text!r}")
    return datetime.timedelta(**{units[raw[-1]]: int(raw[:-1])})
