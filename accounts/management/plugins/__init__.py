"""django-typer plugins: accounts' subcommands of other apps' commands (registered in
accounts.apps)."""
