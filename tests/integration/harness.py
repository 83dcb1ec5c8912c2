"""Real-process machinery for the integration tests and the services-mode benchmarks.

Plain Python (no pytest import) so `bench/` can drive the same PostgreSQL database,
Redis prefix and Celery worker processes the tests use. Nothing here imports Django: the
code under test runs in subprocesses, exactly as a team deploys it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
from psycopg.rows import dict_row

from tests.support.pyvenv import venv_link

PROJECT_DIR = Path(__file__).resolve().parents[2]
MANAGE_PY = PROJECT_DIR / "manage.py"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/tekton"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"


STATIC_CACHE = PROJECT_DIR / "var" / "test-static"


def _static_sources_digest() -> str:
    # What the collected files depend on: our static files, the locked packages (whose
    # apps ship static files too) and the settings (storage, WhiteNoise options).
    digest = hashlib.sha256()
    for path in sorted((PROJECT_DIR / "static").rglob("*")):
        if path.is_file():
            st = path.stat()
            digest.update(
                f"{path.relative_to(PROJECT_DIR)}:{st.st_size}:{st.st_mtime_ns}\n".encode()
            )
    for name in ("uv.lock", "tekton_site/settings.py"):
        digest.update((PROJECT_DIR / name).read_bytes())
    return digest.hexdigest()[:16]


def static_root() -> Path:
    """A STATIC_ROOT with `collectstatic` run (hashed, compressed names, as deployed),
    shared by every test process and server of this checkout and collected again only when
    the static sources, the packages or the settings change. Safe for parallel runs: each
    collects into its own folder and renames it into place."""
    target = STATIC_CACHE / _static_sources_digest()
    if (target / "staticfiles.json").exists():
        return target
    STATIC_CACHE.mkdir(parents=True, exist_ok=True)
    scratch = STATIC_CACHE / f".{target.name}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_STRIPPED_PREFIXES) and k not in _STRIPPED_NAMES
    }
    env.update(TEKTON_STATIC_ROOT=str(scratch), TEKTON_DATA_DIR=str(scratch / "data"))
    proc = manage(["collectstatic", "--noinput", "-v0"], env=env, timeout=300)
    if proc.returncode != 0:
        shutil.rmtree(scratch, ignore_errors=True)
        raise RuntimeError(f"collectstatic failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    shutil.rmtree(scratch / "data", ignore_errors=True)
    try:
        scratch.rename(target)
    except OSError:  # another process got there first: theirs is the same
        shutil.rmtree(scratch, ignore_errors=True)
    for old in STATIC_CACHE.iterdir():
        # Folders of earlier sources, left a day ago or more.
        if (
            old != target
            and not old.name.startswith(".")
            and time.time() - old.stat().st_mtime > 86400
        ):
            shutil.rmtree(old, ignore_errors=True)
    return target


def services_database_url() -> str:
    """The PostgreSQL server the integration tests and benchmarks use (CI sets it)."""
    return os.environ.get("TEKTON_TEST_DATABASE_URL") or DEFAULT_DATABASE_URL


def services_redis_url() -> str:
    """The Redis the integration tests and benchmarks use (CI sets it)."""
    return os.environ.get("TEKTON_TEST_REDIS_URL") or DEFAULT_REDIS_URL


# Variables of the calling shell that would change what the subprocesses do; the
# subprocess environment is rebuilt from scratch for them.
_STRIPPED_PREFIXES = ("TEKTON_", "CELERY_", "DJANGO_")
_STRIPPED_NAMES = ("DATABASE_URL", "REDIS_URL", "MILVUS_URI")

T = TypeVar("T")


class ServiceUnavailable(RuntimeError):
    """PostgreSQL or Redis cannot be reached; the message says which and why."""


def database_url_with_name(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


def postgres_admin_conn(url: str) -> psycopg.Connection:
    """An autocommit connection to the server's maintenance database.

    The database named in the URL need not exist (CI names `tekton`, which nothing creates),
    so CREATE/DROP DATABASE go through `postgres`.
    """
    try:
        return psycopg.connect(
            database_url_with_name(url, "postgres"), autocommit=True, connect_timeout=3
        )
    except psycopg.Error as exc:
        raise ServiceUnavailable(f"PostgreSQL at {_safe_url(url)} is unreachable: {exc}") from exc


def redis_client(url: str) -> redis.Redis:
    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=10)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise ServiceUnavailable(f"Redis at {_safe_url(url)} is unreachable: {exc}") from exc
    return client


def _safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        creds, host = netloc.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        netloc = f"{user}:***@{host}" if ":" in creds else f"{user}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@dataclass
class Services:
    """One throwaway database, queue and Redis key prefix, plus the environment for
    subprocesses that use them. `close()` drops the database and deletes the keys."""

    database_url: str
    redis_url: str
    dbname: str
    queue: str
    redis_prefix: str
    data_dir: Path
    repo_root: Path
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        *,
        work_dir: Path,
        base_database_url: str | None = None,
        redis_url: str | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> Services:
        base_database_url = base_database_url or services_database_url()
        redis_url = redis_url or services_redis_url()
        token = uuid.uuid4().hex[:10]
        dbname = f"tekton_it_{token}"
        admin = postgres_admin_conn(base_database_url)
        redis_client(redis_url).close()
        with admin:
            admin.execute(f'CREATE DATABASE "{dbname}"')
        data_dir = work_dir / "data"
        repo_root = work_dir / "repos"
        data_dir.mkdir(parents=True, exist_ok=True)
        repo_root.mkdir(parents=True, exist_ok=True)
        services = cls(
            database_url=database_url_with_name(base_database_url, dbname),
            redis_url=redis_url,
            dbname=dbname,
            queue=f"tekton-it-{token}",
            redis_prefix=f"tekton_it_{token}:",
            data_dir=data_dir,
            repo_root=repo_root,
        )
        services.env = services.subprocess_env(extra_env)
        return services

    def subprocess_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(_STRIPPED_PREFIXES) and k not in _STRIPPED_NAMES
        }
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "tekton_site.settings",
                "DATABASE_URL": self.database_url,
                "REDIS_URL": self.redis_url,
                "DJANGO_SECRET_KEY": "tekton-integration-" + uuid.uuid4().hex,
                "TEKTON_QUEUE": self.queue,
                "TEKTON_REDIS_PREFIX": self.redis_prefix,
                "TEKTON_DATA_DIR": str(self.data_dir),
                "TEKTON_ARTIFACT_ROOT": str(self.data_dir / "artifacts"),
                "TEKTON_REPO_ROOTS": str(self.repo_root),
                "TEKTON_STATIC_ROOT": str(static_root()),
                "TEKTON_LLM_BACKEND": "offline",
                # No milvus-lite server per test run; retrieval has its own tests.
                "TEKTON_RETRIEVAL": os.environ.get("TEKTON_TEST_RETRIEVAL", "false"),
                "TEKTON_HEARTBEAT_SECONDS": "1",
                "TEKTON_STAGE_LEASE_SECONDS": "6",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(extra or {})
        return env

    def migrate(self) -> None:
        proc = manage(["migrate", "--noinput"], env=self.env, timeout=180)
        if proc.returncode != 0:
            raise RuntimeError(
                f"manage.py migrate into {self.dbname} failed ({proc.returncode}):\n"
                f"{proc.stdout}\n{proc.stderr}"
            )

    def connect(self) -> psycopg.Connection:
        """A fresh autocommit connection to the test database (rows as dicts)."""
        return psycopg.connect(self.database_url, autocommit=True, row_factory=dict_row)

    def query(self, sql: str, params: Iterable[Any] | Mapping[str, Any] = ()) -> list[dict]:
        with self.connect() as conn:
            return conn.execute(sql, params).fetchall()

    def close(self) -> None:
        try:
            client = redis_client(self.redis_url)
            keys = list(client.scan_iter(match=self.redis_prefix + "*", count=500))
            # kombu keeps its fanout/binding bookkeeping under the prefix too.
            if keys:
                client.delete(*keys)
            client.close()
        finally:
            with postgres_admin_conn(self.database_url) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (self.dbname,),
                )
                admin.execute(f'DROP DATABASE IF EXISTS "{self.dbname}"')


def manage(
    args: list[str], *, env: Mapping[str, str], timeout: float = 120, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`python manage.py ARGS` in the project directory; never raises on a non-zero exit."""
    return subprocess.run(
        [sys.executable, str(MANAGE_PY), *args],
        cwd=PROJECT_DIR,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
    )


class Worker:
    """A real `celery worker` process (its own process group) logging to a file."""

    def __init__(
        self,
        *,
        env: Mapping[str, str],
        queue: str,
        log_path: Path,
        concurrency: int = 8,
        extra_env: Mapping[str, str] | None = None,
    ):
        self.name = f"w{uuid.uuid4().hex[:8]}"
        self._terminated = False
        self.log_path = log_path
        full_env = dict(env)
        full_env.update(extra_env or {})
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tekton_site",
                "worker",
                "-Q",
                queue,
                "--pool",
                "threads",
                "-c",
                str(concurrency),
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-n",
                f"{self.name}@%h",
                "--loglevel",
                "INFO",
            ],
            cwd=PROJECT_DIR,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            # Its own group, so teardown reaches any child it started.
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(r"@\S+ ready\.", self.log_text()):
                return
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"celery worker exited with {self.proc.returncode} before it was ready:\n"
                    f"{self.log_text()[-4000:]}"
                )
            time.sleep(0.1)
        raise RuntimeError(
            f"celery worker not ready after {timeout:.0f} s:\n{self.log_text()[-4000:]}"
        )

    def vm_hwm_kb(self) -> int | None:
        """Peak resident set size of the worker process (VmHWM), in KiB."""
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        match = re.search(r"^VmHWM:\s+(\d+)\s+kB", status, re.M)
        return int(match.group(1)) if match else None

    def kill9(self) -> None:
        """SIGKILL the whole process group: no warm shutdown, no ack, no cleanup."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)

    def terminate(self) -> None:
        """SIGTERM (warm shutdown) without waiting: several workers shut down at once,
        then stop() waits for each (a warm shutdown takes a second or two)."""
        if self.proc.poll() is None and not self._terminated:
            self._terminated = True
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def stop(self, grace: float = 5.0) -> None:
        if self.proc.poll() is None:
            try:
                self.terminate()
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
            except ProcessLookupError:
                pass
        if self.proc.poll() is None:
            self.kill9()
        else:
            # The worker is gone; reap anything left in its group.
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self._log.close()


def make_git_repo(path: Path) -> Path:
    """A small real git repository with one commit: some code, a test and a README."""
    path.mkdir(parents=True)
    (path / "README.md").write_text("# sample\n\nA tiny service used by the integration tests.\n")
    (path / "app").mkdir()
    (path / "app" / "__init__.py").write_text("")
    (path / "app" / "core.py").write_text(
        "def add(a: int, b: int) -> int:\n    return a + b\n\n\n"
        "def greet(name: str) -> str:\n    return f'hello {name}'\n"
    )
    (path / "tests").mkdir()
    (path / "tests" / "test_core.py").write_text(
        "from app.core import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
    )
    git_env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Tekton IT",
        "GIT_AUTHOR_EMAIL": "it@example.invalid",
        "GIT_COMMITTER_NAME": "Tekton IT",
        "GIT_COMMITTER_EMAIL": "it@example.invalid",
    }
    for cmd in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "add", "-A"],
        ["git", "commit", "-q", "-m", "initial"],
    ):
        subprocess.run(cmd, cwd=path, env=git_env, check=True, capture_output=True)
    venv_link(path)  # its tests run in the sandbox with pytest, as a real project's would
    return path


def wait_for(
    predicate: Callable[[], T], *, timeout: float, interval: float = 0.1, what: str = "condition"
) -> T:
    """Poll until `predicate()` is truthy and return it; TimeoutError names `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()
