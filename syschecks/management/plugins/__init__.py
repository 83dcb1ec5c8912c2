"""django-typer plugins: syschecks' subcommands of other apps' commands (registered in
syschecks.apps)."""
