"""A small virtualenv with pytest and coverage for the repositories the tests make.

Tekton runs a Python repository's tests with the repository's own `.venv` (mounted
read-only in the sandbox). Test repositories get a `.venv` link to this one: a real
virtualenv with just pytest and coverage at the versions this project locks, so a test
run inside the sandbox starts in a second (this project's own virtualenv loads a dozen
pytest plugins first). Made once per machine and versions, under the temp directory, with its bytecode compiled:
the sandbox mounts it read-only, so Python cannot cache what it compiles there, and
compiling pytest and coverage was half of every sandboxed test run's time.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

PACKAGES = ("pytest", "coverage")


def fixture_venv() -> Path:
    """The virtualenv's folder, created (under a lock) if missing."""
    pins = [f"{name}=={version(name)}" for name in PACKAGES]
    tag = "-".join([f"py{sys.version_info.major}{sys.version_info.minor}", *pins])
    root = Path(tempfile.gettempdir()) / f"tekton-fixture-venv-pyc-{tag.replace('==', '-')}"
    python = root / "bin" / "python"
    if python.exists() and (root / ".complete").exists():
        return root
    lock = root.with_suffix(".lock")
    with open(lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        if (root / ".complete").exists():
            return root
        shutil.rmtree(root, ignore_errors=True)
        uv = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([uv, "venv", "-q", "--python", base, str(root)], check=True)
        env = {**os.environ, "VIRTUAL_ENV": str(root)}
        install = [uv, "pip", "install", "-q", "--compile-bytecode", "--python", str(python)]
        installed = subprocess.run([*install, "--offline", *pins], env=env)
        if installed.returncode != 0:  # not in uv's cache yet: from the registry
            subprocess.run([*install, *pins], env=env, check=True)
        (root / ".complete").write_text("ok\n")
    return root


def venv_link(repo: Path) -> Path:
    """Give `repo` a `.venv` pointing at the fixture virtualenv, kept out of git status."""
    link = repo / ".venv"
    if not link.exists():
        link.symlink_to(fixture_venv(), target_is_directory=True)
    exclude = repo / ".git" / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    text = exclude.read_text() if exclude.exists() else ""
    if ".venv" not in text.split():
        exclude.write_text(text + ".venv\n")
    return link
