"""The `tekton` console command: exactly `manage.py tekton ARGS` (pyproject.toml
[project.scripts]), so `uv run tekton run --goal ...` works from the checkout."""

from __future__ import annotations

import os
import sys


def main() -> None:
    from tekton_site.startup import collector_for_start_up

    # argv[0] names the program in help and usage lines, as manage.py does.
    argv = ["manage.py", "tekton", *sys.argv[1:]]
    collector_for_start_up(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tekton_site.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(argv)


if __name__ == "__main__":
    main()
