"""SVG snapshots of the main screens at 120 x 40 against the fixed server (fake.py).
Refresh after a deliberate change with `uv run pytest tests/tui/test_snapshots.py
--snapshot-update`, and look at the pictures before committing them."""

from __future__ import annotations

from textual.widgets import Input

from tests.tui.fake import fake_app
from tui.screens.artifacts import ArtifactsScreen
from tui.screens.launcher import LauncherScreen
from tui.screens.run import RunScreen

SIZE = (120, 40)


async def settle(pilot, condition) -> None:
    for _ in range(200):
        if condition():
            break
        await pilot.pause(0.02)
    await pilot.pause(0.1)


def test_runs_screen(snap_compare):
    async def ready(pilot):
        runs = pilot.app.screen
        await settle(
            pilot, lambda: len(runs.details) == 4 and runs.query_one("DataTable").row_count == 4
        )

    assert snap_compare(fake_app(), terminal_size=SIZE, run_before=ready)


def test_run_screen_with_a_blocked_stage(snap_compare):
    async def ready(pilot):
        pilot.app.open_run(7)
        await settle(
            pilot,
            lambda: (
                isinstance(pilot.app.screen, RunScreen) and pilot.app.screen.stream_state == "ended"
            ),
        )

    assert snap_compare(fake_app(), terminal_size=SIZE, run_before=ready)


def test_artifacts_screen_diff(snap_compare):
    async def ready(pilot):
        pilot.app.push_screen(ArtifactsScreen(7, initial="diff.patch"))
        await settle(pilot, lambda: "diff.patch" in getattr(pilot.app.screen, "texts", {}))

    assert snap_compare(fake_app(), terminal_size=SIZE, run_before=ready)


def test_launcher_with_explain_preview(snap_compare):
    async def ready(pilot):
        pilot.app.push_screen(LauncherScreen())
        await pilot.pause(0.1)
        launcher = pilot.app.screen
        for field in launcher.query(Input):
            field.cursor_blink = False  # a blinking cursor makes the picture depend on timing
        launcher.query_one("#goal").value = "Add a health endpoint"
        launcher.query_one("#repo").value = "/srv/repos/shop"
        await pilot.press("ctrl+e")
        await settle(pilot, lambda: launcher.explained is not None)

    assert snap_compare(fake_app(), terminal_size=SIZE, run_before=ready)


def test_help_screen(snap_compare):
    assert snap_compare(fake_app(), terminal_size=SIZE, press=["question_mark"])
