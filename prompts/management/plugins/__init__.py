"""django-typer plugins: the prompts app's subcommands of `tekton` (registered in
prompts.apps)."""
