"""Rich rendering for `manage.py tekton`: the explain plan, run lists, run details and the
live follower. Pure formatting: nothing here writes to the database or calls a service.

Everything shown passes swarm.redact (events are redacted when recorded; goals, reasons
and paths are redacted again here because they come straight from rows).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from swarm.redact import redact
from swarm.stages import DEBATER_ROLES, ROLES, STAGE_NAMES

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

FINAL_KINDS = ("run.finished", "run.failed", "run.cancelled")
STATUS_STYLE = {
    "queued": "dim",
    "running": "cyan",
    "blocked": "yellow",
    "succeeded": "green",
    "skipped": "green",
    "failed": "red",
    "cancelled": "magenta",
}


def console_for(stream: IO[str], *, force_terminal: bool | None = None) -> Console:
    """A Console writing to `stream`; wide enough off a terminal that tables stay readable."""
    console = Console(file=stream, force_terminal=force_terminal, highlight=False, soft_wrap=False)
    if not console.is_terminal:
        console = Console(
            file=stream, force_terminal=force_terminal, highlight=False, width=140, soft_wrap=False
        )
    return console


def cut(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _status(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def _num(value: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if value is None else fmt.format(value)


# --- explain ------------------------------------------------------------------------------


def explain_renderable(explain: dict[str, Any], *, goal: str, repo_path: str) -> Group:
    """The --explain plan: stage order with dependencies, per-role model -> backend,
    rounds, quorum, threshold and consensus mode."""
    header = Text.assemble(
        ("plan only: nothing runs, nothing is written\n", "bold"),
        f"goal: {cut(redact(goal), 110)}\n",
        f"repository: {redact(repo_path)}\n",
        f"profile: {explain['profile']}   rounds: {explain['rounds']} (+ opening round)   ",
        f"quorum: {float(explain['quorum']):.2f}   threshold: {float(explain['threshold']):.2f}",
    )
    if explain.get("cache_stagger_note"):
        header.append(f"\n{explain['cache_stagger_note']}")
    tests = explain.get("tests") or {}
    if tests:
        found = (
            f"{cut(redact(str(tests['command'])), 200)} (from {tests.get('source')})"
            if tests.get("command")
            else f"none: {cut(redact(str(tests.get('problem') or 'not found')), 200)}"
        )
        header.append(f"\ntests: {found}   isolation: {tests.get('isolation')}")
    table = Table(title="stages", show_lines=False, expand=False)
    table.add_column("#", justify="right")
    table.add_column("stage", no_wrap=True)
    table.add_column("waits for")
    table.add_column("consensus", no_wrap=True)
    for role in ROLES:
        table.add_column(role, overflow="fold")
    for stage in explain["stages"]:
        roles = stage.get("roles", {})
        cells = []
        for role in ROLES:
            info = roles.get(role)
            if not info:
                cells.append("-")
                continue
            cells.append(f"{info.get('model')}\n-> {info.get('backend')}")
        table.add_row(
            str(stage.get("position", "")),
            stage["stage"],
            ", ".join(stage.get("depends_on") or []) or "-",
            "free (checks decide)" if stage.get("consensus_free") else "debate + quorum",
            *cells,
        )
    forecast = explain.get("forecast") or {}
    if not forecast:
        return Group(header, table)
    expected = Table(title="forecast", show_lines=False, expand=False)
    for name in ("stage", "from", "tokens", "p90", "cost $", "p90 $"):
        expected.add_column(name, justify="left" if name in ("stage", "from") else "right")
    for f in forecast.get("stages") or []:
        expected.add_row(
            f["stage"],
            f["basis"],
            f"{f['tokens']:,}",
            f"{f['tokens_p90']:,}",
            f"{f['cost_usd']:.2f}",
            f"{f['cost_usd_p90']:.2f}",
        )
    bases = sorted({f["basis"].split(" (")[0] for f in forecast.get("stages") or []})
    footer = Text(
        f"forecast: {forecast['tokens']:,} tokens ({forecast['tokens_p90']:,} at p90), "
        f"${forecast['cost_usd']:.2f} (${forecast['cost_usd_p90']:.2f} at p90), "
        f"from {' and '.join(bases)}"
    )
    for warning in forecast.get("warnings") or []:
        footer.append(f"\nwarning: {warning}", style="bold yellow")
    return Group(header, table, expected, footer)


# --- lists and details ----------------------------------------------------------------------


def runs_table(rows: list[dict[str, Any]]) -> Table:
    """`rows`: dicts with id, status, goal, repo_path, profile_name, done, total, tokens,
    cost_usd, created_at."""
    table = Table(title="runs")
    for name, justify in (
        ("id", "right"),
        ("status", "left"),
        ("goal", "left"),
        ("repo", "left"),
        ("profile", "left"),
        ("stages", "right"),
        ("tokens", "right"),
        ("cost $", "right"),
        ("created", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(
            str(row["id"]),
            _status(row["status"]),
            cut(redact(row["goal"]), 40),
            cut(redact(row["repo_path"]), 30),
            row["profile_name"],
            f"{row['done']}/{row['total']}",
            str(row["tokens"]),
            f"{float(row['cost_usd']):.4f}",
            row["created_at"].strftime("%Y-%m-%d %H:%M"),
        )
    return table


def run_detail_data(run: Any, tests: dict[str, Any] | None = None) -> dict[str, Any]:
    """A run with its stages and artifacts, its branch and (`tests`, from
    runs.selectors.run_evidence_summary) its test evidence as JSON-ready data
    (`show --json`)."""
    root = Path(run.config.get("artifact_root") or ".")
    stages = []
    for s in run.stages.all():
        stages.append(
            {
                "stage": s.stage,
                "position": s.position,
                "status": s.status,
                "attempt": s.attempt,
                "confidence": s.confidence,
                "approval": s.approval,
                "votes": s.votes or [],
                "reason": s.reason,
                "note": s.note,
                **_input_split(s),
                "output_tokens": s.output_tokens,
                "cost_usd": float(s.cost_usd),
                "duration_s": s.duration_s,
            }
        )
    artifacts = [
        {
            "stage": a.stage,
            "kind": a.kind,
            "name": a.name,
            "path": str(root / a.path),
            "size": a.size,
            "sha256": a.sha256,
        }
        for a in run.artifacts.all()
    ]
    return redact(
        {
            "id": run.pk,
            "status": run.status,
            "reason": run.reason,
            "goal": run.goal,
            "repo_path": run.repo_path,
            "profile": run.profile_name,
            "stage_from": run.stage_from,
            "stage_to": run.stage_to,
            "output_dir": run.output_dir or None,
            **_input_split(run),
            "output_tokens": run.output_tokens,
            "cost_usd": float(run.cost_usd),
            "created_at": run.created_at.isoformat() if run.created_at else None,
            "started_at": run.started_at.isoformat() if run.started_at else None,
            "finished_at": run.finished_at.isoformat() if run.finished_at else None,
            "duration_s": run.duration_s,
            "branch": run.branch or None,
            "base_commit": run.base_commit or None,
            "head_commit": run.head_commit or None,
            "parent": run.parent_id,
            "forked_from_stage": run.forked_from_stage or None,
            "forks": list(run.forks.order_by("id").values_list("id", flat=True)),
            "tests": tests,
            "config": {
                k: run.config.get(k)
                for k in (
                    "rounds",
                    "quorum",
                    "threshold",
                    "consensus_free",
                    "llm_backend",
                    "models",
                    "budget_tokens",
                    "budget_cost_usd",
                )
            },
            "stages": stages,
            "artifacts": artifacts,
        }
    )


def _input_split(row: Any) -> dict[str, int]:
    """A run's or stage's input tokens and how the prompt caches split them."""
    return {
        "input_tokens": row.input_tokens,
        "cached_input_tokens": row.cached_input_tokens,
        "cache_write_tokens": row.cache_write_tokens,
        "uncached_input_tokens": row.uncached_input_tokens,
    }


def input_split_text(data: dict[str, Any]) -> str:
    """ "41,200 cached / 3,100 uncached (+ 5,300 cache writes)" from _input_split's keys."""
    text = (
        f"{int(data.get('cached_input_tokens') or 0):,} cached / "
        f"{int(data.get('uncached_input_tokens') or 0):,} uncached"
    )
    written = int(data.get("cache_write_tokens") or 0)
    return text + (f" (+ {written:,} cache writes)" if written else "")


def _votes_text(votes: list[dict[str, Any]]) -> str:
    parts = []
    for v in votes or []:
        mark = "yes" if v.get("approve") else "no"
        weight = v.get("self_confidence")
        parts.append(f"{v.get('role', '?')}: {mark} ({_num(weight)})")
    return "\n".join(parts) or "-"


def _lineage_line(data: dict[str, Any]) -> str:
    """`forked from run 12 at review` and `forks: 15, 16`, or nothing."""
    parts = []
    if data.get("forked_from_stage"):
        parent = data.get("parent")
        parent_text = f"run {parent}" if parent else "a deleted run"
        parts.append(f"forked from {parent_text} at {data['forked_from_stage']}")
    if data.get("forks"):
        parts.append("forks: " + ", ".join(str(i) for i in data["forks"]))
    return ("\n" + "   ".join(parts)) if parts else ""


def run_detail_renderable(data: dict[str, Any]) -> Group:
    """`show RUN_ID` for a person, from run_detail_data()."""
    duration = data.get("duration_s")
    header = Text.assemble(
        (f"run {data['id']} ", "bold"),
        _status(data["status"]),
        f"   profile {data['profile']}   stages {data['stage_from']} -> {data['stage_to']}\n",
        f"goal: {cut(data['goal'], 120)}\n",
        f"repository: {data['repo_path']}\n",
        f"tokens: {data['input_tokens']} in / {data['output_tokens']} out   ",
        f"cost: ${data['cost_usd']:.4f}   duration: {_num(duration, '{:.1f}s')}\n",
        f"input: {input_split_text(data)}",
        f"\nreason: {data['reason']}" if data.get("reason") else "",
        _lineage_line(data),
    )
    stages = Table(title="stages")
    for name in (
        "#",
        "stage",
        "status",
        "attempt",
        "confidence",
        "approval",
        "votes (weight)",
        "input cached / uncached",
        "reason",
    ):
        stages.add_column(name)
    for s in data["stages"]:
        stages.add_row(
            str(s["position"]),
            s["stage"],
            _status(s["status"]),
            str(s["attempt"]),
            _num(s["confidence"]),
            _num(s["approval"]),
            _votes_text(s["votes"]),
            input_split_text(s),
            cut(s["reason"] or "", 60),
        )
    artifacts = Table(title="artifacts")
    for name in ("stage", "name", "size", "path"):
        artifacts.add_column(name)
    for a in data["artifacts"]:
        artifacts.add_row(a["stage"] or "(run)", a["name"], str(a["size"]), a["path"])
    parts: list[Any] = [header, stages]
    if data["artifacts"]:
        parts.append(artifacts)
    change = _change_text(data)
    if change is not None:
        parts.append(change)
    return Group(*parts)


def _totals_text(side: dict[str, Any]) -> str:
    t = side.get("totals") or {}
    if side.get("timed_out"):
        return "timed out"
    return (
        f"{t.get('tests', 0)} tests, {t.get('passed', 0)} passed, {t.get('failed', 0)} failed, "
        f"{t.get('errors', 0)} errors, {t.get('skipped', 0)} skipped"
    )


def _change_text(data: dict[str, Any]) -> Text | None:
    """The branch, how to take it, and the test evidence, for `show`."""
    branch, base, tests = data.get("branch"), data.get("base_commit"), data.get("tests")
    if not branch and not tests:
        return None
    text = Text()
    if branch:
        text.append("change: ", style="bold")
        text.append(
            f"branch {branch} (base {str(base)[:12]}, head {str(data['head_commit'])[:12]})"
        )
        text.append(f"\n  git diff {base}..{branch}\n  git merge {branch}")
    if tests:
        text.append("\ntests: " if branch else "tests: ", style="bold")
        text.append(
            "ship" if tests["ship"] else "no ship", style="green" if tests["ship"] else "red"
        )
        if tests["reasons"]:
            text.append(f" ({'; '.join(tests['reasons'])})")
        text.append(f"\n  base:   {_totals_text(tests['base'])}")
        text.append(f"\n  branch: {_totals_text(tests['branch'])}")
        for label in ("newly_failing", "newly_passing"):
            names = tests[label]
            if names:
                shown = ", ".join(names[:10]) + (
                    f" and {len(names) - 10} more" if len(names) > 10 else ""
                )
                text.append(f"\n  {label.replace('_', ' ')}: {shown}")
        coverage = tests.get("changed_coverage")
        if coverage and coverage.get("measurable"):
            text.append(
                f"\n  changed lines covered: {coverage['covered']} of {coverage['measurable']} "
                f"({coverage['percent']}%)"
            )
    return text


# --- following a run ------------------------------------------------------------------------


@dataclass
class StageRow:
    stage: str
    status: str = "queued"
    attempt: int = 0
    messages: int = 0
    round: int | None = None
    confidence: float | None = None
    task: TaskID | None = None


@dataclass
class FollowView:
    """What a follower knows about a run, fed one RunEvent at a time.

    The same state drives the live Progress display (a terminal) and the plain one line
    per event output (anything else), so both modes show the same run.
    """

    run_id: int
    stages: list[str]
    rounds: int = 2
    consensus_free: list[str] = field(default_factory=list)
    rows: dict[str, StageRow] = field(default_factory=dict)
    final_kind: str | None = None
    blocked_stage: str | None = None
    progress: Progress | None = None

    def __post_init__(self) -> None:
        for stage in self.stages:
            self.rows.setdefault(stage, StageRow(stage=stage))

    @classmethod
    def for_run(cls, run: Any) -> FollowView:
        config = run.config or {}
        view = cls(
            run_id=run.pk,
            stages=list(config.get("stages") or [s.stage for s in run.stages.all()]),
            rounds=int(config.get("rounds", 2)),
            consensus_free=list(config.get("consensus_free") or []),
        )
        for s in run.stages.all():
            row = view.rows.setdefault(s.stage, StageRow(stage=s.stage))
            row.status, row.attempt, row.confidence = s.status, s.attempt, s.confidence
        return view

    def expected_messages(self, stage: str) -> int:
        if stage in self.consensus_free:
            return 1
        return len(DEBATER_ROLES) * (self.rounds + 1) + 1

    # -- the live display --

    def progress_start(self, console: Console) -> Progress:
        # Only a follower on a terminal needs it; `runs` and `show` do not import it.
        from rich.progress import BarColumn, Progress, TextColumn

        self.progress = Progress(
            TextColumn("{task.fields[position]:>2} {task.description:<12}"),
            BarColumn(bar_width=24),
            TextColumn("{task.fields[status]}"),
            TextColumn("attempt {task.fields[attempt]}"),
            TextColumn("{task.fields[msgs]}"),
            TextColumn("{task.fields[conf]}"),
            console=console,
            transient=False,
            refresh_per_second=8,
        )
        for i, stage in enumerate(self.stages, start=1):
            row = self.rows[stage]
            row.task = self.progress.add_task(
                stage,
                total=self.expected_messages(stage),
                position=STAGE_NAMES.index(stage) + 1 if stage in STAGE_NAMES else i,
                **self._fields(row),
            )
            self._refresh(row)
        return self.progress

    def _fields(self, row: StageRow) -> dict[str, Any]:
        style = STATUS_STYLE.get(row.status, "")
        rnd = f"round {row.round}, " if row.round is not None and row.status == "running" else ""
        return {
            "status": f"[{style}]{row.status:<9}[/]" if style else f"{row.status:<9}",
            "attempt": row.attempt,
            "msgs": f"{rnd}{row.messages} msg",
            "conf": f"conf {row.confidence:.2f}" if row.confidence is not None else "",
        }

    def _refresh(self, row: StageRow) -> None:
        if self.progress is None or row.task is None:
            return
        total = self.expected_messages(row.stage)
        done = row.status in ("succeeded", "skipped", "blocked", "failed", "cancelled")
        self.progress.update(
            row.task,
            completed=total if done else min(row.messages, total),
            **self._fields(row),
        )

    # -- events --

    def apply(self, event: Any) -> str:
        """Update the state from one RunEvent and return its plain one-line form."""
        kind, stage, payload = event.kind, event.stage, event.payload or {}
        row = self.rows.get(stage) if stage else None
        if stage and row is None:
            row = self.rows[stage] = StageRow(stage=stage)
        if kind == "stage.started" and row:
            row.status, row.attempt, row.messages = "running", int(payload.get("attempt") or 1), 0
        elif kind == "stage.progress" and row:
            row.messages += 1
            row.round = payload.get("round")
            if row.status == "queued":
                row.status = "running"
        elif kind == "stage.finished" and row:
            row.status = payload.get("status") or "succeeded"
            row.confidence = payload.get("confidence")
        elif kind == "stage.blocked" and row:
            row.status = "blocked"
            self.blocked_stage = stage
        elif kind == "stage.approved" and row:
            row.status = payload.get("status") or "succeeded"
        elif kind == "stage.retried" and row:
            row.status, row.messages = "queued", 0
        elif kind == "run.resumed":
            for r in self.rows.values():
                if r.status not in ("succeeded", "skipped"):
                    r.status, r.messages = "queued", 0
        elif kind in FINAL_KINDS:
            self.final_kind = kind
            if kind == "run.cancelled":
                for r in self.rows.values():
                    if r.status in ("queued", "running"):
                        r.status = "cancelled"
        if row:
            self._refresh(row)
        return self.line(event)

    def line(self, event: Any) -> str:
        kind, stage, p = event.kind, event.stage, event.payload or {}
        prefix = f"run {self.run_id} #{event.seq} {kind}" + (f" {stage}" if stage else "")
        if kind == "stage.started":
            return f"{prefix} attempt {p.get('attempt', '?')}"
        if kind == "stage.progress":
            return (
                f"{prefix} round {p.get('round', '?')} {p.get('role', '?')} ({p.get('model', '?')})"
            )
        if kind == "stage.finished":
            return (
                f"{prefix} {p.get('status', '?')} confidence {_num(p.get('confidence'))} "
                f"approval {_num(p.get('approval'))}"
            )
        if kind == "stage.blocked":
            return f"{prefix}: {cut(p.get('reason', ''), 200)}"
        if kind == "artifact.created":
            return f"{prefix} {p.get('name', '?')} ({p.get('size', '?')} bytes)"
        if kind == "run.forked":
            reused = ", ".join(p.get("reused") or []) or "nothing"
            return f"{prefix} from run {p.get('parent', '?')}, reusing {reused}"
        if kind == "run.warning":
            return f"{prefix}: {cut(p.get('message', ''), 200)}"
        if kind == "stage.context":
            return (
                f"{prefix}: {len(p.get('chunks') or [])} chunks, "
                f"{len(p.get('lessons') or [])} lessons retrieved"
            )
        if kind == "run.budget":
            tokens, cost = int(p.get("tokens") or 0), float(p.get("cost_usd") or 0)
            return (
                f"{prefix} {f'{tokens:,} tokens' if tokens else 'no token limit'}, "
                f"{f'${cost:,.2f}' if cost else 'no cost limit'}"
            )
        if kind in FINAL_KINDS:
            reason = p.get("reason") or ""
            return f"{prefix} {p.get('status', '')}" + (f": {cut(reason, 200)}" if reason else "")
        if p.get("note"):
            return f"{prefix} note: {cut(p['note'], 120)}"
        return prefix


def unblock_hint(
    run_id: int, stage: str | None, manage: str = "manage.py", *, budget: bool = False
) -> str:
    """The commands that move a blocked run on (`budget`: it is blocked by its budget)."""
    s = stage or "STAGE"
    if budget:
        return (
            f"run {run_id} is blocked at stage {s} by its budget. Raise it, then retry:\n"
            f"  {manage} tekton budget {run_id} --tokens N --cost USD\n"
            f'  {manage} tekton retry {run_id} {s} --note "budget raised"\n'
            f"or give up: {manage} tekton abort {run_id}"
        )
    return (
        f"run {run_id} is blocked at stage {s}. To go on, run one of:\n"
        f"  {manage} tekton approve {run_id} {s}\n"
        f'  {manage} tekton retry {run_id} {s} --note "what to change"\n'
        f"  {manage} tekton abort {run_id}"
    )


def budget_line(run: Any) -> str:
    """'run 7 budget: 1,000,000 tokens and $5.00 (spent 412,000 tokens, $3.2100)'."""
    config = run.config or {}
    tokens = int(config.get("budget_tokens") or 0)
    cost = float(config.get("budget_cost_usd") or 0)
    limits = " and ".join(
        [
            f"{tokens:,} tokens" if tokens else "no token limit",
            f"${cost:,.2f}" if cost else "no cost limit",
        ]
    )
    return (
        f"run {run.pk} budget: {limits} "
        f"(spent {run.total_tokens:,} tokens, ${float(run.cost_usd):,.4f})"
    )
