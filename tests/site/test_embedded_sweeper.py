"""The lease rule in every mode: in embedded mode the web process executes stages, so it
sweeps for stages whose process died as a Celery worker does (issue 9 §1)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import threading, tekton_site.asgi; "
    "print(sorted(t.name for t in threading.enumerate() if t.name == 'tekton-sweeper'))"
)


@pytest.mark.parametrize(
    ("execution", "threads"), [("inline", "['tekton-sweeper']"), ("celery", "[]")]
)
def test_the_web_process_sweeps_stale_stages_only_in_embedded_mode(tmp_path, execution, threads):
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "tekton_site.settings",
        "TEKTON_DATA_DIR": str(tmp_path / "data"),  # its own SQLite: the sweep touches nothing
        "TEKTON_EXECUTION": execution,
        "CELERY_BROKER_URL": "redis://127.0.0.1:1/0",  # never dialled by an import
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == threads
