"""The terminal UI driven by Textual's Pilot against a real ASGI server (daphne) subprocess
in embedded mode (SQLite, migrated; stages in the server's background threads; the
offline LLM backend): navigate to a run, open it, approve its blocked stage, and follow it
through a proxy that drops the event stream mid-run.

With TEKTON_SCREENSHOTS=docs the pictures of each screen are written to docs/tui/ (SVG
from Textual, PNG from headless Chromium); otherwise the SVGs go to a temporary folder.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.integration.harness import PROJECT_DIR, manage
from tests.streams.live import AsgiServer, user_token
from tests.support.pyvenv import venv_link
from tests.tui.conftest import plain
from tui.app import TektonApp
from tui.client import ApiClient
from tui.screens.artifacts import ArtifactsScreen
from tui.screens.dialogs import ConfirmScreen, HelpScreen
from tui.screens.fork import CompareScreen, ForkScreen
from tui.screens.launcher import LauncherScreen
from tui.screens.run import RunScreen
from tui.screens.runs import RunsScreen

SIZE = (120, 40)
PICTURES = (
    PROJECT_DIR / "docs" / "tui"
    if os.environ.get("TEKTON_SCREENSHOTS") == "docs"
    else Path(tempfile.gettempdir()) / "tekton-tui-screens"
)
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--hide-scrollbars",
]


def _git(path: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=Tekton", "-c", "user.email=tekton@example.invalid", *args],
        cwd=path,
        check=True,
        capture_output=True,
    )


@dataclass
class Live:
    server: AsgiServer
    token: str
    repo: Path
    env: dict[str, str]

    def api(self, method: str, path: str, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.request(
            method, self.server.base_url + path, headers=headers, timeout=30, **kwargs
        )

    def create(self, goal: str) -> int:
        response = self.api("POST", "/api/runs/", json={"goal": goal, "repo": str(self.repo)})
        assert response.status_code == 201, response.text
        return response.json()["id"]


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("tui-live")
    repo = root / "repos" / "shop"
    (repo / "src").mkdir(parents=True)
    (repo / "README.md").write_text("# Shop\n")
    (repo / "src" / "app.py").write_text("def total(prices):\n    return sum(prices)\n")
    (repo / "test_app.py").write_text(
        "from src.app import total\n\n\ndef test_total():\n    assert total([1, 2]) == 3\n"
    )
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "Initial shop")
    venv_link(repo)  # its tests run in the sandbox with pytest, as a real project's would
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TEKTON_", "DJANGO_", "CELERY_"))
        and k not in ("DATABASE_URL", "REDIS_URL", "MILVUS_URI")
    }
    env.update(
        TEKTON_DATA_DIR=str(root / "data"),
        TEKTON_RETRIEVAL="false",
        TEKTON_REPO_ROOTS=str(root / "repos"),
        TEKTON_LLM_BACKEND="offline",
        TEKTON_OFFLINE_LATENCY_MS="20",
        TEKTON_EXECUTION="inline",
        TEKTON_INLINE_THREADS="true",
        TEKTON_SSE_HEARTBEAT_SECONDS="1",
    )
    migrated = manage(["migrate", "-v0"], env=env)
    assert migrated.returncode == 0, migrated.stderr
    token = user_token(env, "tui-ada", staff=True)
    server = AsgiServer(env=env, log_path=root / "daphne.log")
    try:
        server.wait_ready()
        yield Live(server, token, repo, env)
    finally:
        server.stop()


async def until(pilot, condition, what: str, timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


def picture(app: TektonApp, name: str) -> Path:
    """The screen as SVG and, when refreshing docs/tui, as PNG through headless Chromium."""
    PICTURES.mkdir(parents=True, exist_ok=True)
    svg = PICTURES / f"{name}.svg"
    svg.write_text(app.export_screenshot(title=f"tekton tui: {name}"))
    if PICTURES.parent.name == "docs" and CHROMIUM.exists():
        text = svg.read_text()
        width, height = (
            float(n) for n in re.search(r'viewBox="0 0 ([\d.]+) ([\d.]+)"', text).groups()
        )
        page = PICTURES / f".{name}.html"
        page.write_text(
            '<html><body style="margin:0;background:#000">'
            f'<img src="{svg.name}" width="{width:.0f}" height="{height:.0f}"></body></html>'
        )
        subprocess.run(
            [
                str(CHROMIUM),
                *CHROMIUM_ARGS,
                f"--window-size={width:.0f},{height:.0f}",
                f"--screenshot={PICTURES / f'{name}.png'}",
                page.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        page.unlink()
        svg.unlink()  # docs keep the PNG; the SVG snapshots live with the tests
    return svg


def tui(base_url: str, token: str, **kwargs) -> TektonApp:
    return TektonApp(ApiClient(base_url, token), where=base_url, poll_seconds=0.5, **kwargs)


async def test_navigate_open_a_run_and_approve_its_blocked_stage(live: Live):
    finished = live.create("Document the release process")
    blocked = live.create("Harden the checkout [offline:block=review]")
    app = tui(live.server.base_url, live.token, default_repo=str(live.repo))
    async with app.run_test(size=SIZE) as pilot:
        runs = app.screen
        assert isinstance(runs, RunsScreen)
        await until(pilot, lambda: {r["id"] for r in runs.runs} >= {finished, blocked}, "the runs")
        await until(
            pilot,
            lambda: (
                runs.details.get(blocked, ("",))[0] == "blocked"
                and runs.details.get(finished, ("",))[0] == "succeeded"
            ),
            "the two runs to settle",
        )
        runs.table_update()
        await pilot.pause()
        picture(app, "runs")

        # The newest run is on top: down to the finished one and back, then open it.
        await pilot.press("down", "up", "enter")
        await until(pilot, lambda: isinstance(app.screen, RunScreen), "the run screen")
        screen = app.screen
        assert screen.run_id == blocked
        await until(pilot, lambda: screen.state is not None, "the run to load")
        assert screen.selected == "review"
        assert screen.state.stages["review"].status == "blocked"
        assert screen.state.cards["review"], "the blocked stage's transcript is shown"
        await until(pilot, lambda: screen.stream_state == "live", "the stream")
        picture(app, "run-blocked")

        await pilot.press("a")
        assert isinstance(app.screen, ConfirmScreen)
        picture(app, "confirm-approve")
        await pilot.press("y")
        await until(
            pilot,
            lambda: screen.state.status == "succeeded" and screen.stream_state == "ended",
            "the approved run to finish over the stream",
        )
        assert screen.state.stages["review"].status == "succeeded"
        assert screen.state.stages["release"].status == "succeeded"
        assert live.api("GET", f"/api/runs/{blocked}/").json()["status"] == "succeeded"
        # The screen followed the stages as they started, up to the last one.
        assert screen.selected == "release"
        await pilot.press(*["left"] * 5)  # release -> test_debug -> ... -> review -> code
        assert screen.selected == "code"
        picture(app, "run-finished")

        await pilot.press("d")
        await until(
            pilot,
            lambda: (
                isinstance(app.screen, ArtifactsScreen)
                and app.screen.current == "diff.patch"
                and "diff.patch" in app.screen.texts
            ),
            "the diff",
        )
        picture(app, "artifacts-diff")
        await pilot.press("1")
        await until(
            pilot,
            lambda: app.screen.current == "plan.json" and "plan.json" in app.screen.texts,
            "plan.json",
        )
        picture(app, "artifacts-plan")
        await pilot.press("escape", "escape")
        assert app.screen is runs

        await pilot.press("n")
        assert isinstance(app.screen, LauncherScreen)
        launcher = app.screen
        launcher.query_one("#goal").value = "Add a health endpoint"
        await pilot.press("ctrl+e")
        await until(pilot, lambda: launcher.explained is not None, "the explain preview")
        # The server's forecast, per stage and for the run.
        preview = plain(launcher.query_one("#preview-body").content)
        assert "expected " in preview and " at p90)" in preview and "tokens $0.00" in preview
        picture(app, "launcher-explain")
        await pilot.press("escape", "question_mark")
        assert isinstance(app.screen, HelpScreen)
        picture(app, "help")


async def test_the_run_screen_shows_the_agents_words_as_they_stream(live: Live):
    run_id = live.create("Explain the order total rounding")
    app = tui(live.server.base_url, live.token, start_run=run_id)
    async with app.run_test(size=SIZE) as pilot:
        await until(
            pilot,
            lambda: isinstance(app.screen, RunScreen) and app.screen.state is not None,
            "the run screen",
        )
        screen = app.screen
        # (call, text) of live cards after each delta; a discard (the call's retry streams
        # afresh) starts the call's text over, so it is a separate entry from there on.
        growing: list[tuple[str, str]] = []
        discarded: dict[str, int] = {}
        apply = screen.event_apply

        def watch(event):
            apply(event)
            if event.kind != "stage.delta":
                return
            assert event.seq is None  # never a resume point
            call = event.payload["call_id"]
            if event.payload.get("discard"):
                discarded[call] = discarded.get(call, 0) + 1
                return
            card = next(
                (c for c in screen.state.cards.get(event.stage, []) if c.call_id == call), None
            )
            if card is not None and card.is_live:
                growing.append((f"{call}#{discarded.get(call, 0)}", card.text))

        screen.event_apply = watch  # the stream loop calls it per event
        await until(
            pilot,
            lambda: screen.state.status == "succeeded" and screen.stream_state == "ended",
            "the run to finish over the stream",
        )
        by_call: dict[str, list[str]] = {}
        for call, text in growing:
            by_call.setdefault(call, []).append(text)
        # A card's text grew delta by delta, each time keeping what it had.
        assert any(len(texts) > 1 for texts in by_call.values()), by_call
        shrank = [
            (call, len(a), len(b), b[:200])
            for call, texts in by_call.items()
            for a, b in itertools.pairwise(texts)
            if not b.startswith(a)
        ]
        assert not shrank, shrank[:3]
        # Every streaming card gave way to its stored message.
        assert not [c for cards in screen.state.cards.values() for c in cards if c.is_live]


class DroppingProxy:
    """A TCP proxy on loopback in front of the server; drop() resets every open connection,
    as a dying load balancer would. `requests` keeps the head of every request."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.requests: list[str] = []
        self.open: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.open += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, log: bool) -> None:
            try:
                while data := await src.read(65536):
                    if log:
                        self.requests.append(data.decode("latin-1"))
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))

    def drop(self) -> None:
        for writer in self.open:
            writer.transport.abort()
        self.open.clear()

    def event_requests(self) -> list[str]:
        return [r for r in self.requests if "/events" in r.split("\r\n", 1)[0]]

    async def close(self) -> None:
        self.drop()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def test_the_run_screen_reconnects_after_the_server_drops_the_stream(live: Live):
    run_id = live.create("Harden the checkout [offline:block=review]")
    proxy = DroppingProxy(live.server.port)
    url = await proxy.start()
    app = tui(url, live.token, start_run=run_id, stall_seconds=5)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: isinstance(app.screen, RunScreen), "the run screen")
            screen = app.screen
            # The seqs the stream delivered (the run detail, read again after stage events,
            # can know of later events than the stream has brought so far).
            streamed: list[int] = []
            apply = screen.event_apply

            def watch(event):
                apply(event)
                if event.seq is not None:
                    streamed.append(event.seq)

            screen.event_apply = watch
            await until(
                pilot,
                lambda: (
                    screen.state is not None
                    and screen.state.status == "blocked"
                    and screen.stream_state == "live"
                ),
                "the run to block while the stream is live",
            )
            await until(pilot, lambda: len(proxy.event_requests()) == 1, "one stream request")

            proxy.drop()
            await until(pilot, lambda: screen.stream_state == "reconnecting", "the drop to be seen")
            # The status line says the connection is lost: the stream's words, or those of a
            # request the same drop cut (both tell the person what happened).
            status = str(screen.query_one("#status").content)
            assert "dropped" in status or "the connection was closed" in status, status
            # The last event the stream brought before it dropped (nothing arrives while it is
            # down; events kept coming until the drop, so it is read now, not before).
            seq_before = max(streamed)
            await until(pilot, lambda: screen.stream_state == "live", "the reconnect")
            assert "reconnected after a dropped stream" in str(screen.query_one("#status").content)
            second = proxy.event_requests()[-1]
            assert re.search(rf"(?im)^last-event-id: {seq_before}\r?$", second), second
            assert re.search(r"(?m)^GET /api/runs/\d+/events\?deltas=1 ", second), second

            # The run goes on (approved from elsewhere); the screen follows over the new
            # connection and ends with exactly the server's events, none twice.
            assert live.api("POST", f"/api/runs/{run_id}/stages/review/approve/").status_code == 200
            await until(pilot, lambda: screen.stream_state == "ended", "the end of the run")
            detail = live.api("GET", f"/api/runs/{run_id}/").json()
            assert screen.state.status == detail["status"] == "succeeded"
            assert screen.state.run["last_event_seq"] == detail["last_event_seq"]
            seqs = [c.seq for cards in screen.state.cards.values() for c in cards]
            assert len(seqs) == len(set(seqs))
            transcript = live.api("GET", f"/api/runs/{run_id}/transcript/").json()
            stored = [
                m["seq"] for s in transcript["stages"] for r in s["rounds"] for m in r["messages"]
            ]
            assert sorted(seqs) == sorted(stored)
    finally:
        await proxy.close()


async def test_fork_a_blocked_run_from_its_screen_and_compare_the_stage_with_the_parent(
    live: Live,
):
    parent = live.create("Tighten the totals [offline:block=review]")
    app = tui(live.server.base_url, live.token, start_run=parent)
    async with app.run_test(size=SIZE) as pilot:
        await until(
            pilot,
            lambda: (
                isinstance(app.screen, RunScreen)
                and app.screen.state is not None
                and app.screen.state.status == "blocked"
            ),
            "the parent to block",
        )
        screen = app.screen
        await pilot.press("f")
        dialog = app.screen
        assert isinstance(dialog, ForkScreen)
        assert dialog.query_one("#from").value == "review"  # the blocked stage
        dialog.query_one("#model").value = "offline/other-model"
        await pilot.pause()
        picture(app, "fork")
        await pilot.press("ctrl+y")
        await until(
            pilot,
            lambda: isinstance(app.screen, RunScreen) and app.screen is not screen,
            "the fork's run screen",
        )
        fork = app.screen
        detail = live.api("GET", f"/api/runs/{fork.run_id}/").json()
        assert (detail["parent"], detail["forked_from_stage"]) == (parent, "review")
        assert {s["stage"]: s["status"] for s in detail["stages"]}["code"] == "skipped"
        await until(
            pilot,
            lambda: fork.state is not None and fork.state.status == "blocked",
            "the fork to block at review too (the same goal)",
        )
        # The header is drawn after the state that blocked it arrives, not with it.
        await until(
            pilot,
            lambda: (
                f"forked from run {parent} at review"
                in plain(fork.query_one("#run-header").content)
            ),
            "the fork's header to name its parent",
        )

        await pilot.press("m")
        compare = app.screen
        assert isinstance(compare, CompareScreen) and compare.stage == "review"
        await until(pilot, lambda: compare.shown is not None, "the comparison")
        assert compare.shown["key"] == f"run-{parent}"
        assert compare.shown["old_label"] == f"parent run {parent}"
        body = plain(compare.query_one("#compare-body").content)
        assert f"--- parent run {parent}" in body
        picture(app, "compare")
        await pilot.press("escape", "escape")
        assert app.screen is screen
        assert f"forks run {fork.run_id}" in plain(screen.query_one("#run-header").content)


def test_local_mode_uses_the_server_already_running_with_a_token_it_revokes(live: Live):
    script = LOCAL_SCRIPT.format(probe=live.server.base_url)
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_DIR,
        env=live.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {
        "embedded": False,
        "url": live.server.base_url,
        "status": 200,
        "after_close": 401,
        "revoked": True,
    }
    assert "tkn_" not in done.stdout + done.stderr


def test_local_mode_without_a_server_serves_the_api_itself_and_stops_it(tmp_path: Path, live: Live):
    env = {**live.env, "TEKTON_DATA_DIR": str(tmp_path / "fresh")}  # unmigrated: migrated here
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # never listening: nothing answers the probe there
    try:
        script = LOCAL_SCRIPT.format(probe=f"http://127.0.0.1:{closed.getsockname()[1]}")
        done = subprocess.run(
            [sys.executable, "-c", script],
            cwd=PROJECT_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        closed.close()
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["embedded"] is True
    assert result["status"] == 200
    assert result["after_close"] == "refused"  # the embedded server stopped with the session
    assert result["revoked"] is True
    assert "tkn_" not in done.stdout + done.stderr
    assert (tmp_path / "fresh" / "tui-server.log").exists()


LOCAL_SCRIPT = """
import json, httpx
from tui.local import local_session
session = local_session(probe_url={probe!r})
headers = {{"Authorization": "Bearer " + session.token}}
status = httpx.get(session.url + "/api/runs/", headers=headers, timeout=30).status_code
url, embedded = session.url, session.embedded
session.close()
try:
    after = httpx.get(url + "/api/runs/", headers=headers, timeout=5).status_code
except httpx.ConnectError:
    after = "refused"
from accounts.models import ApiToken
revoked = ApiToken.objects.get(pk=session.token_id).revoked_at is not None
print(json.dumps({{"embedded": embedded, "url": url, "status": status, "after_close": after,
                  "revoked": revoked}}))
"""
