"""A run lives through its Redis and its PostgreSQL restarting under it: servers of the
test's own (tests/integration/throwaway.py), a real Celery worker, daphne serving the
run's live event stream to clients that would reconnect as browsers do (Last-Event-ID,
?after=) but need not: SSE and both WebSockets stay open through both restarts."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.sync.client import connect as ws_connect

from tests.integration.conftest import _unavailable
from tests.integration.harness import Services, Worker, make_git_repo, manage, wait_for
from tests.integration.test_celery_runs import (
    _assert_artifacts_once_and_intact,
    _assert_events_gapless,
    _events,
    _stages,
)
from tests.integration.throwaway import PostgresServer, RedisServer
from tests.streams.live import AsgiServer, SseParser

pytestmark = pytest.mark.integration

FINISHED = ("succeeded", "failed", "cancelled")


@pytest.fixture
def own(tmp_path: Path) -> Iterator[tuple[PostgresServer, RedisServer, Services]]:
    try:
        pg = PostgresServer()
    except (FileNotFoundError, RuntimeError) as exc:
        _unavailable(f"no throwaway PostgreSQL here: {exc}")
    redis_server = RedisServer(tmp_path)
    services = None
    try:
        services = Services.create(
            work_dir=tmp_path / "work", base_database_url=pg.url, redis_url=redis_server.url
        )
        services.migrate()
        yield pg, redis_server, services
    finally:
        if services is not None:
            try:
                services.close()
            except Exception:  # the servers go with everything in them
                pass
        redis_server.stop()
        pg.close()


_START = """
import json
from accounts.services import token_create
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from runs.services import run_create
user, _ = get_user_model().objects.get_or_create(username="restarts")
token = token_create(user=user, name="restarts")[1]
browser = Client()
browser.force_login(user)
session = browser.cookies[settings.SESSION_COOKIE_NAME].value
run = run_create(goal={goal!r}, repo_path={repo!r}, stage_to="code", by=user)
print(json.dumps({{"run": run.pk, "token": token, "session": session}}))
"""


FINAL = ("run.finished", "run.failed", "run.cancelled")


class Follower(threading.Thread):
    """A client that follows a run across cuts: `follow_once` reads one connection (from
    after the last seq it got) and returns True once the run is over; a cut is noted in
    `errors` and followed, 0.3 s later (a browser's retry), by the next connection."""

    ERRORS: tuple[type[BaseException], ...] = (OSError, TimeoutError)

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.seqs: list[int] = []
        self.connections = 0
        self.errors: list[str] = []
        self.done = threading.Event()

    @property
    def after(self) -> int:
        return self.seqs[-1] if self.seqs else 0

    def follow_once(self) -> bool:
        raise NotImplementedError

    def run(self) -> None:
        deadline = time.monotonic() + 180
        while not self.done.is_set() and time.monotonic() < deadline:
            try:
                if self.follow_once():
                    self.done.set()
                    return
            except self.ERRORS as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.3)


class SseFollower(Follower):
    """Follows /api/runs/ID/events as a browser's EventSource does: on a cut (or the
    server ending the stream) it reconnects with Last-Event-ID, until the final event."""

    ERRORS = (httpx.HTTPError, OSError)

    def __init__(self, base_url: str, run_id: int, token: str) -> None:
        super().__init__()
        self.url = f"{base_url}/api/runs/{run_id}/events"
        self.token = token

    def follow_once(self) -> bool:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "text/event-stream"}
        if self.seqs:
            headers["Last-Event-ID"] = str(self.after)
        with httpx.stream("GET", self.url, headers=headers, timeout=10) as answer:
            if answer.status_code == 204:
                return True
            answer.raise_for_status()
            self.connections += 1
            parser = SseParser()
            for line in answer.iter_lines():
                message = parser.feed(line)
                if message is None:
                    continue
                seq, kind, _ = message
                self.seqs.append(seq)
                if kind in FINAL:
                    return True
        return False


class WsFollower(Follower):
    """Follows ws/runs/ID/ as a page's socket does: on a close it reconnects with ?after=
    the last seq it got, until the final event."""

    ERRORS = (websockets.WebSocketException, OSError, TimeoutError)

    def __init__(self, ws_url: str, origin: str, run_id: int, token: str) -> None:
        super().__init__()
        self.url = f"{ws_url}/ws/runs/{run_id}/?token={token}"
        self.origin = origin

    def follow_once(self) -> bool:
        with ws_connect(
            f"{self.url}&after={self.after}", origin=self.origin, open_timeout=10
        ) as sock:
            self.connections += 1
            for text in sock:
                event = json.loads(text)
                self.seqs.append(event["seq"])
                if event["kind"] in FINAL:
                    return True
        return False


class UiFollower(Follower):
    """Follows ws/runs/ID/ui/ as the run page does (session cookie): every message carries
    the seq it reflects (#run-seq); on a close other than 1000 it reconnects after it."""

    ERRORS = (websockets.WebSocketException, OSError, TimeoutError)
    SEQ = re.compile(r'id="run-seq" data-seq="(\d+)"')

    def __init__(self, ws_url: str, origin: str, run_id: int, session: str) -> None:
        super().__init__()
        self.url = f"{ws_url}/ws/runs/{run_id}/ui/"
        self.origin = origin
        self.cookie = f"sessionid={session}"

    def follow_once(self) -> bool:
        with ws_connect(
            f"{self.url}?after={self.after}",
            origin=self.origin,
            additional_headers={"Cookie": self.cookie},
            open_timeout=10,
        ) as sock:
            self.connections += 1
            for text in sock:
                found = self.SEQ.search(text)
                if found:
                    self.seqs.append(int(found.group(1)))
            if sock.close_code == 1000:  # the run is over
                return True
            self.errors.append(f"closed {sock.close_code}")
        return False


def test_a_run_finishes_through_a_redis_restart_and_a_postgres_restart(own, tmp_path):
    pg, redis_server, services = own
    slow = {"TEKTON_OFFLINE_LATENCY_MS": "250"}
    worker = Worker(
        env=services.env, queue=services.queue, log_path=tmp_path / "worker.log", extra_env=slow
    )
    web = AsgiServer(env=services.env, log_path=tmp_path / "daphne.log")
    follower = ws_follower = ui_follower = None
    try:
        repo = make_git_repo(services.repo_root / f"restarts-{uuid.uuid4().hex[:6]}")
        web.wait_ready()
        worker.wait_ready()
        started = manage(
            ["shell", "-c", _START.format(goal="Validate greet's name", repo=str(repo))],
            env=services.env,
            timeout=60,
        )
        assert started.returncode == 0, started.stderr
        info = json.loads(started.stdout.strip().splitlines()[-1])
        run_id = info["run"]
        follower = SseFollower(web.base_url, run_id, info["token"])
        follower.start()
        ws_follower = WsFollower(web.ws_url, web.base_url, run_id, info["token"])
        ws_follower.start()
        ui_follower = UiFollower(web.ws_url, web.base_url, run_id, info["session"])
        ui_follower.start()

        def running(stage: str):
            return lambda: _stages(services, run_id)[stage]["status"] == "running"

        wait_for(running("research"), timeout=60, interval=0.05, what="research to run")
        redis_server.restart()  # comes back empty: queued messages and unacked ones are gone
        wait_for(running("code"), timeout=60, interval=0.1, what="code to run")
        time.sleep(0.3)  # inside its calls
        pg.restart()  # every connection of the worker and of daphne is cut
        ws_seen = len(ws_follower.seqs)

        run = wait_for(
            lambda: (
                (r := services.query("SELECT * FROM runs_run WHERE id = %s", (run_id,))[0])[
                    "status"
                ]
                in FINISHED
                and r
            ),
            timeout=120,
            interval=0.3,
            what="the run to finish",
        )
        follower.join(timeout=30)
        ws_follower.join(timeout=30)
        ui_follower.join(timeout=30)
        # The same worker process ran the run to its end: it reconnected, never stopped.
        assert worker.proc.poll() is None, worker.log_text()[-3000:]
        assert "Unrecoverable error" not in worker.log_text()
    finally:
        for live in (follower, ws_follower, ui_follower):
            if live is not None:
                live.done.set()
        worker.stop()
        web.stop()

    assert run["status"] == "succeeded", (run["reason"], worker.log_text()[-3000:])
    stages = _stages(services, run_id)
    assert {s["status"] for s in stages.values()} == {"succeeded"}, stages
    events = _events(services, run_id)
    _assert_events_gapless(events)
    kinds = [e["kind"] for e in events]
    assert kinds.count("run.finished") == 1 and kinds[-1] == "run.finished"
    finished = [e["stage"] for e in events if e["kind"] == "stage.finished"]
    assert sorted(finished) == sorted(stages), finished  # each stage finished once
    _assert_artifacts_once_and_intact(services, run_id)
    # The live view saw every event once, in order, across its reconnections.
    assert follower.seqs == [e["seq"] for e in events], (follower.seqs, follower.errors)
    assert ws_follower.seqs == [e["seq"] for e in events], (ws_follower.seqs, ws_follower.errors)
    # ... on one connection each: neither restart closed a stream (no 1011, no reconnect),
    # and the events after the PostgreSQL restart came on the socket that saw it.
    assert (follower.connections, follower.errors) == (1, []), follower.errors
    assert (ws_follower.connections, ws_follower.errors) == (1, []), ws_follower.errors
    assert 0 < ws_seen < len(events), (ws_seen, len(events))
    # The run page's socket too: one connection, closed with 1000 after the final event.
    assert (ui_follower.connections, ui_follower.errors) == (1, []), ui_follower.errors
    assert ui_follower.done.is_set() and ui_follower.seqs[-1] == events[-1]["seq"]
    assert ui_follower.seqs == sorted(ui_follower.seqs), ui_follower.seqs
    # The worker lived: a stage whose database went away under it was recorded by the
    # worker itself (or carried on), never left for the sweeper as if its worker had died.
    again = [e["payload"] for e in events if e["kind"] == "stage.retried"]
    assert not [p for p in again if "worker lost" in p["reason"]], again
    attempts = {name: s["attempt"] for name, s in stages.items()}
    print(f"\nSSE connections {follower.connections}, errors {follower.errors}, {attempts} {again}")
    print(f"WebSocket connections {ws_follower.connections}, errors {ws_follower.errors}")
    print(f"UI socket connections {ui_follower.connections}, errors {ui_follower.errors}")
