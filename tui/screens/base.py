"""What every full screen of the UI shares: the status line, and knowing whether it is
still shown (a worker's answer can arrive after the person left the screen)."""

from __future__ import annotations

from rich.text import Text
from textual.screen import Screen
from textual.widgets import Static
from textual.worker import Worker, WorkerState


class TektonScreen(Screen):
    @property
    def alive(self) -> bool:
        """Mounted and still on the stack: drawing is safe (and worth it)."""
        return self.is_attached and self in self.app.screen_stack

    def set_status(self, message: str, *, error: bool = False) -> None:
        if not self.alive:
            return
        widget = self.query_one("#status", Static)
        widget.set_class(error, "error")
        widget.update(Text(message))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # The message does not bubble: each screen hands its failed workers to the app.
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            self.app.worker_failed(event.worker)
