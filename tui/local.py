"""The local install for the terminal UI with no --url: a server already running on the
default address, or else the ASGI application served in this process on a free loopback
port. Either way the UI authenticates with a fresh token of a local staff user, revoked on
exit. The only module of `tui` that imports Django.

Why uvicorn in a thread: the embedded server must share this process (runs launched from
the UI execute in its background threads, as under `runserver`), start and stop on
command, and stay off the terminal that Textual owns. uvicorn's Server runs in any thread
(it installs signal handlers only in the main one), takes a socket already bound to port 0
(no race for a "free" port) and stops when told (`should_exit`). Daphne's Twisted reactor
is process-global and wants the main thread; a child process would need its own token
round trip and could outlive a crashed UI.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
USERNAME = "tekton-tui"
PROJECT_DIR = Path(__file__).resolve().parents[1]

logger = logging.getLogger("tekton.tui.local")


class LocalError(Exception):
    """The local install cannot be used; str() is one line for a person."""


def probe(url: str, timeout: float = 0.5) -> bool:
    """Whether a Tekton server answers /healthz at `url`."""
    try:
        response = httpx.get(url.rstrip("/") + "/healthz", timeout=timeout)
    except httpx.HTTPError:
        return False
    try:
        return response.status_code == 200 and response.json().get("status") == "ok"
    except ValueError:
        return False


def django_setup(log_path: Path | None = None) -> Path:
    """Set Django up for the local install (an embedded database migrated) and send every
    log line to a file under the data directory (returned): the terminal belongs to the UI."""
    if str(PROJECT_DIR) not in sys.path:
        sys.path.insert(0, str(PROJECT_DIR))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tekton_site.settings")
    import django
    from django.conf import settings

    try:
        django.setup()
    except Exception as exc:  # ImproperlyConfigured and friends: one line, not a traceback
        raise LocalError(f"the local install is not usable: {' '.join(str(exc).split())}") from None
    # Migrate before the ASGI module starts the embedded sweeper thread: on a new SQLite
    # file both connections switch it to WAL at once, and one of them fails "database is
    # locked" (a lock upgrade SQLite refuses at once rather than wait for).
    database_ready()
    try:
        # Importing the ASGI module sets Django up once more, logging included: do it
        # before the log handlers are moved, or they come back to the terminal.
        import tekton_site.asgi  # noqa: F401
    except Exception as exc:
        raise LocalError(f"the local install is not usable: {' '.join(str(exc).split())}") from None
    path = log_path or Path(settings.TEKTON_DATA_DIR) / "tui-server.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    _logs_to_file(path)
    return path


def _logs_to_file(path: Path) -> None:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    loggers = [logging.getLogger()] + [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    for each in loggers:
        for old in list(each.handlers):
            if isinstance(old, logging.StreamHandler) and not isinstance(old, logging.FileHandler):
                each.removeHandler(old)
    logging.getLogger().addHandler(handler)
    logging.captureWarnings(True)


def database_ready() -> None:
    """Apply pending migrations to the embedded SQLite database; refuse (one line) on any
    other database, whose migrations are its operator's call."""
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    try:
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Exception as exc:
        raise LocalError(f"cannot read the database: {' '.join(str(exc).split())}") from None
    if not pending:
        return
    if not settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        raise LocalError(
            f"the database has {len(pending)} unapplied migrations: run `manage.py migrate` first"
        )
    call_command("migrate", interactive=False, verbosity=0)


def token_new() -> tuple[int, str]:
    """A fresh token of the local staff user (created when missing, with no password)."""
    from django.contrib.auth import get_user_model

    from accounts.services import token_create

    user_model = get_user_model()
    user = user_model.objects.filter(username=USERNAME).first()
    if user is None:
        user = user_model(username=USERNAME, is_staff=True, is_active=True)
        user.set_unusable_password()
        user.save()
    elif not (user.is_staff and user.is_active):
        user.is_staff = True
        user.is_active = True
        user.save(update_fields=["is_staff", "is_active"])
    row, raw = token_create(user=user, name=f"terminal UI (pid {os.getpid()})")
    return row.pk, raw


def token_drop(token_id: int) -> None:
    from accounts.services import token_revoke

    token_revoke(token_id=token_id)


def runs_unfinished(run_ids: list[int]) -> list[int]:
    from runs.models import Run

    if not run_ids:
        return []
    return sorted(
        Run.objects.filter(pk__in=run_ids)
        .exclude(status__in=Run.FINISHED)
        .values_list("pk", flat=True)
    )


class EmbeddedServer:
    """tekton_site.asgi served by uvicorn in a daemon thread on 127.0.0.1, a free port."""

    def __init__(self) -> None:
        import uvicorn

        from tekton_site.asgi import application

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            application,
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            access_log=False,
            lifespan="off",
            ws="none",  # the UI uses SSE; the WebSocket routes need a browser
            http="h11",
            loop="asyncio",
            timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run,
            kwargs={"sockets": [self.sock]},
            name="tekton-tui-server",
            daemon=True,
        )

    def start(self, timeout: float = 30.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise LocalError("the embedded server stopped while starting: see its log")
            if time.monotonic() > deadline:
                raise LocalError(f"the embedded server did not start in {timeout:.0f} s")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


@dataclass
class LocalSession:
    """Where the UI talks to and what to clean up. `token` never appears in repr."""

    url: str
    token: str = field(repr=False)
    token_id: int
    embedded: bool
    inline: bool
    log_path: Path
    server: EmbeddedServer | None = field(default=None, repr=False)
    closed: bool = False

    def unfinished(self, run_ids: list[int]) -> list[int]:
        try:
            return runs_unfinished(run_ids)
        except Exception:  # the database went away: say nothing rather than guess
            return []

    def close(self) -> None:
        """Revoke the token, then stop the embedded server. Safe to call twice."""
        if self.closed:
            return
        self.closed = True
        try:
            token_drop(self.token_id)
        except Exception as exc:
            logger.warning("could not revoke the terminal UI's token: %s", exc)
        if self.server is not None:
            self.server.stop()


def local_session(*, url: str | None = None, probe_url: str = DEFAULT_URL) -> LocalSession:
    """A token for the local install and the server to use it with: `url` when given (a
    loopback server of this install), else the server answering at `probe_url`, else an
    embedded one. Raises LocalError with one line."""
    target = url or (probe_url if probe(probe_url) else None)
    log_path = django_setup()  # migrates an embedded database first
    from django.conf import settings

    token_id, token = token_new()
    server = None
    try:
        if target is None:
            server = EmbeddedServer()
            server.start()
            target = server.url
    except BaseException:
        token_drop(token_id)
        if server is not None:
            server.stop()
        raise
    return LocalSession(
        url=target,
        token=token,
        token_id=token_id,
        embedded=server is not None,
        inline=settings.TEKTON_EXECUTION == "inline",
        log_path=log_path,
        server=server,
    )
