"""Production settings come from the environment alone: `check --deploy` must pass."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _check_deploy(tmp_path, **extra: str) -> subprocess.CompletedProcess:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TEKTON_", "DJANGO_")) and k not in ("DATABASE_URL", "REDIS_URL")
    }
    env.update(TEKTON_DATA_DIR=str(tmp_path), **extra)
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_passes_with_production_settings(tmp_path):
    done = _check_deploy(
        tmp_path,
        DJANGO_SECRET_KEY="a-long-random-production-secret-" + "x" * 40,
        TEKTON_HTTPS="true",
        TEKTON_ALLOWED_HOSTS="tekton.example.com",
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_check_deploy_flags_plain_http(tmp_path):
    done = _check_deploy(tmp_path, DJANGO_SECRET_KEY="a-long-random-production-secret-" + "x" * 40)
    assert done.returncode != 0
    assert "SECURE_SSL_REDIRECT" in done.stdout + done.stderr
