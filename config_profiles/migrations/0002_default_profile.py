"""Create the default "diamond-v5" profile with the models of the earlier toolchain."""

from django.db import migrations

DEFAULT_NAME = "diamond-v5"
DEFAULT_MODEL = "anthropic/claude-opus-4.1"
STAGE_MODELS = {
    "default": DEFAULT_MODEL,
    "stages": {
        "plan": {"proponent": "openai/gpt-4o"},
        "research": {"proponent": "perplexity/llama-3.3-sonar-large-128k-online"},
        "code": {"proponent": "x-ai/grok-2-mini"},
    },
}
DESCRIPTION = (
    "The Diamond v5 defaults: anthropic/claude-opus-4.1 for every "
    "role, except the plan proponent (openai/gpt-4o), the research proponent "
    "(perplexity/llama-3.3-sonar-large-128k-online, a model that searches the web) and the "
    "code proponent (x-ai/grok-2-mini). An opening round plus 2 debate rounds; a stage passes "
    "with a 2/3 quorum weighted by each debater's self-confidence and a mediator confidence "
    "of at least 0.70. No consensus-free stages and no budgets (0 = unlimited). With no API "
    "key set every model is answered by the offline backend."
)


def create_default(apps, schema_editor):
    Profile = apps.get_model("config_profiles", "Profile")
    # get_or_create: a person may have created a profile with this name before migrating.
    Profile.objects.get_or_create(
        name=DEFAULT_NAME,
        defaults={
            "description": DESCRIPTION,
            "stage_models": STAGE_MODELS,
            "rounds": 2,
            "quorum": 2 / 3,
            "threshold": 0.70,
            "consensus_free": [],
            "budget_tokens": 0,
            "budget_cost_usd": 0,
            "artifact_root": "",
            "routes": [],
        },
    )


def delete_default(apps, schema_editor):
    apps.get_model("config_profiles", "Profile").objects.filter(name=DEFAULT_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [("config_profiles", "0001_initial")]

    operations = [migrations.RunPython(create_default, delete_default)]
