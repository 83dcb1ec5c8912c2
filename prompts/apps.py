from django.apps import AppConfig


class PromptsConfig(AppConfig):
    name = "prompts"
    verbose_name = "Single prompts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # `tekton ask ...`, `tekton prompt`, `tekton memory ...` (django-typer plugins,
        # imported only when a tekton command is made).
        from django_typer.utils import register_command_plugins

        from prompts.management import plugins

        register_command_plugins(plugins)
