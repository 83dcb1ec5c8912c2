from django.apps import AppConfig


class ConfigProfilesConfig(AppConfig):
    name = "config_profiles"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # What one process learns of a model server, every process knows (and checks show).
        from config_profiles.capabilities import (
            capability_refusal_record,
            capability_refusals_load,
        )
        from swarm.providers.capabilities import DEFAULT_STORE

        DEFAULT_STORE.remember_with(
            on_refuse=capability_refusal_record, load=capability_refusals_load
        )
