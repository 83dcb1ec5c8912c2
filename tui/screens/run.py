"""The run screen: one progress column per stage (status, attempt, confidence, quorum),
the selected stage's transcript round by round with roles labelled and the votes, the test
evidence and branch once they exist, the parent and forks, and the actions (approve, retry
with a note, abort, cancel, resume, fork), each behind a confirmation; the selected stage's
artifact compared with a set-aside attempt, the parent or a fork.

API: GET /api/runs/<id>/ and GET /api/runs/<id>/transcript/ to start, then
GET /api/runs/<id>/events?deltas=1 (SSE, resumed with Last-Event-ID) to follow; the run
detail again after each stage or run event (tokens, cost, votes); GET .../artifacts/
test_report.json once it exists; POST .../stages/<stage>/approve|retry|abort/ and
.../cancel/ | .../resume/ | .../fork/ for the actions (tui.screens.fork).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from rich.console import Group
from rich.rule import Rule
from rich.text import Text
from textual import work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.timer import Timer
from textual.widgets import Footer, Static

from tui.format import STATUS_STYLES, cost, duration, ratio, status_text, tokens
from tui.screens.base import TektonScreen
from tui.state import Card, RunState, StageView
from tui.stream import Event, RunStream, Status

# Events after which the run detail is read again (tokens, cost, votes, reasons).
REFRESH_KINDS = (
    "stage.started",
    "stage.finished",
    "stage.blocked",
    "stage.approved",
    "stage.retried",
    "artifact.created",
    "run.started",
    "run.finished",
    "run.failed",
    "run.cancelled",
    "run.resumed",
)
ROLE_STYLES = {
    "proponent": "bold cyan",
    "skeptic": "bold red",
    "pragmatist": "bold green",
    "mediator": "bold magenta",
}
EVIDENCE_FILE = "test_report.json"


class StageColumn(Static):
    """One stage's progress: name, status, attempt, confidence and quorum."""

    def show(self, view: StageView, *, quorum: float | None, threshold: float | None) -> None:
        text = Text()
        text.append(view.stage + "\n", style="bold")
        text.append(view.status + "\n", style=STATUS_STYLES.get(view.status, ""))
        text.append(
            f"attempt {view.attempt}\n" if view.attempt else "not started\n", style="grey62"
        )
        text.append("conf ")
        text.append(ratio(view.confidence))
        if view.confidence is not None and threshold is not None:
            ok = view.confidence >= threshold
            text.append(" ✓" if ok else " ✗", style="green" if ok else "red")
        text.append("\nquor ")
        text.append(ratio(view.approval))
        if view.approval is not None and quorum is not None:
            ok = view.approval >= quorum - 1e-9
            text.append(" ✓" if ok else " ✗", style="green" if ok else "red")
        self.update(text)
        for status in STATUS_STYLES:
            self.set_class(view.status == status, f"st-{status}")


_STAGE = Binding.Group("Stage")


class RunScreen(TektonScreen):
    BINDINGS = [
        # One footer entry for both: the run screen has more keys than 120 columns hold.
        Binding("left,h", "stage(-1)", "Prev stage", key_display="←", priority=True, group=_STAGE),
        Binding("right,l", "stage(1)", "Next stage", key_display="→", priority=True, group=_STAGE),
        Binding("a", "approve", "Approve"),
        Binding("r", "retry", "Retry"),
        Binding("x", "abort", "Abort"),
        Binding("c", "cancel", "Cancel"),
        Binding("u", "resume", "Resume"),
        Binding("v", "artifacts", "Artifacts"),
        Binding("d", "diff", "Diff"),
        Binding("f", "fork", "Fork"),
        Binding("m", "compare", "Compare"),
        Binding("escape,backspace", "back", "Back"),
    ]

    def __init__(self, run_id: int, *, stage: str | None = None):
        super().__init__()
        self.run_id = run_id
        self.state: RunState | None = None
        self.selected: str | None = stage
        self.stream: RunStream | None = None
        self.stream_state = "connecting"
        self.evidence: dict[str, Any] | None = None
        self._refresh_timer: Timer | None = None
        # Until the person picks a stage, the screen follows the stage that started last.
        self.chosen = stage is not None

    def compose(self) -> ComposeResult:
        with Horizontal(id="topbar"):
            yield Static(id="title")
            yield Static(id="live")
        yield Static(id="run-header")
        yield Horizontal(id="columns")
        with Horizontal(id="body"):
            with VerticalScroll(id="transcript"):
                yield Static(id="transcript-body")
            with Vertical(id="side"):
                yield Static(id="votes")
                yield Static(id="evidence")
        yield Static(id="status")
        yield Footer(compact=True)  # every key fits in 120 columns

    def on_mount(self) -> None:
        title = Text()
        title.append("Tekton", style="bold")
        title.append(f"  run {self.run_id}  ", style="reverse")
        title.append(f"  {self.app.where}", style="grey62")
        self.query_one("#title", Static).update(title)
        self.live_update("connecting")
        self.set_status("loading the run…")
        self.load()

    def live_update(self, state: str, text: str = "") -> None:
        if not self.alive:
            return
        self.stream_state = state
        styles = {"live": "green", "reconnecting": "yellow", "ended": "grey62", "error": "red"}
        line = Text("● ", style=styles.get(state, "grey62"))
        line.append(state)
        if self.state is not None and self.state.run.get("last_event_seq"):
            line.append(f" · event {self.state.run['last_event_seq']}", style="grey62")
        self.query_one("#live", Static).update(line)

    # --- loading and following --------------------------------------------------------------
    @work(exclusive=True, group="run-load", exit_on_error=False)
    async def load(self) -> None:
        client = self.app.client
        detail = await self.app.call(client.run(self.run_id))
        if detail is None:
            self.live_update("error")
            return
        self.state = RunState(detail)
        if self.selected not in self.state.stages:
            self.selected = self._default_stage()
        transcript = await self.app.call(client.transcript(self.run_id), quiet=True)
        if transcript is not None:
            self.state.transcript_update(transcript)
        self.render_all()
        self.set_status(self._hint())
        self.follow()

    def _default_stage(self) -> str | None:
        assert self.state is not None
        for status in ("blocked", "running", "failed"):
            for view in self.state.stages.values():
                if view.status == status:
                    return view.stage
        names = [v.stage for v in self.state.stages.values() if v.status != "queued"]
        return names[-1] if names else next(iter(self.state.stages), None)

    @work(exclusive=True, group="run-stream", exit_on_error=False)
    async def follow(self) -> None:
        assert self.state is not None
        kwargs = {}
        if self.app.stall_seconds is not None:
            kwargs["stall_seconds"] = self.app.stall_seconds
        self.stream = RunStream(
            self.app.client,
            self.run_id,
            after=int(self.state.run.get("last_event_seq") or 0),
            **kwargs,
        )
        async for item in self.stream:
            if isinstance(item, Status):
                self.stream_status(item)
            else:
                self.event_apply(item)

    def stream_status(self, item: Status) -> None:
        if not self.alive:
            return
        self.live_update(item.state, item.text)
        if item.state == "reconnecting":
            self.set_status(item.text, error=True)
            self.notify(item.text, severity="warning", timeout=6)
        elif item.state == "live" and item.text != "live":
            self.set_status(item.text)
            self.notify(item.text, timeout=6)
        elif item.state == "error":
            self.app.show_error(item.text)
        elif item.state == "ended":
            self.schedule_refresh()

    def event_apply(self, event: Event) -> None:
        """Apply one stream event and redraw what it changed (the unit tests feed events
        here directly)."""
        if not self.alive:
            return
        if self.state is None:
            return
        changed = self.state.apply(event)
        if not changed:
            return
        if event.kind == "stage.started" and not self.chosen and event.stage in self.state.stages:
            if self.selected != event.stage:
                self.selected = event.stage
                changed.add(f"transcript:{event.stage}")
        if "stages" in changed or "run" in changed:
            self.render_columns()
            self.render_header()
            self.render_side()
        if f"transcript:{self.selected}" in changed:
            self.render_transcript()
        if "artifacts" in changed:
            self.render_side()
            if any(a.get("name") == EVIDENCE_FILE for a in self.state.artifacts):
                self.evidence_load()
        self.live_update(self.stream_state)
        if event.kind in REFRESH_KINDS:
            self.schedule_refresh()

    def schedule_refresh(self) -> None:
        if self._refresh_timer is None:
            self._refresh_timer = self.set_timer(0.3, self._refresh_due)

    def _refresh_due(self) -> None:
        self._refresh_timer = None
        self.refresh_detail()

    @work(exclusive=True, group="run-detail", exit_on_error=False)
    async def refresh_detail(self) -> None:
        detail = await self.app.call(self.app.client.run(self.run_id), quiet=True)
        if detail is None or self.state is None or not self.alive:
            return
        self.state.detail_update(detail)
        self.render_all()

    @work(exclusive=True, group="run-evidence", exit_on_error=False)
    async def evidence_load(self) -> None:
        if self.evidence is not None:
            return
        text = await self.app.call(
            self.app.client.artifact_text(self.run_id, EVIDENCE_FILE), quiet=True
        )
        if text is None:
            return
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            return
        self.evidence = data if isinstance(data, dict) else None
        self.render_side()

    # --- drawing ----------------------------------------------------------------------------
    def render_all(self) -> None:
        if not self.alive:
            return
        self.render_header()
        self.render_columns()
        self.render_transcript()
        self.render_side()
        self.live_update(self.stream_state)
        if self.state and any(a.get("name") == EVIDENCE_FILE for a in self.state.artifacts):
            self.evidence_load()

    def render_header(self) -> None:
        if not self.alive:
            return
        if self.state is None:
            return
        run = self.state.run
        text = Text()
        text.append_text(status_text(self.state.status))
        text.append("  ")
        text.append(" ".join(str(run.get("goal") or "").split())[:200], style="bold")
        text.append("\n")
        text.append("repo ", style="grey62")
        text.append(str(run.get("repo") or ""))
        text.append("  profile ", style="grey62")
        text.append(str(run.get("profile") or ""))
        text.append("  duration ", style="grey62")
        text.append(duration(run.get("duration_s")))
        text.append("  tokens ", style="grey62")
        text.append(tokens(run.get("total_tokens")))
        text.append("  cost ", style="grey62")
        text.append(cost(run.get("cost_usd")))
        if run.get("branch"):
            text.append("  branch ", style="grey62")
            text.append(str(run["branch"]), style="bold")
        lineage = self._lineage()
        if lineage.plain:
            text.append("\n")
            text.append_text(lineage)
        if run.get("reason") and self.state.status in ("blocked", "failed", "cancelled"):
            text.append("\n")
            text.append(" ".join(str(run["reason"]).split())[:240], style="italic")
        self.query_one("#run-header", Static).update(text)

    def _lineage(self) -> Text:
        """The run's parent and forks (the ids the detail gives; only runs one may see)."""
        assert self.state is not None
        run = self.state.run
        text = Text()
        if run.get("parent"):
            text.append("forked from ", style="grey62")
            text.append(f"run {run['parent']}", style="bold")
            text.append(f" at {run.get('forked_from_stage') or '?'}", style="grey62")
        elif run.get("forked_from_stage"):
            text.append(f"forked at {run['forked_from_stage']} (parent deleted)", style="grey62")
        forks = [int(f) for f in run.get("forks") or []]
        if forks:
            text.append("  " if text.plain else "")
            text.append("forks ", style="grey62")
            text.append(", ".join(f"run {f}" for f in forks), style="bold")
        if text.plain:
            text.append("  (ctrl+p opens them)", style="grey50")
        return text

    def render_columns(self) -> None:
        if not self.alive:
            return
        if self.state is None:
            return
        box = self.query_one("#columns", Horizontal)
        views = list(self.state.stages.values())
        columns = list(box.query(StageColumn))
        if [c.name for c in columns] != [v.stage for v in views]:
            box.remove_children()
            columns = [StageColumn(name=v.stage, id=f"col-{v.stage}") for v in views]
            box.mount_all(columns)
        for column, view in zip(columns, views, strict=True):
            column.show(view, quorum=self.state.quorum, threshold=self.state.threshold)
            column.set_class(view.stage == self.selected, "selected")

    def render_transcript(self) -> None:
        if not self.alive:
            return
        if self.state is None or self.selected is None:
            return
        scroller = self.query_one("#transcript", VerticalScroll)
        at_bottom = scroller.scroll_y >= scroller.max_scroll_y - 1
        cards = self.state.cards.get(self.selected, [])
        view = self.state.stages.get(self.selected)
        parts: list[Any] = []
        heading = Text()
        heading.append(f"{self.selected}", style="bold")
        if view is not None:
            heading.append("  ")
            heading.append_text(status_text(view.status))
            if view.attempt:
                heading.append(f"  attempt {view.attempt}", style="grey62")
        parts.append(heading)
        if view is not None and view.note:
            parts.append(Text(f"note for this attempt: {view.note}", style="italic"))
        if not cards:
            parts.append(Text("no messages yet", style="grey50"))
        attempts = {c.attempt for c in cards}
        last_label = None
        for card in cards:
            label = card.label if len(attempts) < 2 else f"attempt {card.attempt} · {card.label}"
            if label != last_label:
                parts.append(Rule(Text(label, style="bold"), style="grey30"))
                last_label = label
            parts.append(self._card(card))
        self.query_one("#transcript-body", Static).update(Group(*parts))
        if at_bottom and not self.state.is_finished:
            scroller.scroll_end(animate=False)

    def _card(self, card: Card) -> Text:
        text = Text()
        text.append(card.role or "?", style=ROLE_STYLES.get(card.role, "bold"))
        if card.model:
            text.append(f"  {card.model}", style="grey62")
        if card.confidence is not None:
            text.append(f"  confidence {card.confidence:.2f}", style="grey62")
        if card.vote is not None:
            approve = bool(card.vote.get("approve"))
            text.append("  vote ", style="grey62")
            text.append("approve" if approve else "reject", style="green" if approve else "red")
        if card.is_live:
            text.append("  streaming…", style="yellow")
        text.append("\n")
        text.append(card.text or "…")
        if card.is_live:
            text.append("▌", style="yellow")
        if card.vote is not None and card.vote.get("reason"):
            text.append("\n")
            text.append(f"  ↳ {card.vote['reason']}", style="grey62")
        text.append("\n")
        return text

    def render_side(self) -> None:
        if not self.alive:
            return
        if self.state is None:
            return
        view = self.state.stages.get(self.selected or "")
        votes = Text()
        votes.append("Votes\n", style="bold underline")
        if view is None or not view.votes:
            votes.append("none recorded yet\n", style="grey50")
        else:
            for vote in view.votes:
                approve = bool(vote.get("approve"))
                votes.append("✓ " if approve else "✗ ", style="green" if approve else "red")
                votes.append(
                    f"{vote.get('role', '?'):<11}", style=ROLE_STYLES.get(vote.get("role"), "")
                )
                weight = vote.get("self_confidence")
                votes.append(f" w {weight:.2f}" if isinstance(weight, int | float) else "")
                votes.append("\n")
                if vote.get("reason"):
                    votes.append(
                        f"  {' '.join(str(vote['reason']).split())[:120]}\n", style="grey62"
                    )
        if view is not None:
            votes.append("approval ")
            votes.append(ratio(view.approval))
            votes.append(f" (quorum {ratio(self.state.quorum)})\n", style="grey62")
            votes.append("confidence ")
            votes.append(ratio(view.confidence))
            votes.append(f" (threshold {ratio(self.state.threshold)})\n", style="grey62")
            if view.status == "blocked":
                votes.append("\nBlocked: ", style="bold magenta")
                votes.append(" ".join(view.reason.split())[:300] or "waits for a person")
                votes.append("\na approve · r retry with a note · x abort\n", style="bold")
            elif view.status == "failed" and view.reason:
                votes.append("\nFailed: ", style="bold red")
                votes.append(" ".join(view.reason.split())[:300])
                votes.append("\nr retry with a note\n", style="bold")
        self.query_one("#votes", Static).update(votes)

        evidence = Text()
        names = [str(a.get("name")) for a in self.state.artifacts]
        evidence.append("Artifacts\n", style="bold underline")
        evidence.append((", ".join(names) if names else "none yet") + "\n")
        if names:
            evidence.append("v to read them, d for the diff\n", style="grey62")
        if self.evidence is not None:
            evidence.append("\nTest evidence\n", style="bold underline")
            ship = self.evidence.get("ship")
            evidence.append("ship ")
            evidence.append("yes" if ship else "no", style="bold green" if ship else "bold red")
            evidence.append("\n")
            for key in ("evidence", "totals", "coverage"):
                value = self.evidence.get(key)
                if isinstance(value, dict) and value:
                    for k, v in list(value.items())[:8]:
                        if not isinstance(v, dict | list):
                            evidence.append(f"{k}: {v}\n", style="grey62")
            flakes = self.evidence.get("flakes") or []
            if flakes:
                evidence.append(f"flaky: {', '.join(map(str, flakes))[:200]}\n", style="yellow")
        if self.state.run.get("branch"):
            evidence.append("\nBranch ", style="bold")
            evidence.append(str(self.state.run["branch"]) + "\n")
        self.query_one("#evidence", Static).update(evidence)

    def _hint(self) -> str:
        if self.state is None:
            return ""
        blocked = self.state.blocked_stage
        if blocked:
            return f"stage {blocked} is blocked: a approve · r retry with a note · x abort"
        return "← → choose a stage · v artifacts · f fork · m compare · ? help"

    # --- actions ----------------------------------------------------------------------------
    def action_stage(self, step: int) -> None:
        if self.state is None or not self.state.stages:
            return
        self.chosen = True
        names = list(self.state.stages)
        index = names.index(self.selected) if self.selected in names else 0
        self.selected = names[(index + step) % len(names)]
        self.query_one("#transcript", VerticalScroll).scroll_home(animate=False)
        self.render_columns()
        self.render_transcript()
        self.render_side()

    def select_stage(self, name: str) -> None:
        if self.state is not None and name in self.state.stages:
            self.chosen = True
            self.selected = name
            self.render_all()

    def action_back(self) -> None:
        self.app.pop_screen()

    def _stage_for(self, statuses: tuple[str, ...]) -> str | None:
        if self.state is None:
            return None
        view = self.state.stages.get(self.selected or "")
        if view is not None and view.status in statuses:
            return view.stage
        for view in self.state.stages.values():
            if view.status in statuses:
                return view.stage
        return None

    def action_approve(self) -> None:
        stage = self._stage_for(("blocked",))
        if stage is None:
            self.set_status("no blocked stage to approve", error=True)
            return
        self._confirm(
            "approve",
            f"Approve stage {stage} of run {self.run_id} anyway? The run goes on.",
            lambda: self.app.client.approve(self.run_id, stage),
            done=f"stage {stage} approved",
        )

    def action_retry(self) -> None:
        stage = self._stage_for(("blocked", "failed"))
        if stage is None:
            self.set_status("no blocked or failed stage to retry", error=True)
            return
        self._confirm(
            "retry",
            f"Retry stage {stage} of run {self.run_id} with this note for its prompts:",
            lambda note: self.app.client.retry(self.run_id, stage, note),
            done=f"stage {stage} queued again with your note",
            with_note=True,
        )

    def action_abort(self) -> None:
        stage = self._stage_for(("blocked",))
        if stage is None:
            self.set_status("no blocked stage to abort at", error=True)
            return
        self._confirm(
            "abort",
            f"Abort run {self.run_id} at its blocked stage {stage}? The run is cancelled.",
            lambda: self.app.client.abort(self.run_id, stage),
            done=f"run {self.run_id} aborted at {stage}",
        )

    def action_cancel(self) -> None:
        if self.state is None or self.state.is_finished:
            self.set_status("the run is already finished", error=True)
            return
        self._confirm(
            "cancel",
            f"Cancel run {self.run_id}? Stages still running stop.",
            lambda: self.app.client.cancel(self.run_id),
            done=f"run {self.run_id} cancelled",
        )

    def action_resume(self) -> None:
        if self.state is None or self.state.status not in ("failed", "cancelled", "blocked"):
            self.set_status("only a failed, cancelled or blocked run can be resumed", error=True)
            return
        self._confirm(
            "resume",
            f"Resume run {self.run_id} from its first unfinished stage?",
            lambda: self.app.client.resume(self.run_id),
            done=f"run {self.run_id} resumed",
        )

    def _confirm(self, verb: str, question: str, call, *, done: str, with_note: bool = False):
        from tui.screens.dialogs import ConfirmScreen

        def answered(answer: str | bool | None) -> None:
            if answer is None or answer is False:
                self.set_status(f"{verb}: not done")
                return
            self.act(call, answer if with_note else None, done)

        self.app.push_screen(ConfirmScreen(verb, question, with_note=with_note), answered)

    @work(group="run-action", exit_on_error=False)
    async def act(self, call, note: str | None, done: str) -> None:
        detail = await self.app.call(call(note) if note is not None else call())
        if detail is None or self.state is None:
            return
        self.state.detail_update(detail)
        self.render_all()
        self.set_status(done)
        self.notify(done, timeout=4)
        # A resumed run's stream had ended: follow it again from where it stopped.
        if self.stream_state in ("ended", "error") and not self.state.is_finished:
            self.follow()

    def action_artifacts(self, name: str | None = None) -> None:
        from tui.screens.artifacts import ArtifactsScreen

        if self.state is None:
            return
        if not self.state.artifacts:
            self.set_status("this run has no artifacts yet", error=True)
            return
        stage_file = next(
            (a["name"] for a in self.state.artifacts if a.get("stage") == self.selected), None
        )
        self.app.push_screen(ArtifactsScreen(self.run_id, initial=name or stage_file))

    def action_diff(self) -> None:
        if self.state is None or not any(
            a.get("name") == "diff.patch" for a in self.state.artifacts
        ):
            self.set_status("no diff yet: the code stage writes diff.patch", error=True)
            return
        self.action_artifacts("diff.patch")

    def action_fork(self) -> None:
        from tui.screens.fork import ForkScreen

        if self.state is None or not self.state.stages:
            self.set_status("the run has not loaded yet", error=True)
            return
        stages = {name: view.status for name, view in self.state.stages.items()}

        def forked(detail: dict[str, Any] | None) -> None:
            if not detail:
                self.set_status("fork: not done")
                return
            fork_id = int(detail["id"])
            self.app.launched.append(fork_id)
            done = (
                f"run {fork_id} forked from run {self.run_id} at {detail.get('forked_from_stage')}"
            )
            self.notify(done, timeout=4)
            if self.state is not None:  # back on this screen, the fork is listed
                forks = [int(f) for f in self.state.run.get("forks") or []]
                self.state.run["forks"] = sorted({*forks, fork_id})
                self.render_header()
            self.app.open_run(fork_id)

        self.app.push_screen(ForkScreen(self.run_id, stages, stage=self.selected), forked)

    def action_compare(self) -> None:
        from tui.screens.fork import CompareScreen

        if self.state is None or self.selected is None:
            return
        self.app.push_screen(CompareScreen(self.run_id, self.selected))

    def palette_commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand("Approve the blocked stage", "Accept it anyway", self.action_approve)
        yield SystemCommand("Retry a stage with a note", "Blocked or failed", self.action_retry)
        yield SystemCommand("Abort at the blocked stage", "Cancel the run", self.action_abort)
        yield SystemCommand("Cancel the run", "Stop it", self.action_cancel)
        yield SystemCommand("Resume the run", "From its first unfinished stage", self.action_resume)
        yield SystemCommand("Artifacts", "Read this run's artifacts", self.action_artifacts)
        yield SystemCommand("Diff", "The code stage's diff", self.action_diff)
        yield SystemCommand(
            "Fork the run", "From a stage, with a profile or model", self.action_fork
        )
        yield SystemCommand(
            "Compare the stage's artifact",
            "With a set-aside attempt, the parent or a fork",
            self.action_compare,
        )
        if self.state is not None:
            if self.state.run.get("parent"):
                parent = int(self.state.run["parent"])
                yield SystemCommand(
                    f"Parent run {parent}",
                    "Open the run this one was forked from",
                    lambda: self.app.open_run(parent),
                )
            for fork in self.state.run.get("forks") or []:
                yield SystemCommand(
                    f"Fork run {fork}",
                    "Open a run forked from this one",
                    lambda f=int(fork): self.app.open_run(f),
                )
        if self.state is not None:
            for name in self.state.stages:
                yield SystemCommand(
                    f"Stage {name}", "Show its transcript", lambda n=name: self.select_stage(n)
                )
