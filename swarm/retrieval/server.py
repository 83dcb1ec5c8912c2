"""The on-demand milvus-lite server of an installation without MILVUS_URI.

Milvus Lite lets one process open a data directory, and the dashboard and a `tekton run`
run side by side. So every process talks to one `milvus-lite server` subprocess: the first
that needs it starts it, under an exclusive lock on `server.lock`, and records its pid and
port in `server.json`; the others find it there. It runs in its own session, so it outlives
whoever started it, until `local_server_stop` (or a person) ends it.

Layout of `data_dir`: `db/` (milvus-lite's own data, with its own LOCK), `server.lock`,
`server.json`, `server.log` (the server's output).

By hand, the same server is `milvus-lite server --data-dir DATA_DIR/db --port 19530`, with
MILVUS_URI=http://127.0.0.1:19530 for every Tekton process.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from swarm.retrieval.errors import RetrievalUnavailable

logger = logging.getLogger("tekton.swarm.retrieval.server")

START_TIMEOUT_S = 60.0
_ours: dict[int, subprocess.Popen[bytes]] = {}  # servers this process started, to reap them


@dataclass(frozen=True)
class LocalServer:
    pid: int
    port: int
    data_dir: str

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _paths(data_dir: Path) -> tuple[Path, Path, Path, Path]:
    return (
        data_dir / "db",
        data_dir / "server.lock",
        data_dir / "server.json",
        data_dir / "server.log",
    )


@contextlib.contextmanager
def _locked(lock_path: Path, timeout_s: float) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as fh:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RetrievalUnavailable(
                        f"another process has held {lock_path} for over {timeout_s:.0f}s"
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _is_running(pid: int) -> bool:
    child = _ours.get(pid)
    if child is not None:
        return child.poll() is None  # poll() also reaps it once it has exited
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path(f"/proc/{pid}")
    if proc.exists():
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            return False
        # A zombie, or a pid the kernel gave to some other program since.
        return state != "Z" and b"milvus_lite" in cmdline
    return True


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _read_state(state_path: Path) -> LocalServer | None:
    try:
        raw = json.loads(state_path.read_text())
        return LocalServer(
            pid=int(raw["pid"]), port=int(raw["port"]), data_dir=str(raw["data_dir"])
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def local_server_info(data_dir: str | Path) -> LocalServer | None:
    """The server recorded for `data_dir` when it is running and answering, else None."""
    _, _, state_path, _ = _paths(Path(data_dir))
    server = _read_state(state_path)
    if server is not None and _is_running(server.pid) and _answers(server.port):
        return server
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _log_tail(log_path: Path, start: int) -> str:
    try:
        with open(log_path, "rb") as fh:
            fh.seek(start)
            return fh.read().decode("utf-8", "replace")[-4000:]
    except OSError:
        return ""


def _start(db_dir: Path, log_path: Path, timeout_s: float) -> LocalServer:
    for _attempt in range(3):
        port = _free_port()
        offset = log_path.stat().st_size if log_path.exists() else 0
        with open(log_path, "ab") as log:
            child = subprocess.Popen(
                [
                    sys.executable, "-m", "milvus_lite", "server",
                    "--data-dir", str(db_dir), "--host", "127.0.0.1", "--port", str(port),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives the process that started it
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        _ours[child.pid] = child
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if child.poll() is not None:
                break
            if _answers(port):
                logger.info("started milvus-lite server pid %s on port %s", child.pid, port)
                return LocalServer(pid=child.pid, port=port, data_dir=str(db_dir.parent))
            time.sleep(0.1)
        else:
            child.kill()
            child.wait()
            raise RetrievalUnavailable(
                f"milvus-lite server did not answer within {timeout_s:.0f}s (see {log_path})"
            )
        tail = _log_tail(log_path, offset)
        if "DataDirLocked" in tail or "LOCK" in tail:
            raise RetrievalUnavailable(
                f"{db_dir} is open in another process (a milvus-lite server started by hand?"
                " point MILVUS_URI at it)"
            )
        if "bind" not in tail.lower():
            last = (tail.strip().splitlines() or ["no output"])[-1]
            raise RetrievalUnavailable(f"milvus-lite server exited at start: {last[:300]}")
        # Someone took the port between choosing and binding it: choose again.
    raise RetrievalUnavailable("milvus-lite server could not bind a port on 127.0.0.1")


def local_server_ensure(data_dir: str | Path, *, timeout_s: float = START_TIMEOUT_S) -> str:
    """The URI of the milvus-lite server for `data_dir`, started now if none is running.
    Safe from any number of processes at once: one server per data directory. Raises
    RetrievalUnavailable when it cannot be started."""
    data_dir = Path(data_dir).resolve()
    db_dir, lock_path, state_path, log_path = _paths(data_dir)
    running = local_server_info(data_dir)
    if running is not None:
        return running.uri
    with _locked(lock_path, timeout_s):
        running = local_server_info(data_dir)  # started by another process while we waited
        if running is not None:
            return running.uri
        db_dir.mkdir(parents=True, exist_ok=True)
        server = _start(db_dir, log_path, timeout_s)
        tmp = state_path.with_suffix(".tmp")
        tmp.write_text(
            json.dumps({"pid": server.pid, "port": server.port, "data_dir": server.data_dir})
        )
        tmp.replace(state_path)
        return server.uri


def _wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _is_running(pid):
            return True
        time.sleep(0.05)
    return not _is_running(pid)


def local_server_stop(data_dir: str | Path, *, timeout_s: float = 15.0) -> bool:
    """Stop the server recorded for `data_dir`; True when one was running. SIGINT first
    (milvus-lite closes its data cleanly on it), then SIGTERM, then SIGKILL."""
    data_dir = Path(data_dir).resolve()
    _, lock_path, state_path, _ = _paths(data_dir)
    with _locked(lock_path, timeout_s):
        server = _read_state(state_path)
        state_path.unlink(missing_ok=True)
        if server is None or not _is_running(server.pid):
            return False
        for sig, wait in ((signal.SIGINT, timeout_s), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(server.pid, sig)
            if _wait_gone(server.pid, wait):
                break
        child = _ours.pop(server.pid, None)
        if child is not None:
            child.wait(timeout=1)
        return True
