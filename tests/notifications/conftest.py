"""Notification fixtures: a webhook key, a loopback receiver, fast retries."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography.fernet import Fernet

from tests.runs.fake_engine import FakeEngine


@pytest.fixture(autouse=True)
def hook_settings(settings):
    settings.TEKTON_WEBHOOK_KEYS = [Fernet.generate_key().decode()]
    # The receiver listens on loopback, which production refuses.
    settings.TEKTON_WEBHOOK_ALLOW_PRIVATE = True
    settings.TEKTON_WEBHOOK_RETRY_BASE_S = 0.01
    settings.TEKTON_WEBHOOK_MAX_ATTEMPTS = 4
    settings.TEKTON_WEBHOOK_PAUSE_AFTER = 3
    settings.TEKTON_WEBHOOK_TIMEOUT_S = 5
    settings.TEKTON_PUBLIC_URL = "https://tekton.example.com"
    return settings


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1: answers the next status of `answers` (then 200)."""

    port: int
    answers: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    redirect_to: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    box: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the http.server name
            rec = box["r"]
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            rec.received.append(Received(self.path, dict(self.headers.items()), body))
            code = rec.answers.pop(0) if rec.answers else 200
            self.send_response(code)
            if 300 <= code < 400:
                self.send_header("Location", rec.redirect_to or "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box["r"] = Receiver(port=server.server_address[1])
    # A short poll: shutdown() waits for it, 0.5 s a test by default.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    yield box["r"]
    server.shutdown()
    server.server_close()


@pytest.fixture
def fake_engine(monkeypatch):
    engine = FakeEngine()
    monkeypatch.setattr("runs.engine_bridge.stage_run", engine)
    return engine
