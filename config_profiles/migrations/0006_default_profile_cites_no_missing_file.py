"""The default profile's description once cited REQUIREMENTS.md, a file the repository does
not have; 0002 was corrected for new installations, this corrects the ones migrated before
(only where the text is still the one 0002 wrote: an edited description is the team's)."""

from django.db import migrations

CITATION = " (REQUIREMENTS.md section 2)"


def citation_drop(apps, schema_editor):
    Profile = apps.get_model("config_profiles", "Profile")
    for profile in Profile.objects.filter(
        name="diamond-v5", description__startswith="The Diamond v5 defaults" + CITATION
    ):
        profile.description = profile.description.replace(CITATION, "", 1)
        profile.save(update_fields=["description"])


class Migration(migrations.Migration):
    dependencies = [("config_profiles", "0005_learned_capability")]

    operations = [migrations.RunPython(citation_drop, migrations.RunPython.noop)]
