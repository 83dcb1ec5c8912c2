"""A real ASGI server (Daphne's runserver) in embedded mode and headless Debian Chromium
driven by Playwright.

The server is a subprocess with its own data directory (SQLite, migrated), the offline
LLM backend with a small latency so the timeline visibly moves, and stages executed in a
background thread of the server process. Without /usr/bin/chromium the tests skip, saying
why, except under TEKTON_REQUIRE_SERVICES=1 (CI), where that is a failure.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.integration.harness import static_root
from tests.support.pyvenv import venv_link

PROJECT_DIR = Path(__file__).resolve().parents[2]
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
]
USERNAME = "ada"
PASSWORD = "browser-tests-only-pw"
# The README's pictures are refreshed with TEKTON_SCREENSHOTS=docs (`TEKTON_SCREENSHOTS=docs
# ./scripts/test.sh tests/browser`); an ordinary run writes them to a temporary folder so
# the tests never edit the checkout.
SCREENSHOTS = (
    PROJECT_DIR / "docs" / "screenshots"
    if os.environ.get("TEKTON_SCREENSHOTS") == "docs"
    else Path(tempfile.gettempdir()) / "tekton-screenshots"
)
# Playwright's sync API runs an event loop in this thread; pytest-django's guard would
# otherwise refuse the (unused) database access checks of shared fixtures.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TEKTON_", "DJANGO_", "CELERY_"))
        and k not in ("DATABASE_URL", "REDIS_URL", "MILVUS_URI")
    }
    env.update(extra)
    return env


def _git(path: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=Tekton", "-c", "user.email=tekton@example.invalid", *args],
        cwd=path,
        check=True,
        capture_output=True,
    )


@dataclass
class LiveServer:
    base_url: str
    repo: Path
    data_dir: Path
    proc: subprocess.Popen
    log_path: Path
    env: dict[str, str]

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/apt-packages.txt)"
        if os.environ.get("TEKTON_REQUIRE_SERVICES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return str(CHROMIUM)


@pytest.fixture(scope="session")
def tekton_server(tmp_path_factory, chromium_path) -> Iterator[LiveServer]:
    yield from serve(tmp_path_factory.mktemp("browser"), latency_ms=30)


@pytest.fixture(scope="module")
def slow_server(tekton_server) -> Iterator[LiveServer]:
    """A second server process on the same data (database, user, repository) whose
    offline model takes 1.2 s a call, streamed in pieces, so a page can watch an agent's
    text grow before the call ends. Runs launched through it execute in it."""
    env = {**tekton_server.env, "TEKTON_OFFLINE_LATENCY_MS": "1200"}
    log_path = tekton_server.log_path.with_name("slow-server.log")
    yield from _runserver(env, tekton_server.repo, tekton_server.data_dir, log_path)


def serve(root: Path, *, latency_ms: int) -> Iterator[LiveServer]:
    repo = root / "repos" / "shop"
    (repo / "src").mkdir(parents=True)
    (repo / "tests").mkdir()
    (repo / "README.md").write_text("# Shop\n\nA small web shop.\n")
    (repo / "src" / "app.py").write_text("def total(prices):\n    return sum(prices)\n")
    (repo / "tests" / "test_app.py").write_text(
        "from src.app import total\n\n\ndef test_total():\n    assert total([1, 2]) == 3\n"
    )
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "Initial shop")
    venv_link(repo)  # its tests run in the sandbox with pytest, as a real project's would
    (repo / "src" / "app.py").write_text("def total(prices):\n    return round(sum(prices), 2)\n")
    yield from serve_repo(root, repo, latency_ms=latency_ms)


def serve_repo(root: Path, repo: Path, *, latency_ms: int, **extra: str) -> Iterator[LiveServer]:
    """A migrated data directory under `root` with user ada, and the server over it;
    `repo`'s folder is TEKTON_REPO_ROOTS; `extra` adds to (or overrides) the environment."""
    data = root / "data"
    env = _clean_env(
        TEKTON_DATA_DIR=str(data),
        TEKTON_RETRIEVAL="false",  # no milvus-lite server per page test
        TEKTON_STATIC_ROOT=str(static_root()),
        # Webhooks can be created (the key) to a receiver on loopback (allowed here only).
        TEKTON_WEBHOOK_KEY="qd1RY2ayYEO8yFVrKZPe9gLzCtwq2Mvo2jTYwaXvhmw=",
        TEKTON_WEBHOOK_ALLOW_PRIVATE="true",
        TEKTON_REPO_ROOTS=str(repo.parent),
        TEKTON_LLM_BACKEND="offline",
        TEKTON_OFFLINE_LATENCY_MS=str(latency_ms),
        TEKTON_EXECUTION="inline",
        TEKTON_INLINE_THREADS="true",
        DJANGO_ALLOW_ASYNC_UNSAFE="true",
    )
    env.update(extra)
    manage = [sys.executable, str(PROJECT_DIR / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], cwd=PROJECT_DIR, env=env, check=True)
    subprocess.run(
        [
            *manage,
            "shell",
            "-c",
            "from django.contrib.auth import get_user_model as g; "
            f"g().objects.create_user({USERNAME!r}, password={PASSWORD!r})",
        ],
        cwd=PROJECT_DIR,
        env=env,
        check=True,
    )
    yield from _runserver(env, repo, data, root / "server.log")


def _runserver(env: dict[str, str], repo: Path, data: Path, log_path: Path) -> Iterator[LiveServer]:
    manage = [sys.executable, str(PROJECT_DIR / "manage.py")]
    port = _free_port()
    log = open(log_path, "wb")  # noqa: SIM115 - closed below
    # runserver (ASGI: HTTP + WebSocket) without --insecure: WhiteNoise serves the static
    # files, from the collected, hashed names, as under a production server.
    proc = subprocess.Popen(
        [*manage, "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=PROJECT_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = LiveServer(f"http://127.0.0.1:{port}", repo, data, proc, log_path, env)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited:\n{server.log_tail()}")
            try:
                if httpx.get(server.base_url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start:\n{server.log_tail()}")
            time.sleep(0.1)
        yield server
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.fixture(scope="module")
def browser(chromium_path):
    # Module scope, not session: while sync_playwright() is open its event loop counts as
    # running in this thread, and every later asyncio.run() in the session would fail.
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium_path, args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, tekton_server):
    """A fresh, logged-out page at 1280 x 900 that fails the test on any page error."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # A Content-Security-Policy violation (or any script error) shows up here.
    # With where it happened (a CSP report names no element), to find a rare one later.
    page.on(
        "console",
        lambda msg: (
            errors.append(f"{msg.text} (at {msg.location}, page {page.url})")
            if msg.type == "error"
            else None
        ),
    )
    page.on("dialog", lambda dialog: errors.append(f"dialog: {dialog.message}") or dialog.dismiss())
    page.errors = errors
    yield page
    context.close()
    assert errors == [], f"errors in the page: {errors}"


def login(page, tekton_server: LiveServer) -> None:
    page.goto(tekton_server.base_url + "/")
    page.get_by_label("Username").fill(USERNAME)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(tekton_server.base_url + "/")


def launcher_open(page):
    """The dashboard's launcher form, its card opened first as a person does (it starts
    closed once there are runs, as there are after another test used the server)."""
    launcher = page.locator("#new-run")
    if launcher.get_attribute("open") is None:
        launcher.locator("summary").click()
    return page.locator("#launcher")


def launch_run(
    page, server: LiveServer, goal: str, *, stage_from: str = "", stage_to: str = ""
) -> int:
    """Launch a run from the dashboard's launcher, as a person does; its id, once its
    page has opened."""
    page.goto(server.base_url + "/")
    form = launcher_open(page)
    form.get_by_label("Goal").fill(goal)
    form.get_by_label("Repository").fill(str(server.repo))
    if stage_from:
        form.get_by_label("From stage").select_option(stage_from)
    if stage_to:
        form.get_by_label("To stage").select_option(stage_to)
    page.get_by_role("button", name="Launch run").click()
    page.wait_for_url(re.compile(r"/runs/\d+/$"))
    return int(page.url.split("?")[0].rstrip("/").rsplit("/", 1)[1])


def screenshot(page, name: str, full_page: bool = True) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
