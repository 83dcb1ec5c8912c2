"""The small repository `scripts/up.sh` points the first run at: a Python package with a
few tests of its own, so the first run's test stage takes seconds, not the minutes of
Tekton's own suite.

    python -m tekton_site.demo_repo [PATH]   # creates it (once) and prints its path

Its `.venv` links to the interpreter environment that runs this module (Tekton's own,
which has pytest and coverage), so the run's sandbox finds a test runner without a
download.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# As tekton_site/settings.py reads it, without loading Django for a one-shot script.
DATA_DIR = Path(os.environ.get("TEKTON_DATA_DIR") or Path(__file__).resolve().parent.parent / "var")

FILES = {
    "README.md": (
        "# shop\n\nA tiny order-total library: the repository Tekton's first run works on.\n\n"
        "Run its tests with `python -m pytest -q`.\n"
    ),
    "pyproject.toml": (
        '[project]\nname = "shop"\nversion = "0.1.0"\nrequires-python = ">=3.11"\n\n'
        '[tool.pytest.ini_options]\ntestpaths = ["tests"]\npythonpath = ["."]\n'
        # Tekton's environment runs these tests: its pytest-django plugin is not for them.
        'addopts = "-p no:django"\n'
    ),
    ".gitignore": ".venv\n__pycache__/\n.pytest_cache/\n.coverage\n",
    "shop/__init__.py": '"""Order totals."""\n',
    "shop/orders.py": (
        '"""Order lines and their total, in cents (no floats for money)."""\n\n\n'
        "def line_total(quantity: int, unit_cents: int) -> int:\n"
        "    if quantity < 0 or unit_cents < 0:\n"
        '        raise ValueError("quantity and price must not be negative")\n'
        "    return quantity * unit_cents\n\n\n"
        "def order_total(lines: list[tuple[int, int]], discount_percent: int = 0) -> int:\n"
        "    if not 0 <= discount_percent <= 100:\n"
        '        raise ValueError("discount must be between 0 and 100 percent")\n'
        "    subtotal = sum(line_total(q, c) for q, c in lines)\n"
        "    return subtotal - subtotal * discount_percent // 100\n"
    ),
    "tests/test_orders.py": (
        "import pytest\n\nfrom shop.orders import line_total, order_total\n\n\n"
        "def test_line_total_multiplies():\n    assert line_total(3, 250) == 750\n\n\n"
        "def test_order_total_sums_lines():\n    assert order_total([(1, 100), (2, 50)]) == 200\n\n\n"
        "def test_discount_is_taken_off():\n    assert order_total([(4, 100)], 25) == 300\n\n\n"
        "def test_negative_quantity_is_refused():\n"
        "    with pytest.raises(ValueError):\n        line_total(-1, 100)\n"
    ),
}


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=Tekton", "-c", "user.email=tekton@localhost", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        timeout=30,
    )


def demo_repo_ensure(path: Path, *, venv: Path | None = None) -> Path:
    """Create the demo repository at `path` unless it is already one; return its path.
    A folder that exists and is not a git repository is left alone (ValueError)."""
    path = path.expanduser().resolve()
    if (path / ".git").exists():
        return path
    if path.exists() and any(path.iterdir()):
        raise ValueError(f"{path} exists and is not the demo repository; choose another path")
    for name, text in FILES.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    venv = venv if venv is not None else Path(sys.prefix)
    (path / ".venv").symlink_to(venv.resolve(), target_is_directory=True)
    _git(path, "init", "-q", "-b", "main")
    _git(path, "add", "-A")
    _git(path, "commit", "-q", "-m", "shop: order totals with tests")
    return path


def main(argv: list[str]) -> int:
    target = Path(argv[0]) if argv else DATA_DIR / "demo-repo"
    try:
        print(demo_repo_ensure(target))
    except (ValueError, OSError, subprocess.SubprocessError) as exc:
        print(f"error: cannot create the demo repository: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
