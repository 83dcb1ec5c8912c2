"""Where `manage.py tekton` runs a run's stages: in a thread of its own process, or in a
detached `manage.py tekton execute RUN_ID` process that outlives it (--detach).

No command code here: the command (runs/management/commands/tekton.py) decides what to
print and which exit code to use.

The detached child and its parent share a one-line handshake on the child's stdout:
"ok" when the action it was asked for (approve, retry, resume) went through, or
"error: ..." when it was refused. After it the child's stdout joins its log, so the
parent may go away (and close the pipe) while the stages run on.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connections

from runs.models import Run
from runs.selectors import run_has_stage_running, run_status

POLL_SECONDS = 0.2
HANDSHAKE_OK = "ok"
HANDSHAKE_ERROR = "error: "
# drive() gives up after this many polls with nothing running and nothing ready.
IDLE_POLLS = 3


class OneLineFormatter(logging.Formatter):
    """A log record as one line for a person's terminal: the message and, for an error
    with an exception, its type and first line; the traceback is in the log file."""

    def __init__(self, log_file: Path):
        super().__init__("%(levelname)s %(message)s")
        self.log_file = log_file

    def format(self, record: logging.LogRecord) -> str:
        line = f"{record.levelname.lower()}: {record.getMessage()}"
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            first = (str(exc).strip().splitlines() or [""])[0]
            line += f": {type(exc).__name__}" + (f": {first}" if first else "")
            line += f" (traceback in {self.log_file})"
        return " ".join(line.split())


def cli_logging(debug: bool) -> Path:
    """Set up logging for a command a person typed: one line per problem on the terminal,
    every record in full (tracebacks included) in `<data dir>/logs/cli.log`; with
    `debug`, tracebacks on the terminal too. Returns the log file. Idempotent."""
    from swarm.redact import RedactingFilter

    log_file = Path(settings.TEKTON_DATA_DIR) / "logs" / "cli.log"
    root = logging.getLogger()
    if not any(getattr(h, "tekton_cli", False) for h in root.handlers):
        log_file.parent.mkdir(parents=True, exist_ok=True)
        to_file = logging.FileHandler(log_file, encoding="utf-8")
        to_file.tekton_cli = True  # type: ignore[attr-defined]
        to_file.addFilter(RedactingFilter())
        to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        to_file.setLevel(logging.INFO)
        root.addHandler(to_file)
    for handler in root.handlers:
        if type(handler) is logging.StreamHandler and not debug:
            handler.setFormatter(OneLineFormatter(log_file))
    return log_file


def is_inline() -> bool:
    """Embedded mode: this process runs the stages (celery mode: the workers do)."""
    return settings.TEKTON_EXECUTION == "inline"


def drive(run_id: int) -> None:
    """Run the run's stages in this thread until nothing here can move it on.

    run_inline returns when nothing is ready; a stage still running in another thread
    (a dispatcher thread, review beside threat) means more may become ready, so look again.
    """
    from runs.dispatch import run_inline  # Celery and the engine: only when stages run here

    idle = 0
    while True:
        run_inline(run_id)
        if run_status(run_id) not in (Run.Status.QUEUED, Run.Status.RUNNING):
            return
        if run_has_stage_running(run_id):
            idle = 0
        else:
            idle += 1
            if idle >= IDLE_POLLS:  # nothing running and nothing ready: this process cannot help
                return
        time.sleep(POLL_SECONDS)


class Worker(threading.Thread):
    """Runs `fn` in a daemon thread, keeps its exception for the main thread, and closes
    the thread's own database connections (Django opens one per thread)."""

    def __init__(self, fn: Callable[[], Any]):
        super().__init__(name="tekton-inline", daemon=True)
        self.fn = fn
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.fn()
        except BaseException as err:  # handed to the main thread, which reports it
            self.error = err
        finally:
            connections.close_all()


def log_path(run_id: int, what: str) -> Path:
    """The log file of a detached process (`what`: execute, approve, retry, resume)."""
    logs = Path(settings.TEKTON_DATA_DIR) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    return logs / f"run-{run_id}-{what}.log"


def execute_argv(run_id: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        str(Path(settings.BASE_DIR) / "manage.py"),
        "tekton",
        "execute",
        str(run_id),
        *extra,
    ]


def spawn_execute(run_id: int) -> None:
    """Start `manage.py tekton execute RUN_ID` in its own session, so the run goes on
    after this command (and its terminal) is gone. Its output goes to a log file."""
    with open(log_path(run_id, "execute"), "ab") as log:
        subprocess.Popen(
            execute_argv(run_id),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
        )


def detached_action(run_id: int, action: str, stage: str = "", note: str = "") -> str:
    """Inline mode, --detach on approve/retry/resume: the service dispatches the next
    stages in the calling process, so a detached child makes the call and runs them.
    Returns the child's handshake line ("ok", "error: ...", or "" when it stopped before
    saying either); the child goes on either way."""
    argv = execute_argv(run_id, "--action", action, "--stage", stage, "--note", note)
    with open(log_path(run_id, action), "ab") as log:
        child = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            start_new_session=True,
            close_fds=True,
            text=True,
        )
    assert child.stdout is not None
    first = child.stdout.readline().strip()
    child.stdout.close()
    return first


def handshake_ok() -> None:
    """The detached child's side: the action went through. From here on stdout goes to
    the log (stderr), so a closed pipe can never break the run."""
    print(HANDSHAKE_OK, flush=True)
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())


def handshake_error(message: str) -> None:
    """The detached child's side: the action was refused (`message`, already redacted)."""
    print(f"{HANDSHAKE_ERROR}{message}", flush=True)
