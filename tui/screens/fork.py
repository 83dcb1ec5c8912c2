"""Forking a run, and comparing a stage's artifact across attempts, parent and forks.

ForkScreen: a modal with the stage to fork from (each stage up to the run's first
unfinished one, as the server allows), a profile and a model; it says what the fork will
do, and its Fork button (ctrl+y) is the confirmation. A refused value stays in the dialog
as one line; a fork answers with the new run, which the caller opens.

CompareScreen: what a stage's artifact can be compared with (a set-aside attempt, the
parent, a fork), and the diff against the one picked, coloured like a change's diff; for
code, the two patches compared per file first, then the rest of the artifact.

API: GET /api/config/profiles/, POST /api/runs/<id>/fork/; GET
/api/runs/<id>/stages/<stage>/attempts/ and .../compare/?with=<key>.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.syntax import Syntax
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Select, Static

from tui.client import ApiError
from tui.screens.artifacts import THEME

DONE = ("succeeded", "skipped")


def fork_starts(stages: dict[str, str]) -> list[str]:
    """The stages a run can be forked from, in run order: each stage up to its first
    unfinished one (the stages before a fork's start are reused, so must be done)."""
    starts = []
    for name, status in stages.items():
        starts.append(name)
        if status not in DONE:
            break
    return starts


class ForkScreen(ModalScreen[dict[str, Any] | None]):
    """Answers the fork's run detail once the server created it, or None (cancelled)."""

    BINDINGS = [
        Binding("escape", "decline", "Cancel"),
        Binding("ctrl+y", "confirm", "Fork"),
    ]

    def __init__(self, run_id: int, stages: dict[str, str], *, stage: str | None = None):
        super().__init__()
        self.run_id = run_id
        self.starts = fork_starts(stages)
        self.initial = stage if stage in self.starts else (self.starts or [None])[-1]
        self.busy = False

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(Text(f"Fork run {self.run_id}", style="bold"))
            yield Label("From stage")
            yield Select(
                [(s, s) for s in self.starts], value=self.initial, allow_blank=False, id="from"
            )
            yield Label("Profile")
            yield Select([], prompt="the parent's profile", id="profile")
            yield Label("Model for every role (optional)")
            yield Input(placeholder="vendor/model (blank: the profile's)", id="model")
            yield Static(id="fork-summary")
            yield Static(id="dialog-error")
            with Horizontal(id="buttons"):
                yield Button("Fork", variant="warning", id="yes")
                yield Button("Cancel", id="no")
            yield Static(
                Text("ctrl+y or enter forks · escape cancels", style="grey62"), id="dialog-hint"
            )

    def on_mount(self) -> None:
        self.summary_show()
        self.query_one("#from", Select).focus()
        self.load_profiles()

    @work(exclusive=True, group="fork-profiles", exit_on_error=False)
    async def load_profiles(self) -> None:
        profiles = await self.app.call(self.app.client.profiles(), quiet=True)
        if not profiles or not self.is_attached:
            return
        names = [str(p.get("name")) for p in profiles]
        self.query_one("#profile", Select).set_options([(n, n) for n in names])

    def choice(self) -> tuple[str | None, str | None, str | None]:
        stage = self.query_one("#from", Select).value
        profile = self.query_one("#profile", Select).value
        model = self.query_one("#model", Input).value.strip()
        return (
            None if stage is Select.NULL else str(stage),
            None if profile is Select.NULL else str(profile),
            model or None,
        )

    @on(Select.Changed)
    @on(Input.Changed)
    def summary_show(self) -> None:
        stage, profile, model = self.choice()
        text = Text()
        if stage is None:
            text.append("this run has no stage to fork from", style="red")
        else:
            before = self.starts[: self.starts.index(stage)]
            text.append("A new run on the same base commit: ")
            text.append(f"reuses {', '.join(before)}" if before else "reuses nothing")
            text.append(f", runs from {stage} with ")
            what = [f"profile {profile}" if profile else "the parent's profile"]
            if model:
                what.append(f"model {model}")
            text.append(" and ".join(what))
            text.append(".")
        self.query_one("#fork-summary", Static).update(text)

    @on(Button.Pressed, "#yes")
    @on(Input.Submitted, "#model")
    def yes(self) -> None:
        self.action_confirm()

    @on(Button.Pressed, "#no")
    def no(self) -> None:
        self.action_decline()

    def action_confirm(self) -> None:
        stage, profile, model = self.choice()
        if stage is None or self.busy:
            return
        self.busy = True
        self.submit(stage, profile, model)

    @work(exclusive=True, group="fork-submit", exit_on_error=False)
    async def submit(self, stage: str, profile: str | None, model: str | None) -> None:
        error = self.query_one("#dialog-error", Static)
        error.update(Text("forking…", style="grey62"))
        try:
            detail = await self.app.client.fork(self.run_id, stage, profile=profile, model=model)
        except ApiError as exc:
            # The dialog stays: the person fixes the value the server named.
            self.busy = False
            if self.is_attached:
                error.update(Text(str(exc), style="red"))
            return
        self.dismiss(detail)

    def action_decline(self) -> None:
        self.dismiss(None)


def compare_view(comparison: dict[str, Any], heading: str) -> Group:
    """A comparison as the API answers it: the patches per file when the stage has one
    (each line keeps its own patch's +/-/space after the comparison's), then the rest."""
    parts: list[Any] = [Syntax(heading, "diff", theme=THEME)]
    if comparison.get("patch_field"):
        parts.append(Text("\nThe change", style="bold"))
        sides = {
            "only_old": f"only in {comparison['old_label']}",
            "only_new": f"only in {comparison['new_label']}",
        }
        for file in comparison.get("patch_files") or []:
            head = Text(file["path"], style="bold")
            head.append(f"  {sides.get(file['change'], 'changed on both sides, differently')}")
            parts += [head, Syntax(file["diff"], "diff", theme=THEME)]
        if not comparison.get("patch_files"):
            parts.append(Text("both patches are the same", style="grey62"))
        parts.append(Text("\nThe rest of the artifact", style="bold"))
    if comparison.get("diff"):
        parts.append(Syntax(comparison["diff"], "diff", theme=THEME))
    else:
        parts.append(Text("the same on both sides", style="grey62"))
    return Group(*parts)


class CompareScreen(ModalScreen[None]):
    """A stage's artifact against a set-aside attempt, the parent or a fork."""

    BINDINGS = [Binding("escape,q", "close", "Close")]

    def __init__(self, run_id: int, stage: str):
        super().__init__()
        self.run_id = run_id
        self.stage = stage
        self.options: list[dict[str, str]] = []
        self.shown: dict[str, Any] | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="compare"):
            yield Static(
                Text(f"Compare stage {self.stage} of run {self.run_id}", style="bold"),
                id="compare-title",
            )
            yield OptionList(id="compare-options")
            with VerticalScroll(id="compare-diff"):
                yield Static(id="compare-body")
            yield Static(id="compare-status")
            yield Static(Text("↑ ↓ enter compares · escape closes", style="grey62"))

    def on_mount(self) -> None:
        self.status("loading what it can be compared with…")
        self.load()

    def status(self, message: str, *, error: bool = False) -> None:
        if self.is_attached:
            self.query_one("#compare-status", Static).update(
                Text(message, style="red" if error else "grey62")
            )

    @work(exclusive=True, group="compare-load", exit_on_error=False)
    async def load(self) -> None:
        try:
            found = await self.app.client.attempts(self.run_id, self.stage)
        except ApiError as exc:
            self.status(str(exc), error=True)
            return
        if not self.is_attached:
            return
        self.options = list(found.get("compare") or [])
        listing = self.query_one("#compare-options", OptionList)
        listing.add_options([o["label"] for o in self.options])
        kept = len(found.get("attempts") or [])
        title = Text(f"Compare stage {self.stage} of run {self.run_id}", style="bold")
        title.append(f"  {kept} attempt{'' if kept == 1 else 's'} set aside", style="grey62")
        self.query_one("#compare-title", Static).update(title)
        if not self.options:
            self.status("nothing to compare with: no kept draft, parent or fork has this stage")
            return
        listing.highlighted = 0
        listing.focus()
        self.show(self.options[0]["key"])

    @on(OptionList.OptionSelected, "#compare-options")
    def picked(self, event: OptionList.OptionSelected) -> None:
        self.show(self.options[event.option_index]["key"])

    @work(exclusive=True, group="compare-show", exit_on_error=False)
    async def show(self, key: str) -> None:
        try:
            comparison = await self.app.client.compare(self.run_id, self.stage, key)
        except ApiError as exc:
            self.status(str(exc), error=True)
            return
        if not self.is_attached:
            return
        self.shown = comparison
        heading = f"--- {comparison['old_label']}\n+++ {comparison['new_label']}\n"
        body = self.query_one("#compare-body", Static)
        if comparison.get("same"):
            body.update(Text(heading + "\nthe same on both sides"))
        else:
            body.update(compare_view(comparison, heading))
        self.status(f"{comparison['old_label']} → {comparison['new_label']}")

    def action_close(self) -> None:
        self.dismiss(None)
