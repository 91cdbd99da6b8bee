import django.db.models.deletion
from django.db import migrations, models

# Each inserted statement's rows (a transition table) add their manifests' distinct blobs: the layers of
# ManifestLayer rows, the configs of Manifest rows. Manifests are immutable and never lose a layer, so
# inserts (and an upsert's updates) are all there is to follow.
TRIGGERS = """
CREATE FUNCTION analytics_manifestblob_layers() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO analytics_manifestblob (manifest_id, blob_id)
    SELECT DISTINCT manifest_id, blob_id FROM new_rows ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
CREATE FUNCTION analytics_manifestblob_configs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO analytics_manifestblob (manifest_id, blob_id)
    SELECT id, config_id FROM new_rows WHERE config_id IS NOT NULL ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER manifest_blob_layers AFTER INSERT ON analytics_manifestlayer
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION analytics_manifestblob_layers();
CREATE TRIGGER manifest_blob_configs AFTER INSERT ON analytics_manifest
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION analytics_manifestblob_configs();
CREATE TRIGGER manifest_blob_configs_update AFTER UPDATE ON analytics_manifest
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION analytics_manifestblob_configs();
"""

# the rows the manifests already have, sorted as the primary key so its index is built in order
BACKFILL = """
SET LOCAL work_mem = '256MB';
SET LOCAL enable_hashagg = off;  -- its estimate of the distinct pairs is far too low: it would spill
INSERT INTO analytics_manifestblob (manifest_id, blob_id)
SELECT DISTINCT manifest_id, blob_id FROM (
    SELECT manifest_id, blob_id FROM analytics_manifestlayer
    UNION ALL
    SELECT id, config_id FROM analytics_manifest WHERE config_id IS NOT NULL
) x
ORDER BY 1, 2;
"""

DROP = """
DROP TRIGGER manifest_blob_layers ON analytics_manifestlayer;
DROP TRIGGER manifest_blob_configs ON analytics_manifest;
DROP TRIGGER manifest_blob_configs_update ON analytics_manifest;
DROP FUNCTION analytics_manifestblob_layers();
DROP FUNCTION analytics_manifestblob_configs();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("analytics", "0034_tag_current_since"),
    ]

    operations = [
        migrations.CreateModel(
            name="ManifestBlob",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "manifest", "blob", blank=True, editable=False, primary_key=True, serialize=False
                    ),
                ),
                (
                    "blob",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="analytics.blob",
                    ),
                ),
                (
                    "manifest",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="analytics.manifest",
                    ),
                ),
            ],
        ),
        migrations.RunSQL(TRIGGERS + BACKFILL, DROP),
    ]
