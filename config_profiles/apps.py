from django.apps import AppConfig


class ConfigProfilesConfig(AppConfig):
    name = "config_profiles"
    default_auto_field = "django.db.models.BigAutoField"
