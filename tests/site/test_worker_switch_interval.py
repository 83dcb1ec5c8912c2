"""A worker's GIL switch interval comes from TEKTON_WORKER_SWITCH_INTERVAL_MS (issue 14 §2)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _worker_init(tmp_path, value: str | None) -> subprocess.CompletedProcess:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TEKTON_", "DJANGO_")) and k not in ("DATABASE_URL", "REDIS_URL")
    }
    env.update(TEKTON_DATA_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="tekton_site.settings")
    if value is not None:
        env["TEKTON_WORKER_SWITCH_INTERVAL_MS"] = value
    code = (
        "import sys, django; django.setup(); before = sys.getswitchinterval()\n"
        "from celery.signals import worker_init\n"
        "import tekton_site.celery  # its worker_init receivers\n"
        "worker_init.send(sender=None)  # what `celery worker` sends as it starts\n"
        "print(before, sys.getswitchinterval())\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_a_starting_worker_takes_its_switch_interval_from_the_environment(tmp_path):
    done = _worker_init(tmp_path, "40")
    assert done.returncode == 0, done.stderr[-2000:]
    before, after = map(float, done.stdout.split()[-2:])
    assert before == pytest.approx(0.005) and after == pytest.approx(0.04)
    default = _worker_init(tmp_path, None)
    assert default.returncode == 0, default.stderr[-2000:]
    assert float(default.stdout.split()[-1]) == pytest.approx(0.025)


def test_a_bad_switch_interval_is_one_clear_line(tmp_path):
    for bad, says in (("fast", "must be a number, got 'fast'"), ("0", "above 0")):
        done = _worker_init(tmp_path, bad)
        assert done.returncode != 0
        assert "TEKTON_WORKER_SWITCH_INTERVAL_MS" in done.stderr and says in done.stderr
