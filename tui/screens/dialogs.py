"""Modal screens: the confirmation every action goes through, and the help screen."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static


class ConfirmScreen(ModalScreen[str | bool | None]):
    """Answers True (confirmed), the note (with_note: confirmed with a non-empty note) or
    False (declined)."""

    BINDINGS = [
        Binding("escape", "decline", "Cancel"),
        Binding("ctrl+y", "confirm", "Confirm"),
    ]

    def __init__(self, verb: str, question: str, *, with_note: bool = False):
        super().__init__()
        self.verb = verb
        self.question = question
        self.with_note = with_note

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(Text(self.question), id="question")
            if self.with_note:
                yield Input(placeholder="a note for the stage's prompts (required)", id="note")
            yield Static(id="dialog-error")
            with Horizontal(id="buttons"):
                yield Button(self.verb.capitalize(), variant="warning", id="yes")
                yield Button("Cancel", id="no")
            hint = "enter or ctrl+y confirms · escape cancels"
            if not self.with_note:
                hint = "y or enter confirms · n or escape cancels"
            yield Static(Text(hint, style="grey62"), id="dialog-hint")

    def on_mount(self) -> None:
        if self.with_note:
            self.query_one("#note", Input).focus()
        else:
            self.query_one("#yes", Button).focus()

    def on_key(self, event) -> None:
        if self.with_note:
            return
        if event.key == "y":
            event.stop()
            self.action_confirm()
        elif event.key == "n":
            event.stop()
            self.action_decline()

    @on(Button.Pressed, "#yes")
    def yes(self) -> None:
        self.action_confirm()

    @on(Button.Pressed, "#no")
    def no(self) -> None:
        self.action_decline()

    @on(Input.Submitted, "#note")
    def note_submitted(self) -> None:
        self.action_confirm()

    def action_confirm(self) -> None:
        if self.with_note:
            note = self.query_one("#note", Input).value.strip()
            if not note:
                self.query_one("#dialog-error", Static).update(
                    Text(
                        "a retry needs a note: say what the stage should do differently",
                        style="red",
                    )
                )
                return
            self.dismiss(note)
        else:
            self.dismiss(True)

    def action_decline(self) -> None:
        self.dismiss(False)


HELP = """\
Everywhere
  ?            this help            ctrl+p   command palette (every action by name)
  ctrl+q       quit                 escape   back / close

Runs
  ↑ ↓  enter   choose and open a run
  /            search goals (enter applies, escape clears)
  f            cycle the status filter    n   new run
  ] [          next / previous page       ctrl+r  refresh now
  The list refreshes itself every few seconds; the strip shows the nine stages:
  ● succeeded  ◐ running  ■ blocked  ✕ failed  ⊘ cancelled  ○ queued  · not in range

Run
  ← → (h l)    choose a stage: its transcript, votes and reason
  a            approve the blocked stage anyway
  r            retry a blocked or failed stage with a note
  x            abort the run at its blocked stage
  c            cancel the run             u   resume a stopped run
  v            artifacts                  d   the code stage's diff
  f            fork the run from a stage with another profile or model (opens the fork)
  m            compare the stage's artifact with a set-aside attempt, the parent or a fork
  Every action asks first. The top right says whether the event stream is live; after a
  dropped connection it reconnects with Last-Event-ID and says so.

Artifacts
  1-9 or ↑ ↓   jump to an artifact        r   rendered / raw
  d            the diff, with syntax colouring

Launcher
  tab          next field                 ctrl+e  explain (what would run)
  ctrl+l       launch (explains first when the form changed since)
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,question_mark,q", "close", "Close"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(id="help"):
            yield Static(Text("Tekton terminal UI: keys", style="bold"), id="help-title")
            with VerticalScroll():
                yield Static(Text(HELP))
            yield Static(Text("escape or ? closes", style="grey62"))

    def action_close(self) -> None:
        self.dismiss(None)
