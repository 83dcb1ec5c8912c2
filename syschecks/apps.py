from django.apps import AppConfig


class SyschecksConfig(AppConfig):
    name = "syschecks"
    default_auto_field = "django.db.models.BigAutoField"
