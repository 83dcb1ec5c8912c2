"""The Textual application: screens over the REST API and the event stream, keyboard
first, with a footer of keys, a command palette (ctrl+p) and a help screen (?).

Every API failure reaches the person as one line (a toast and the screen's status line);
nothing here lets a traceback out.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Iterable
from typing import TypeVar

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.worker import Worker

from tui.client import ApiClient, ApiError

logger = logging.getLogger("tekton.tui")

T = TypeVar("T")


class TektonApp(App[int]):
    """`TektonApp(client, notice=...)`. `notice` is shown once at start (the embedded
    server's warning); `launched` collects the ids of runs created from this session."""

    TITLE = "Tekton"
    CSS_PATH = "tekton.tcss"
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = [
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("ctrl+q", "quit", "Quit", show=True, priority=True),
    ]

    def __init__(
        self,
        client: ApiClient,
        *,
        notice: str = "",
        where: str = "",
        default_repo: str = "",
        start_run: int | None = None,
        poll_seconds: float = 2.0,
        stall_seconds: float | None = None,
    ):
        super().__init__()
        self.client = client
        self.notice = notice
        self.where = where or client.base_url
        self.default_repo = default_repo
        self.start_run = start_run
        self.poll_seconds = poll_seconds
        self.stall_seconds = stall_seconds
        self.launched: list[int] = []
        self.last_error = ""

    def on_mount(self) -> None:
        from tui.screens.runs import RunsScreen

        self.push_screen(RunsScreen())
        if self.start_run is not None:
            self.open_run(self.start_run)
        if self.notice:
            self.notify(self.notice, title="Embedded server", timeout=12)

    # --- navigation -------------------------------------------------------------------------
    def open_run(self, run_id: int, *, stage: str | None = None) -> None:
        from tui.screens.run import RunScreen

        self.push_screen(RunScreen(run_id, stage=stage))

    def action_help(self) -> None:
        from tui.screens.dialogs import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_new_run(self) -> None:
        from tui.screens.launcher import LauncherScreen

        if not isinstance(self.screen, LauncherScreen):
            self.push_screen(LauncherScreen())

    def action_runs(self) -> None:
        from tui.screens.runs import RunsScreen

        while len(self.screen_stack) > 2 and not isinstance(self.screen, RunsScreen):
            self.pop_screen()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield SystemCommand("Runs", "Back to the list of runs", self.action_runs)
        yield SystemCommand(
            "New run", "Open the launcher (explain, then launch)", self.action_new_run
        )
        yield SystemCommand("Help", "Keys of every screen", self.action_help)
        commands = getattr(screen, "palette_commands", None)
        if commands is not None:
            yield from commands()
        yield from super().get_system_commands(screen)

    # --- API calls --------------------------------------------------------------------------
    async def call(self, awaitable: Awaitable[T], *, quiet: bool = False) -> T | None:
        """Await an API call; on ApiError show its one line and return None."""
        try:
            return await awaitable
        except ApiError as exc:
            self.show_error(str(exc), quiet=quiet)
            return None

    def show_error(self, message: str, *, quiet: bool = False) -> None:
        self.last_error = message
        setter = getattr(self.screen, "set_status", None)
        if setter is not None:
            setter(message, error=True)
        if not quiet:
            self.notify(message, severity="error", timeout=8)

    def worker_failed(self, worker: Worker) -> None:
        """Workers do not end the app on error (exit_on_error=False): a bug in one is
        logged and shown as a line, and the screens stay usable."""
        error = worker.error
        logger.error("worker %s failed", worker.name, exc_info=error)
        self.show_error(f"internal error in {worker.name}: {type(error).__name__}: {error}")

    async def on_unmount(self) -> None:
        await self.client.aclose()
