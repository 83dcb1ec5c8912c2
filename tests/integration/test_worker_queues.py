"""A worker of another queue on the same broker is no worker for Tekton: creating a run
answers 503 naming the queue until a worker consumes it."""

from __future__ import annotations

import uuid

import pytest

from tests.integration.harness import Services, Worker, manage

pytestmark = pytest.mark.integration


def test_only_a_worker_of_tekton_s_queue_counts(services: Services, git_repo, tmp_path):
    other = Worker(
        env=services.env, queue=f"another-app-{uuid.uuid4().hex[:6]}", log_path=tmp_path / "o.log"
    )
    try:
        other.wait_ready(timeout=30)
        code = (
            "from runs.health import services_check\n"
            "from tekton_site.errors import ServiceUnavailable\n"
            "try:\n    services_check()\nexcept ServiceUnavailable as e:\n    print('DOWN', e)\n"
            "else:\n    print('UP')\n"
        )
        refused = manage(["shell", "-c", code], env=services.env, timeout=60)
        assert "\nDOWN " in "\n" + refused.stdout, refused.stdout + refused.stderr
        assert f"no Celery worker consumes the queue '{services.queue}'" in refused.stdout
        assert "1 other worker(s) answered, on other queues" in refused.stdout
        mine = Worker(env=services.env, queue=services.queue, log_path=tmp_path / "m.log")
        try:
            mine.wait_ready(timeout=30)
            accepted = manage(["shell", "-c", code], env=services.env, timeout=60)
            assert accepted.stdout.splitlines()[-1] == "UP", accepted.stdout + accepted.stderr
        finally:
            mine.stop()
    finally:
        other.stop()
