from django.db import migrations


def backfill(apps, schema_editor):
    """Done by 0023_figures_backfill instead.

    A backfill here would run today's analytics.ingest.rebuild, whose SQL names tables that later
    migrations add; on a database upgraded from before 0022 it fails.
    """


class Migration(migrations.Migration):
    dependencies = [("analytics", "0014_build_history")]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
