from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "API accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # `manage.py tekton token ...` and `tekton user-ensure` (django-typer plugins,
        # imported only when a tekton command is made).
        from django_typer.utils import register_command_plugins

        from accounts.management import plugins

        register_command_plugins(plugins)
