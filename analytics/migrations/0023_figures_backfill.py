from django.db import migrations


def backfill(apps, schema_editor):
    """Existing registries get every maintained figure once, from the holdings; scans keep them after.

    Runs after the last migration that changes the maintained tables (0022 added the registries holding
    each digest), with the code that matches them. A migration that changes those tables later must move
    this step after itself, as this one moved 0015's.
    """
    from analytics.ingest.rebuild import figures_rebuild

    for registry_id in apps.get_model("analytics", "Registry").objects.values_list("id", flat=True):
        figures_rebuild(registry_id=registry_id)


class Migration(migrations.Migration):
    dependencies = [("analytics", "0022_list_orders_and_registries")]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
