"""typer's rich help without rich.markdown and rich.traceback at start-up (issue 7, §4).

django-typer's patch (run when `django_typer.management` is first imported) imports
`typer.rich_utils`, which imports `rich.markdown` (markdown-it-py, pygments) and
`rich.traceback` (rich.pretty, attrs) at its top: about 0.1 s of every `tekton` command.
typer uses them only for help in "markdown" markup mode (Tekton's commands use the
default, "rich") and for a pretty traceback. While the patch imports `typer.rich_utils`,
those two modules are stand-ins whose one class imports the real module when it is first
called or asked for anything; then the stand-ins leave `sys.modules`, so any later
`import rich.markdown` gets the real module. Help stays rich-formatted.

`apply()` runs before `django_typer.management` is imported (runs/management/commands/
__init__.py); tests/runs/test_cli_imports.py checks what a read command imports.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager

# (module, the one name typer.rich_utils imports from it)
DEFERRED = (("rich.markdown", "Markdown"), ("rich.traceback", "Traceback"))


def _stand_in(module: str, name: str) -> type:
    """A class that becomes `module.name` when used: calling it makes a real instance,
    its attributes (`Traceback.from_exception`) and isinstance() are the real class's."""

    def real() -> type:
        return getattr(importlib.import_module(module), name)

    class _Deferred(type):
        def __getattr__(cls, attr: str):
            return getattr(real(), attr)

        def __instancecheck__(cls, obj: object) -> bool:
            return isinstance(obj, real())

        def __subclasscheck__(cls, sub: type) -> bool:
            return issubclass(sub, real())

    def __new__(cls, *args, **kwargs):  # noqa: N807  a real instance, already initialised
        return real()(*args, **kwargs)

    return _Deferred(name, (), {"__new__": __new__, "__module__": module})


@contextmanager
def _stand_ins() -> Iterator[None]:
    placed: dict[str, types.ModuleType] = {}
    for module, name in DEFERRED:
        if module not in sys.modules:
            stub = types.ModuleType(module, f"stand-in for {module} (runs.cli_typer)")
            setattr(stub, name, _stand_in(module, name))
            placed[module] = sys.modules[module] = stub
    try:
        yield
    finally:
        for module, stub in placed.items():
            if sys.modules.get(module) is stub:
                del sys.modules[module]


def apply() -> None:
    """django-typer's patch, with typer.rich_utils importing the stand-ins."""
    from django_typer import patch

    if patch.PATCH_APPLIED:
        return
    with _stand_ins():
        patch.apply()
