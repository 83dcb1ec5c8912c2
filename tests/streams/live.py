"""A real ASGI server subprocess (daphne, or uvicorn) and small clients for it: shared by
the live-server tests and bench/streams.py. Plain Python, no pytest, no Django import."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from tests.integration.harness import PROJECT_DIR, manage


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_down_layers() -> dict:
    """CHANNEL_LAYERS of a Redis channel layer nothing answers (a Redis restarting): every
    call to it fails at once with a refused connection."""
    return {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [f"redis://127.0.0.1:{free_port()}/0"]},
        }
    }


SERVERS = ("daphne", "uvicorn")
# The production web process's flags (docs/deploy: the Procfile and tekton-web.service
# carry the same, a test holds them together): uvloop and httptools, WebSockets without
# per-message compression (compressing each event once per socket is what 1,000 sockets
# of a run cannot afford).
UVICORN_FLAGS = (
    "--loop", "uvloop", "--http", "httptools", "--ws", "websockets-sansio",
    "--ws-per-message-deflate", "false", "--proxy-headers", "--no-access-log",
)  # fmt: skip


def server_command(server: str, port: int) -> list[str]:
    """The command line of `server` serving tekton_site.asgi on 127.0.0.1:`port`: daphne
    as `manage.py runserver` runs it, or uvicorn as the production web process does."""
    app = "tekton_site.asgi:application"
    if server == "daphne":
        return [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), app]
    if server == "uvicorn":
        return [
            sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port),
            *UVICORN_FLAGS, app,
        ]  # fmt: skip
    raise ValueError(f"unknown server {server!r}: one of {', '.join(SERVERS)}")


class AsgiServer:
    """`daphne -b 127.0.0.1 -p PORT tekton_site.asgi:application` (or `server="uvicorn"`)
    in its own process group."""

    def __init__(self, *, env: Mapping[str, str], log_path: Path, server: str = "daphne"):
        self.server = server
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            server_command(server, self.port),
            cwd=PROJECT_DIR,
            env=dict(env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.server} exited with {self.proc.returncode}:\n{self.log_text()[-4000:]}"
                )
            try:
                if httpx.get(self.base_url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(
            f"{self.server} not ready after {timeout:.0f} s:\n{self.log_text()[-4000:]}"
        )

    def vm_hwm_kb(self) -> int | None:
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        except OSError:
            return None
        return None

    def stop(self, grace: float = 5.0) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=grace)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                pass
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
        self._log.close()


_TOKEN_SCRIPT = """
from django.contrib.auth import get_user_model
from accounts.services import token_create
user, _ = get_user_model().objects.get_or_create(username={username!r})
user.is_staff = {staff!r}
user.save()
print(token_create(user=user, name="live-tests")[1])
"""


def user_token(env: Mapping[str, str], username: str, *, staff: bool = False) -> str:
    """Create (or reuse) a user and return a fresh API token for it, via manage.py shell."""
    proc = manage(
        ["shell", "-c", _TOKEN_SCRIPT.format(username=username, staff=staff)], env=env, timeout=60
    )
    if proc.returncode != 0:
        raise RuntimeError(f"creating a token failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return proc.stdout.strip().splitlines()[-1]


class SseParser:
    """Incremental Server-Sent Events parser: feed lines, get (id, event, data) messages;
    comments are counted as heartbeats."""

    def __init__(self):
        self.heartbeats = 0
        self._fields: dict[str, str] = {}

    def feed(self, line: str) -> tuple[int, str, str] | None:
        if line == "":
            fields, self._fields = self._fields, {}
            if "id" in fields:
                return int(fields["id"]), fields.get("event", "message"), fields.get("data", "")
            return None
        if line.startswith(":"):
            self.heartbeats += 1
            return None
        name, _, value = line.partition(":")
        self._fields[name] = value[1:] if value.startswith(" ") else value
        return None
