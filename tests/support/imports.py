"""What a fresh interpreter imports: for tests that a module stays light (a run with no
hooks, inline execution) where this test process has long imported everything."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path


def modules_loaded_by(statement: str, watched: Iterable[str], *, data_dir: Path) -> list[str]:
    """The `watched` modules in sys.modules after django.setup() and `statement`, run in a
    new interpreter on embedded settings (no DATABASE_URL, `data_dir` for its files)."""
    names = sorted(watched)
    code = (
        f"import django, sys; django.setup(); {statement}; "
        f"print(','.join(m for m in {names!r} if m in sys.modules))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEKTON_", "DATABASE_URL"))}
    env.update(DJANGO_SETTINGS_MODULE="tekton_site.settings", TEKTON_DATA_DIR=str(data_dir))
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return [m for m in out.stdout.strip().split(",") if m]
