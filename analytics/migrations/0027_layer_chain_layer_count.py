"""Each chain row gets its manifest's layer count, and the images derived from a base are read in order
from a partial index on (chain, layer_count, manifest) over the non-top rows.

Not atomic: the backfill commits one manifest id range at a time, so a large table (a million images,
about ten million chain rows) is never one transaction holding every row's lock, and the index is built
concurrently, without blocking the writers that insert chains meanwhile. Rows those writers insert
without the column (code older than this migration) keep the database default 0 until
`manage.py lineage --refresh` fills them (`chains_fill_layer_counts`).
"""

from django.db import migrations, models

BATCH = 50_000  # manifest ids per UPDATE (about 7-10 chain rows each)

# Idempotent: a rerun (or an interrupted run started again) skips rows already right.
FILL = """
UPDATE analytics_layerchain c SET layer_count = m.layer_count
FROM analytics_manifest m
WHERE m.id = c.manifest_id AND c.manifest_id >= %s AND c.manifest_id < %s AND c.layer_count <> m.layer_count
"""


def backfill(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT min(manifest_id), max(manifest_id) FROM analytics_layerchain")
        low, high = cursor.fetchone()
        if low is None:
            return
        for start in range(low, high + 1, BATCH):
            cursor.execute(FILL, [start, start + BATCH])


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("analytics", "0026_stale_base_still_tagged")]

    # Each step can be run again after an interruption: the column and the index are made only where
    # missing (an interrupted concurrent build leaves an invalid index, dropped first).
    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddField(
                    model_name="layerchain",
                    name="layer_count",
                    field=models.PositiveIntegerField(db_default=0),
                )
            ],
            database_operations=[
                migrations.RunSQL(
                    "ALTER TABLE analytics_layerchain ADD COLUMN IF NOT EXISTS layer_count integer "
                    "DEFAULT 0 NOT NULL CONSTRAINT analytics_layerchain_layer_count_check "
                    "CHECK (layer_count >= 0)",
                    "ALTER TABLE analytics_layerchain DROP COLUMN IF EXISTS layer_count",
                )
            ],
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop, elidable=True),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddIndex(
                    model_name="layerchain",
                    index=models.Index(
                        condition=models.Q(("is_top", False)),
                        fields=["chain", "layer_count", "manifest"],
                        name="layer_chain_derived",
                    ),
                )
            ],
            database_operations=[
                migrations.RunSQL(
                    [
                        "DROP INDEX CONCURRENTLY IF EXISTS layer_chain_derived",
                        "CREATE INDEX CONCURRENTLY layer_chain_derived ON analytics_layerchain "
                        "(chain, layer_count, manifest_id) WHERE NOT is_top",
                    ],
                    "DROP INDEX CONCURRENTLY IF EXISTS layer_chain_derived",
                )
            ],
        ),
    ]
