"""The screens against a fixed server (tests/tui/fake.py): token deltas on the run screen,
untrusted text, the confirmation in front of every action, the launcher's explain-first
rule and field errors, the artifacts and the palette."""

from __future__ import annotations

from textual.widgets import DataTable, Input, Select, Static

from tests.tui.fake import fake_app
from tui.screens.artifacts import ArtifactsScreen
from tui.screens.dialogs import ConfirmScreen
from tui.screens.fork import CompareScreen, ForkScreen
from tui.screens.launcher import LauncherScreen
from tui.screens.run import RunScreen
from tui.stream import Event

SIZE = (120, 40)


async def until(pilot, condition, timeout: float = 5.0):
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError("the screen did not get there in time")


async def open_run(pilot, app, run_id: int = 7) -> RunScreen:
    app.open_run(run_id)
    await until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.state is not None)
    return app.screen


def delta(text: str, offset: int, *, call: str = "c9", role: str = "skeptic", **extra) -> Event:
    payload = {
        "run": 7,
        "stage": "review",
        "role": role,
        "round": 2,
        "call_id": call,
        "text": text,
        "offset": offset,
        **extra,
    }
    return Event(None, "stage.delta", "review", payload)


async def test_deltas_stream_into_the_agents_card_and_the_stored_message_replaces_it(text_of):
    app = fake_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_run(pilot, app)
        assert screen.selected == "review"  # the blocked stage is shown first
        body = screen.query_one("#transcript-body", Static)

        screen.event_apply(delta("Rollback is ", 0))
        screen.event_apply(delta("untested", 12))
        await pilot.pause()
        text = text_of(body)
        assert "Rollback is untested▌" in text
        assert "skeptic" in text.split("Rollback is untested")[0].splitlines()[-1]
        assert "streaming…" in text

        screen.event_apply(
            Event(
                81,
                "stage.progress",
                "review",
                {
                    "role": "skeptic",
                    "round": 2,
                    "model": "m/x",
                    "attempt": 1,
                    "answer": {"position": "Rollback is untested: revise.", "self_confidence": 0.7},
                },
            )
        )
        await pilot.pause()
        text = text_of(body)
        assert "Rollback is untested: revise." in text
        assert "▌" not in text and "streaming…" not in text
        assert text.count("Rollback is untested") == 1

        screen.event_apply(delta("half a thought", 0, call="c10", role="pragmatist"))
        screen.event_apply(delta("", 0, call="c10", role="pragmatist", discard=True))
        await pilot.pause()
        assert "half a thought" not in text_of(body)


async def test_a_delta_of_another_stage_does_not_touch_the_shown_transcript(text_of):
    app = fake_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_run(pilot, app)
        before = text_of(screen.query_one("#transcript-body", Static))
        screen.event_apply(
            Event(
                None,
                "stage.delta",
                "integrate",
                {
                    "stage": "integrate",
                    "role": "proponent",
                    "round": 0,
                    "call_id": "z",
                    "text": "elsewhere",
                    "offset": 0,
                },
            )
        )
        await pilot.pause()
        assert text_of(screen.query_one("#transcript-body", Static)) == before
        await pilot.press("right", "right")  # review -> threat -> integrate
        assert screen.selected == "integrate"
        assert "elsewhere" in text_of(screen.query_one("#transcript-body", Static))


async def test_untrusted_goal_text_is_shown_as_text_not_markup(text_of):
    app = fake_app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.screen.query_one(DataTable).row_count == 4)
        table = app.screen.query_one(DataTable)
        assert table.get_cell_at((0, 2)).plain.startswith("[b]Add[/b] a health")
        screen = await open_run(pilot, app)
        assert "[b]Add[/b] a health endpoint" in text_of(screen.query_one("#run-header", Static))


async def test_approve_asks_first_and_declining_sends_nothing():
    app = fake_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_run(pilot, app)
        await pilot.press("a")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert app.screen is screen
        assert not [c for c in app.fake.calls if c[0] == "POST"]
        await pilot.press("a")
        await pilot.press("y")
        await until(pilot, lambda: screen.state.stages["review"].status == "succeeded")
        assert ("POST", "/api/runs/7/stages/review/approve/", None) in app.fake.calls


async def test_retry_needs_a_note_and_sends_it():
    app = fake_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_run(pilot, app)
        await pilot.press("r")
        dialog = app.screen
        assert isinstance(dialog, ConfirmScreen)
        await pilot.press("enter")
        assert app.screen is dialog  # an empty note is refused, the dialog stays
        assert "needs a note" in str(dialog.query_one("#dialog-error", Static).content)
        dialog.query_one("#note").value = "add a rollback test"
        await pilot.press("enter")
        await until(pilot, lambda: any(c[1].endswith("/retry/") for c in app.fake.calls))
        assert (
            "POST",
            "/api/runs/7/stages/review/retry/",
            {"note": "add a rollback test"},
        ) in app.fake.calls


async def test_a_404_is_one_line_in_the_status_bar(text_of):
    app = fake_app()
    async with app.run_test(size=SIZE) as pilot:
        app.open_run(99)
        await until(pilot, lambda: isinstance(app.screen, RunScreen) and app.last_error)
        assert app.last_error == "404 run 99 not found"
        assert text_of(app.screen.query_one("#status", Static)).strip() == "404 run 99 not found"


async def test_the_launcher_explains_before_it_launches_and_shows_field_errors(text_of):
    app = fake_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, LauncherScreen))
        launcher = app.screen
        await pilot.press("ctrl+l")
        await until(pilot, lambda: launcher.query_one("#err-goal", Static).display)
        assert "may not be blank" in text_of(launcher.query_one("#err-goal", Static))
        launcher.query_one("#goal").value = "Add a health endpoint"
        await pilot.press("ctrl+l")  # explains first, creates nothing
        await until(pilot, lambda: launcher.explained is not None)
        assert "What will run" in text_of(launcher.query_one("#preview-body", Static))
        posts = [c for c in app.fake.calls if c[0] == "POST"]
        assert all(body["explain"] for _, _, body in posts)
        await pilot.press("ctrl+l")
        await until(pilot, lambda: isinstance(app.screen, RunScreen))
        assert app.launched == [8]
        created = [body for m, p, body in app.fake.calls if m == "POST" and not body["explain"]]
        assert created[0]["goal"] == "Add a health endpoint"


async def test_artifacts_jump_by_number_toggle_raw_and_colour_the_diff(text_of):
    app = fake_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_run(pilot, app)
        await pilot.press("v")
        await until(pilot, lambda: isinstance(app.screen, ArtifactsScreen) and app.screen.current)
        screen = app.screen
        content = screen.query_one("#artifact-content", Static)
        await pilot.press("1")
        await until(
            pilot,
            lambda: screen.current == "plan.json" and "Acceptance criteria" in text_of(content),
        )
        await pilot.press("r")
        assert '"acceptance_criteria"' in text_of(content)
        await pilot.press("r", "d")
        await until(pilot, lambda: "src/app.py  +5 -1" in text_of(content))
        assert "tests/test_app.py  +3 -0" in text_of(content)


async def test_the_palette_offers_the_screens_actions():
    app = fake_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_run(pilot, app)
        titles = [c.title for c in app.get_system_commands(screen)]
        assert {
            "Approve the blocked stage",
            "Retry a stage with a note",
            "Cancel the run",
            "Resume the run",
            "New run",
            "Help",
            "Stage review",
        } <= set(titles)


async def test_the_screen_follows_the_stage_that_starts_until_a_stage_is_picked():
    app = fake_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_run(pilot, app)
        screen.event_apply(Event(81, "stage.started", "integrate", {"attempt": 1}))
        assert screen.selected == "integrate"
        await pilot.press("left")
        assert screen.selected == "threat"
        screen.event_apply(Event(82, "stage.started", "test_debug", {"attempt": 1}))
        assert screen.selected == "threat"  # the person's choice stays


async def test_an_answer_that_arrives_after_the_screen_closed_is_dropped_quietly():
    app = fake_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_run(pilot, app)
        await pilot.press("escape")
        assert not screen.alive
        screen.event_apply(Event(81, "stage.started", "integrate", {"attempt": 1}))
        screen.render_all()
        screen.set_status("late")
        await pilot.pause()
        assert app.last_error == ""
        assert app.is_running


async def test_a_bug_in_a_worker_is_one_line_not_a_crash():
    app = fake_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_run(pilot, app)

        def broken():
            raise KeyError("stages")

        screen.render_all = broken
        screen.refresh_detail()
        await until(pilot, lambda: app.last_error)
        assert app.last_error == "internal error in refresh_detail: KeyError: 'stages'"
        assert app.is_running


async def test_fork_offers_the_stages_it_can_start_at_keeps_a_refusal_and_opens_the_fork(text_of):
    app = fake_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_run(pilot, app)
        await pilot.press("f")
        dialog = app.screen
        assert isinstance(dialog, ForkScreen)
        # Up to the first unfinished stage (review is blocked), which is the one shown.
        assert dialog.starts == ["plan", "research", "plan_update", "code", "review"]
        assert dialog.query_one("#from", Select).value == "review"
        await until(pilot, lambda: dialog.query_one("#profile", Select)._options[1:])
        summary = text_of(dialog.query_one("#fork-summary", Static))
        assert "reuses plan, research, plan_update, code, runs from review" in summary
        dialog.query_one("#from", Select).value = "code"
        dialog.query_one("#model", Input).value = "nope"
        await pilot.pause()
        assert "runs from code with the parent's profile and model nope" in text_of(
            dialog.query_one("#fork-summary", Static)
        )
        await pilot.press("ctrl+y")
        error = dialog.query_one("#dialog-error", Static)
        await until(pilot, lambda: "a model id" in text_of(error))
        assert app.screen is dialog  # a refused value stays in the dialog
        assert text_of(error).strip() == "400 model: a model id is vendor/model"
        dialog.query_one("#profile", Select).value = "fast"
        dialog.query_one("#model", Input).value = "offline/other"
        await pilot.press("ctrl+y")
        await until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.run_id == 9)
        forks = [b for m, p, b in app.fake.calls if m == "POST" and p == "/api/runs/7/fork/"]
        assert forks[-1] == {"from": "code", "profile": "fast", "model": "offline/other"}
        fork = app.screen
        await until(pilot, lambda: fork.state is not None)
        assert "forked from run 7 at code" in text_of(fork.query_one("#run-header", Static))
        assert app.launched == [9]
        await pilot.press("escape")
        assert app.screen is screen
        assert "forks run 9" in text_of(screen.query_one("#run-header", Static))


async def test_declining_a_fork_sends_nothing():
    app = fake_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_run(pilot, app)
        await pilot.press("f")
        assert isinstance(app.screen, ForkScreen)
        await pilot.press("escape")
        assert app.screen is screen
        assert not [c for c in app.fake.calls if c[0] == "POST"]


async def test_compare_lists_what_the_stage_can_be_compared_with_and_shows_the_diff(text_of):
    app = fake_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_run(pilot, app)
        await pilot.press("m")
        dialog = app.screen
        assert isinstance(dialog, CompareScreen) and dialog.stage == "review"
        body = dialog.query_one("#compare-body", Static)
        await until(pilot, lambda: dialog.shown is not None)
        assert '-  "verdict": "revise"' in text_of(body)
        assert '+  "verdict": "ship"' in text_of(body)
        assert "1 attempt set aside" in text_of(dialog.query_one("#compare-title", Static))
        assert "attempt 1 (blocked) → run 7 (now)" in text_of(
            dialog.query_one("#compare-status", Static)
        )
        await pilot.press("down", "enter")
        await until(pilot, lambda: dialog.shown["key"] == "run-5")
        assert "the same on both sides" in text_of(body)
        assert ("GET", "/api/runs/7/stages/review/compare/", None) in app.fake.calls


async def test_compare_of_code_shows_the_patches_per_file_then_the_rest(text_of, monkeypatch):
    from tests.tui import fake

    code = {
        **fake.COMPARISONS["attempt-1"],
        "diff": '--- a/code.json\n+++ b/code.json\n@@ -1 +1 @@\n-  "risk": "none"\n'
        '+  "risk": "slow"\n',
        "patch_field": "diff",
        "patch_files": [
            {
                "path": "greet.py",
                "change": "differs",
                "diff": "--- a/greet.py\n+++ b/greet.py\n@@ -1,2 +1,2 @@\n -hello = 1\n"
                "-+hello = 2\n++hello = 3\n",
            },
            {"path": "README.md", "change": "only_new", "diff": "--- /dev/null\n..."},
        ],
    }
    monkeypatch.setitem(fake.COMPARISONS, "attempt-1", code)
    app = fake_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_run(pilot, app)
        await pilot.press("m")
        dialog = app.screen
        await until(pilot, lambda: dialog.shown is not None)
        shown = text_of(dialog.query_one("#compare-body", Static))
        assert "greet.py  changed on both sides, differently" in shown
        assert "-+hello = 2\n++hello = 3" in shown
        assert "README.md  only in run 7 (now)" in shown
        # The patch comes first, then the rest of the artifact.
        assert shown.index("The change") < shown.index("greet.py") < shown.index("The rest")
        assert shown.index("The rest of the artifact") < shown.index('+  "risk": "slow"')


async def test_the_header_names_the_parent_and_forks_and_the_palette_opens_them(text_of):
    app = fake_app()
    app.fake.details[7].update(parent=5, forked_from_stage="review", forks=[6])
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_run(pilot, app)
        header = text_of(screen.query_one("#run-header", Static))
        assert "forked from run 5 at review  forks run 6" in header
        commands = {c.title: c for c in app.get_system_commands(screen)}
        assert {"Fork the run", "Parent run 5", "Fork run 6"} <= set(commands)
        await pilot.press("ctrl+p", *"Fork run 6", "enter")
        await until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.run_id == 6)
