"""Turning run data into what the dashboard shows: artifacts as documents, transcripts by
round, diffs per file with syntax highlighting.

Everything here treats LLM output as untrusted text. The only HTML built in Python is the
highlighted diff, and every piece of text in it goes through `escape()` before it is
joined; templates get plain values otherwise and autoescape them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from pygments.lexers import TextLexer, get_lexer_for_filename
from pygments.token import STANDARD_TYPES, Token
from pygments.util import ClassNotFound

from swarm.artifacts import ARTIFACT_MODELS
from swarm.diffs import DiffInvalid, diff_parse
from swarm.stages import ROLES

# Fields shown elsewhere on the page (the diff has its own view) or as a badge.
_HIDDEN_FIELDS = {"diff", "offline"}
_LABELS = {
    "dri": "DRI",
    "slos": "SLOs",
    "dfd": "Data flow",
    "junit_path": "JUnit report",
    "rollback_cmds": "Rollback commands",
    "config_map": "Config map",
    "item_id": "Item",
}
# A rendered diff larger than this is cut (the download has all of it).
DIFF_MAX_LINES = 4000


def label_for(key: str) -> str:
    return _LABELS.get(key) or key.replace("_", " ").capitalize()


def _scalar(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return f"{value:g}" if isinstance(value, float) else str(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


@dataclass
class Section:
    """One field of an artifact, shaped for the template.

    kind: "text" (value: str), "list" (items: [str]), "table" (columns, rows: [[str]]),
    "pairs" (items: [(label, str)]), "confidence" (value: str "0.81", number: float).
    """

    key: str
    label: str
    kind: str
    value: str = ""
    number: float | None = None
    items: list[Any] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)


def _section(key: str, value: Any) -> Section:
    label = label_for(key)
    if key == "confidence" and isinstance(value, int | float) and not isinstance(value, bool):
        return Section(key, label, "confidence", value=fmt_score(value), number=float(value))
    if isinstance(value, list):
        if value and all(isinstance(v, dict) for v in value):
            columns: list[str] = []
            for row in value:
                for col in row:
                    if col not in columns:
                        columns.append(col)
            rows = [[_cell(row.get(col)) for col in columns] for row in value]
            return Section(key, label, "table", columns=[label_for(c) for c in columns], rows=rows)
        return Section(key, label, "list", items=[_scalar(v) for v in value])
    if isinstance(value, dict):
        return Section(
            key, label, "pairs", items=[(label_for(str(k)), _cell(v)) for k, v in value.items()]
        )
    return Section(key, label, "text", value=_scalar(value))


def _cell(value: Any) -> str:
    if isinstance(value, list) and all(not isinstance(v, dict | list) for v in value):
        return ", ".join(_scalar(v) for v in value) or "none"
    return _scalar(value)


def artifact_sections(stage: str, content: Any) -> list[Section]:
    """The artifact of `stage` as an ordered list of sections: the schema's fields first,
    in schema order, then any extra keys the model added. Non-dict content (should not
    happen) becomes one text section."""
    if not isinstance(content, dict):
        return [Section("content", "Content", "text", value=_scalar(content))]
    model = ARTIFACT_MODELS.get(stage)
    order = [name for name in (model.model_fields if model else {}) if name in content]
    order += [k for k in content if k not in order]
    return [_section(k, content[k]) for k in order if k not in _HIDDEN_FIELDS]


def artifact_json(content: Any) -> str:
    """Pretty JSON for the raw view (escaped by the template)."""
    return json.dumps(content, indent=2, ensure_ascii=False, sort_keys=False)


# --- transcript ---------------------------------------------------------------------------


@dataclass
class Message:
    seq: int
    role: str
    model: str
    position: str  # "" when the answer has none
    self_confidence: float | None
    vote: dict[str, Any] | None
    risks: list[str]
    checks: list[str]
    dissent: str
    answer: dict[str, Any]
    created_at: Any = None
    has_position: bool = True


@dataclass
class Round:
    attempt: int
    number: int
    kind: str  # "opening" | "debate" | "mediator"
    messages: list[Message]

    @property
    def label(self) -> str:
        """How the page titles the round."""
        if self.kind == "debate":
            return f"Debate round {self.number}"
        return self.kind.capitalize()

    @property
    def name(self) -> str:
        """How the API names the round: opening, debate N or mediator."""
        return f"debate {self.number}" if self.kind == "debate" else self.kind


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def as_strings(value: Any) -> list[str]:
    if isinstance(value, list):
        return [_scalar(v) for v in value]
    if value in (None, ""):
        return []
    return [_scalar(value)]


_ROLE_ORDER = {role: i for i, role in enumerate(ROLES)}


def transcript_rounds(events: list[Any]) -> list[Round]:
    """A stage's `stage.progress` events grouped by (attempt, round), in order: the opening
    round, the debate rounds, then the mediator. `events` are RunEvents of one stage.
    The one transcript builder: the run page shows it, the API serialises it."""
    grouped: dict[tuple[int, int], list[Message]] = {}
    for event in events:
        payload = event.payload if isinstance(event.payload, dict) else {}
        answer = payload.get("answer") if isinstance(payload.get("answer"), dict) else {}
        attempt = int(_number(payload.get("attempt")) or 0)
        number = int(_number(payload.get("round")) or 0)
        position = answer.get("position", answer.get("rationale", ""))
        vote = answer.get("vote") if isinstance(answer.get("vote"), dict) else None
        dissent = answer.get("dissent")
        grouped.setdefault((attempt, number), []).append(
            Message(
                seq=event.seq,
                role=str(payload.get("role") or "?"),
                model=str(payload.get("model") or ""),
                position=_scalar(position) if position is not None else "",
                self_confidence=_number(answer.get("self_confidence", answer.get("confidence"))),
                vote=vote,
                risks=as_strings(answer.get("risks")),
                checks=as_strings(answer.get("checks", answer.get("checklist"))),
                dissent="; ".join(as_strings(dissent)),
                answer=answer,
                created_at=getattr(event, "created_at", None),
                has_position=position is not None,
            )
        )
    rounds = []
    for (attempt, number), messages in sorted(grouped.items()):
        if all(m.role == "mediator" for m in messages):
            kind = "mediator"
        elif number == 0:
            kind = "opening"
        else:
            kind = "debate"
        # In the roles' order, not in the order the concurrent calls happened to finish, so
        # every round reads the same way across.
        messages.sort(key=lambda m: (_ROLE_ORDER.get(m.role, len(_ROLE_ORDER)), m.seq))
        rounds.append(Round(attempt=attempt, number=number, kind=kind, messages=messages))
    return rounds


@dataclass
class VoteRow:
    role: str
    approve: bool
    weight: float | None
    reason: str


def vote_rows(votes: Any) -> list[VoteRow]:
    """StageRun.votes (a list of {role, approve, self_confidence, reason}) for display."""
    rows = []
    for vote in votes if isinstance(votes, list) else []:
        if not isinstance(vote, dict):
            continue
        rows.append(
            VoteRow(
                role=_scalar(vote.get("role", "?")),
                approve=bool(vote.get("approve")),
                weight=_number(vote.get("self_confidence")),
                reason=_scalar(vote.get("reason", "")),
            )
        )
    return rows


# --- diff ---------------------------------------------------------------------------------


@dataclass
class DiffLine:
    kind: str  # "add", "del", "ctx", "hunk", "meta"
    old_no: int | None
    new_no: int | None
    html: SafeString  # escaped, highlighted code


@dataclass
class DiffFile:
    path: str
    added: int = 0
    removed: int = 0
    lines: list[DiffLine] = field(default_factory=list)
    truncated: bool = False

    @property
    def anchor(self) -> str:
        return "diff-" + "".join(c if c.isalnum() else "-" for c in self.path)


def _lexer(path: str):
    try:
        return get_lexer_for_filename(path, stripnl=False, ensurenl=False)
    except ClassNotFound:
        return TextLexer(stripnl=False, ensurenl=False)


def _token_class(ttype) -> str:
    while ttype not in STANDARD_TYPES and ttype is not Token:
        ttype = ttype.parent
    return STANDARD_TYPES.get(ttype, "")


def highlight_lines(path: str, code_lines: list[str]) -> list[SafeString]:
    """Each line of `code_lines` as escaped HTML with Pygments token spans. The lines are
    lexed together so multi-line constructs (strings, comments) colour right."""
    if not code_lines:
        return []
    text = "\n".join(code_lines) + "\n"
    out: list[list[str]] = [[]]
    for ttype, value in _lexer(path).get_tokens(text):
        css = _token_class(ttype)
        parts = value.split("\n")
        for i, part in enumerate(parts):
            if i:
                out.append([])
            if part:
                piece = escape(part)
                out[-1].append(f'<span class="{css}">{piece}</span>' if css else piece)
    # Every piece above went through escape(); the spans are ours.
    return [mark_safe("".join(pieces)) for pieces in out[: len(code_lines)]]  # noqa: S308


_INNER = {"+": "gi", "-": "gd", " ": ""}  # an interdiff line's own patch prefix: its class


def _inner(text: str) -> tuple[str, str]:
    """An interdiff line as (its patch's prefix, its code); a hunk header is all prefix."""
    if text[:1] in _INNER and not text.startswith("@@"):
        return text[:1], text[1:]
    return text, ""


def _nested_html(prefix: str, code: SafeString) -> SafeString:
    css = "gu" if prefix.startswith("@@") else _INNER.get(prefix, "")
    shown = f'<span class="{css}">{escape(prefix)}</span>' if css else escape(prefix)
    # escape() on the prefix; `code` is highlight_lines' escaped HTML.
    return mark_safe(f"{shown}{code}")  # noqa: S308


def diff_files(patch: str, max_lines: int = DIFF_MAX_LINES, nested: bool = False) -> list[DiffFile]:
    """A unified diff split per file, with added/removed counts and highlighted lines.
    `nested`: the diff is an interdiff (swarm.diffs.interdiff), whose lines each start
    with their own patch's +/-/space: that prefix is marked apart and the code after it
    highlighted.

    A patch unidiff cannot read (a model's hand-counted hunks) is still shown: as one
    "file" of plain lines, so a person can see what was written."""
    try:
        parsed = diff_parse(patch or "")
    except DiffInvalid as exc:
        lines = [DiffLine("meta", None, None, escape(str(exc)))]
        lines += [DiffLine("ctx", None, None, escape(t)) for t in (patch or "").splitlines()]
        return [DiffFile(path="(unreadable diff)", lines=lines[:max_lines])]
    files = []
    for parsed_file in parsed:
        shown = DiffFile(
            path=parsed_file.path, added=parsed_file.added, removed=parsed_file.removed
        )
        code = [ln.text for h in parsed_file.hunks for ln in h.lines if ln.kind != "meta"]
        prefixes = iter([])
        if nested:
            prefixes, code = iter([_inner(t)[0] for t in code]), [_inner(t)[1] for t in code]
        highlighted = iter(highlight_lines(parsed_file.path, code))
        count = 0
        for hunk in parsed_file.hunks:
            rows = [DiffLine("hunk", None, None, escape(hunk.header))]
            for ln in hunk.lines:
                if ln.kind == "meta":
                    rows.append(DiffLine("meta", None, None, escape(ln.text)))
                else:
                    html = next(highlighted)
                    html = _nested_html(next(prefixes), html) if nested else html
                    rows.append(DiffLine(ln.kind, ln.old_no, ln.new_no, html))
            for row in rows:
                if count >= max_lines:
                    shown.truncated = True
                    break
                shown.lines.append(row)
                count += 1
        if parsed_file.is_binary:
            shown.lines.append(DiffLine("meta", None, None, escape("binary file")))
        files.append(shown)
    return files


# --- run and stage summaries --------------------------------------------------------------


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = max(0.0, float(seconds))
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 90:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def fmt_tokens(count: int | None) -> str:
    count = int(count or 0)
    if count >= 1_000_000:
        return f"{count / 1_000_000:.1f}M"
    if count >= 10_000:
        return f"{count / 1000:.0f}k"
    if count >= 1000:
        return f"{count / 1000:.1f}k"
    return str(count)


def fmt_budget(config: dict[str, Any] | None) -> str:
    """'400,000 tokens · $5.00', or 'no limit'."""
    config = config or {}
    tokens = int(config.get("budget_tokens") or 0)
    cost = float(config.get("budget_cost_usd") or 0)
    parts = ([f"{tokens:,} tokens"] if tokens else []) + ([fmt_cost(cost)] if cost else [])
    return " · ".join(parts) or "no limit"


def fmt_cost(cost: Any) -> str:
    value = float(cost or 0)
    if value == 0:
        return "$0"
    if value < 0.01:
        return f"${value:.4f}"
    return f"${value:.2f}"


def fmt_ago(when: Any, now: Any = None) -> str:
    """ "just now", "5 min ago", "3 h ago", "2 days ago"."""
    if when is None:
        return "–"
    from django.utils import timezone

    seconds = max(0.0, ((now or timezone.now()) - when).total_seconds())
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    days = int(seconds // 86400)
    return f"{days} day{'s' if days != 1 else ''} ago"


def fmt_score(value: float | None) -> str:
    """Scores, quorums and thresholds read one way on every page: 0.81, as the stage's
    reason and the engine's checks print them."""
    return "–" if value is None else f"{value:.2f}"


@dataclass
class StageView:
    """One of the nine steps of a run's timeline, for the strip and the timeline rows."""

    name: str
    position: int
    in_run: bool
    status: str = "not in run"
    attempt: int = 0
    duration: str = "–"
    confidence: str = "–"
    approval: str = "–"
    quorum: str = "–"  # the run's, as the timeline says "quorum 0.45 of 0.67"
    threshold: str = "–"
    quorum_passed: bool | None = None  # weighted approval >= the run's quorum
    threshold_passed: bool | None = None  # mediator confidence >= the run's threshold
    messages: int = 0
    reason: str = ""
    tokens: str = "0"
    cost: str = "$0"
    # Input tokens as the prompt caches split them ("" when the stage sent none).
    input_cached: str = ""
    input_uncached: str = ""
    cache_written: str = ""

    @property
    def css(self) -> str:
        return "not-in-run" if not self.in_run else self.status

    @property
    def rev(self) -> str:
        # Changes whenever anything shown about the stage changes; tekton.js compares it
        # to decide whether the open stage panel needs a refresh.
        return f"{self.status}:{self.attempt}:{self.messages}:{self.confidence}:{self.reason[:40]}"


def input_split(row: Any) -> dict[str, str]:
    """A run's or stage's input tokens read from the prompt caches, billed in full and
    written to them, formatted; empty when it sent no input yet."""
    if not row.input_tokens:
        return {"input_cached": "", "input_uncached": "", "cache_written": ""}
    return {
        "input_cached": fmt_tokens(row.cached_input_tokens),
        "input_uncached": fmt_tokens(row.uncached_input_tokens),
        "cache_written": fmt_tokens(row.cache_write_tokens) if row.cache_write_tokens else "",
    }


def stage_views(run: Any, stages: list[Any], messages: dict[str, int] | None = None) -> list[Any]:
    """All nine stages of `run` in order; `stages` are its StageRuns (prefetched),
    `messages` the count of agent messages per stage (optional)."""
    from swarm.stages import STAGE_NAMES

    config = run.config if isinstance(run.config, dict) else {}
    quorum = _number(config.get("quorum"))
    threshold = _number(config.get("threshold"))
    by_name = {s.stage: s for s in stages}
    out = []
    for position, name in enumerate(STAGE_NAMES, start=1):
        row = by_name.get(name)
        if row is None:
            out.append(StageView(name=name, position=position, in_run=False))
            continue
        approval = row.approval
        out.append(
            StageView(
                name=name,
                position=position,
                in_run=True,
                status=row.status,
                attempt=row.attempt,
                duration=fmt_duration(row.duration_s)
                if row.finished_at
                else ("running" if row.status == "running" else "–"),
                confidence=fmt_score(row.confidence),
                approval=fmt_score(approval),
                quorum=fmt_score(quorum),
                threshold=fmt_score(threshold),
                quorum_passed=None
                if approval is None or quorum is None
                else approval >= quorum - 1e-9,
                threshold_passed=None
                if row.confidence is None or threshold is None
                else row.confidence >= threshold - 1e-9,
                messages=(messages or {}).get(name, 0),
                reason=row.reason or "",
                tokens=fmt_tokens(row.input_tokens + row.output_tokens),
                cost=fmt_cost(row.cost_usd),
                **input_split(row),
            )
        )
    return out
