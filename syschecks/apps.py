from django.apps import AppConfig


class SyschecksConfig(AppConfig):
    name = "syschecks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # `manage.py tekton check` (a django-typer plugin, imported only when a tekton
        # command is made).
        from django_typer.utils import register_command_plugins

        from syschecks.management import plugins

        register_command_plugins(plugins)
