"""The cyclic garbage collector during a command's start-up (manage.py, the `tekton`
console script). Standard library only: it runs before Django is imported.

Start-up builds some 700 modules' worth of long-lived objects and almost no garbage, yet
the collector walks them again and again, and all of them once more when the interpreter
exits: a tenth of a short command's CPU time (issue 7, §4). Registered first, the freeze
runs after every other exit handler, so the last collections skip what start-up made. A
`tekton` command also starts with the collector paused, and its Command.execute resumes
it before the subcommand does any work (runs/management/commands/tekton.py), so a run
followed for an hour collects as usual. tests/runs/test_cli_imports.py checks both.
"""

import atexit
import gc


def collector_for_start_up(argv: list[str]) -> None:
    """`argv` as manage.py gets it (`manage.py tekton runs`)."""
    atexit.register(gc.freeze)
    if argv[1:2] == ["tekton"]:
        gc.disable()
