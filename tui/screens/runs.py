"""The runs screen: a table of runs with status, goal, repository, a stage strip, duration,
tokens and cost; a status filter and a goal search; it refreshes itself while shown.

API: GET /api/runs/ (filters status and q, keyset pages through next / previous), and
GET /api/runs/<id>/ for the stage strips: the list answer has no stages, so a run's strip
comes from its detail, fetched again only while the run is live or when its status changed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Input, Static

from tui.format import cost, duration, one_line, path_tail, stage_strip, status_text, tokens
from tui.screens.base import TektonScreen

STATUS_FILTERS = (None, "running", "blocked", "queued", "succeeded", "failed", "cancelled")
LIVE = ("queued", "running")
DETAIL_CONCURRENCY = 4
# (label, key, width): 100 characters of cells plus padding fit a 120-column terminal.
COLUMNS = (
    ("#", "id", 4),
    ("status", "status", 9),
    ("goal", "goal", 28),
    ("repository", "repo", 18),
    ("stages", "stages", 9),
    ("duration", "duration", 8),
    ("tokens", "tokens", 6),
    ("cost", "cost", 7),
    ("created", "created", 11),
)


def created(value: Any) -> str:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).strftime("%m-%d %H:%M")
    except ValueError:
        return "—"


class RunsScreen(TektonScreen):
    AUTO_FOCUS = "#runs"
    BINDINGS = [
        Binding("enter", "open", "Open", show=True),
        Binding("slash", "search", "Search", key_display="/"),
        Binding("f", "filter", "Filter status"),
        Binding("n", "app.new_run", "New run"),
        Binding("ctrl+r", "refresh", "Refresh"),
        Binding("right_square_bracket", "page(1)", "Next page", key_display="]"),
        Binding("left_square_bracket", "page(-1)", "Prev page", key_display="["),
        Binding("escape", "clear_search", "Clear", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.status_filter: str | None = None
        self.query_text = ""
        self.page_url: str | None = None
        self.page: dict[str, Any] = {}
        self.runs: list[dict[str, Any]] = []
        # run id -> (status the detail was read at, its stages)
        self.details: dict[int, tuple[str, list[dict[str, Any]]]] = {}
        self.loaded = asyncio.Event()

    def compose(self) -> ComposeResult:
        with Horizontal(id="topbar"):
            yield Static(id="title")
            yield Static(id="filters")
        yield Input(placeholder="search goals (enter to apply, escape to clear)", id="search")
        table: DataTable = DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield table
        yield Static(id="status")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for label, key, width in COLUMNS:
            table.add_column(label, key=key, width=width)
        self.query_one("#search", Input).display = False
        table.focus()
        self.title_update()
        self.set_status("loading runs…")
        self.refresh_runs()
        self.set_interval(self.app.poll_seconds, self.poll)

    def on_screen_resume(self) -> None:
        self.refresh_runs()

    def title_update(self) -> None:
        if not self.alive:
            return
        title = Text()
        title.append("Tekton", style="bold")
        title.append("  runs  ", style="reverse")
        title.append(f"  {self.app.where}", style="grey62")
        self.query_one("#title", Static).update(title)
        filters = Text()
        filters.append("status: ", style="grey62")
        filters.append(self.status_filter or "all")
        filters.append("   search: ", style="grey62")
        filters.append(self.query_text or "—")
        self.query_one("#filters", Static).update(filters)

    # --- data -------------------------------------------------------------------------------
    def poll(self) -> None:
        if self.app.screen is self:
            self.refresh_runs()

    @work(exclusive=True, group="runs-refresh", exit_on_error=False)
    async def refresh_runs(self) -> None:
        client = self.app.client
        page = await self.app.call(
            client.runs(
                status=self.status_filter, q=self.query_text or None, cursor_url=self.page_url
            ),
            quiet=bool(self.runs),
        )
        if page is None:
            return
        self.page = page
        self.runs = list(page.get("results") or [])
        await self._details_refresh()
        self.table_update()
        shown = len(self.runs)
        more = " · ] next page" if page.get("next") else ""
        self.set_status(f"{shown} run{'s' if shown != 1 else ''} shown{more}")
        self.loaded.set()

    async def _details_refresh(self) -> None:
        wanted = [
            run["id"]
            for run in self.runs
            if run["status"] in LIVE
            or run["id"] not in self.details
            or self.details[run["id"]][0] != run["status"]
        ]
        if not wanted:
            return
        limit = asyncio.Semaphore(DETAIL_CONCURRENCY)

        async def one(run_id: int) -> None:
            async with limit:
                detail = await self.app.call(self.app.client.run(run_id), quiet=True)
            if detail is not None:
                self.details[run_id] = (detail["status"], list(detail.get("stages") or []))

        await asyncio.gather(*(one(i) for i in wanted))

    def table_update(self) -> None:
        if not self.alive:
            return
        table = self.query_one(DataTable)
        selected = None
        if table.row_count and table.cursor_row is not None:
            try:
                selected = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
            except Exception:  # an emptied table has no cell at the cursor
                selected = None
        table.clear()
        for run in self.runs:
            stages = self.details.get(run["id"], (None, None))[1]
            table.add_row(
                Text(str(run["id"]), justify="right"),
                status_text(run["status"]),
                one_line(run.get("goal"), 28),
                path_tail(run.get("repo"), 18),
                stage_strip(stages),
                Text(duration(run.get("duration_s")), justify="right"),
                Text(tokens(run.get("total_tokens")), justify="right"),
                Text(cost(run.get("cost_usd")), justify="right"),
                Text(created(run.get("created_at")), style="grey62"),
                key=str(run["id"]),
            )
        if selected is not None:
            try:
                table.move_cursor(row=table.get_row_index(selected))
            except Exception:  # the selected run left this page
                pass

    # --- actions ----------------------------------------------------------------------------
    def selected_run(self) -> int | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
        return int(key) if key else None

    @on(DataTable.RowSelected)
    def row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value:
            self.app.open_run(int(event.row_key.value))

    def action_open(self) -> None:
        run_id = self.selected_run()
        if run_id is not None:
            self.app.open_run(run_id)

    def action_search(self) -> None:
        search = self.query_one("#search", Input)
        search.display = True
        search.value = self.query_text
        search.focus()

    @on(Input.Submitted, "#search")
    def search_submitted(self, event: Input.Submitted) -> None:
        self.query_text = event.value.strip()
        event.input.display = bool(self.query_text)
        self.page_url = None
        self.query_one(DataTable).focus()
        self.title_update()
        self.refresh_runs()

    def action_clear_search(self) -> None:
        search = self.query_one("#search", Input)
        if self.query_text or search.display:
            self.query_text = ""
            search.value = ""
            search.display = False
            self.page_url = None
            self.query_one(DataTable).focus()
            self.title_update()
            self.refresh_runs()

    def action_filter(self) -> None:
        index = STATUS_FILTERS.index(self.status_filter)
        self.status_filter = STATUS_FILTERS[(index + 1) % len(STATUS_FILTERS)]
        self.page_url = None
        self.title_update()
        self.refresh_runs()

    def action_refresh(self) -> None:
        self.refresh_runs()

    def action_page(self, step: int) -> None:
        url = self.page.get("next" if step > 0 else "previous")
        if url:
            self.page_url = url
            self.refresh_runs()
        else:
            self.set_status("no more pages that way")

    def palette_commands(self) -> Iterable[SystemCommand]:
        for run in self.runs[:25]:
            run_id = run["id"]
            yield SystemCommand(
                f"Open run {run_id}",
                " ".join(str(run.get("goal") or "").split())[:80],
                lambda run_id=run_id: self.app.open_run(run_id),
            )
        for status in STATUS_FILTERS:
            yield SystemCommand(
                f"Show {status or 'all'} runs",
                "Filter the list by status",
                lambda status=status: self._filter_to(status),
            )

    def _filter_to(self, status: str | None) -> None:
        self.status_filter = status
        self.page_url = None
        self.title_update()
        self.refresh_runs()
