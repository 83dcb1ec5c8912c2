"""Integration fixtures: a real PostgreSQL database, a Redis key prefix and Celery worker
processes, with the code under test always running in subprocesses.

Unreachable PostgreSQL or Redis skips these tests with the reason, except under
TEKTON_REQUIRE_SERVICES=1 (CI), where it fails them: never a silent skip in CI.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from tests.integration.harness import (
    Services,
    ServiceUnavailable,
    Worker,
    make_git_repo,
)

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Every test in this folder needs the real services, whether or not its module says so.
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)


def _unavailable(reason: str) -> None:
    if os.environ.get("TEKTON_REQUIRE_SERVICES") == "1":
        pytest.fail(f"TEKTON_REQUIRE_SERVICES=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """A fresh `tekton_it_<random>` database (migrated), a unique queue and Redis prefix."""
    try:
        svc = Services.create(
            work_dir=tmp_path_factory.mktemp("tekton-it"),
        )
    except ServiceUnavailable as exc:
        _unavailable(str(exc))
    try:
        svc.migrate()
        yield svc
    finally:
        svc.close()


@pytest.fixture(scope="session")
def it_env(services: Services) -> dict[str, str]:
    """The environment every subprocess of these tests gets (services mode, offline LLM)."""
    return services.env


@pytest.fixture
def git_repo(services: Services, request: pytest.FixtureRequest) -> Path:
    """A small real git repository inside TEKTON_REPO_ROOTS, one per test."""
    return make_git_repo(services.repo_root / f"{request.node.name}-{os.urandom(3).hex()}")


@pytest.fixture
def start_worker(services: Services, tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Start a Celery worker on the session's queue: `start_worker(extra_env={...})`.

    Waits until its log says ready (30 s); every worker started is stopped (and killed
    with its process group if it lingers) when the test ends.
    """
    workers: list[Worker] = []

    def start(extra_env: Mapping[str, str] | None = None, concurrency: int = 8) -> Worker:
        worker = Worker(
            env=services.env,
            queue=services.queue,
            log_path=tmp_path / f"worker-{len(workers) + 1}.log",
            concurrency=concurrency,
            extra_env=extra_env,
        )
        workers.append(worker)
        worker.wait_ready(timeout=30)
        return worker

    yield start
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.stop()
