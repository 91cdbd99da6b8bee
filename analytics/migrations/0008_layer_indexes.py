from django.db import migrations


class Migration(migrations.Migration):
    """Indexes the scale paths walk in order (analytics.queries.layers): a layer's manifests by id."""

    dependencies = [("analytics", "0007_engines")]

    operations = [
        migrations.RunSQL(
            "CREATE INDEX IF NOT EXISTS manifest_layer_by_blob "
            "ON analytics_manifestlayer (blob_id, manifest_id, position)",
            "DROP INDEX IF EXISTS manifest_layer_by_blob",
        ),
        migrations.RunSQL(
            "CREATE INDEX IF NOT EXISTS repository_manifest_by_repo_present "
            "ON analytics_repositorymanifest (repository_id, manifest_id) WHERE present",
            "DROP INDEX IF EXISTS repository_manifest_by_repo_present",
        ),
    ]
