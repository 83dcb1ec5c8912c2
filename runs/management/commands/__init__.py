# Before any command module imports django_typer.management (whose import applies
# django-typer's patch): the patch then imports typer.rich_utils without rich.markdown
# and rich.traceback, which only markdown-mode help and pretty tracebacks use.
from runs import cli_typer

cli_typer.apply()
