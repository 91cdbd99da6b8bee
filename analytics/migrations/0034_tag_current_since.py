from django.db import migrations, models

# Each tag's latest TagEvent to its current manifest's digest, else its first sight: the scan time the
# policies computed per query before. One grouped pass over the tags, their manifests and their events
# (hash joins), not a probe per tag; every row written once.
BACKFILL = """
UPDATE analytics_tag t SET current_since = coalesce(s.at, t.first_seen)
FROM (
    SELECT t.id, max(e.seen_at) AS at
    FROM analytics_tag t
    LEFT JOIN analytics_manifest m ON m.id = t.manifest_id
    LEFT JOIN analytics_tagevent e ON e.tag_id = t.id AND e.new_digest = m.digest
    GROUP BY t.id
) s
WHERE s.id = t.id
"""

HELP = (
    "When a scan first saw the tag at its current manifest: its creation, its last move or its return "
    "after removal (the time of its latest TagEvent with a new digest)."
)


class Migration(migrations.Migration):
    dependencies = [
        ("analytics", "0033_registry_event_no_registry_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="tag",
            name="current_since",
            field=models.DateTimeField(null=True, help_text=HELP),
        ),
        migrations.RunSQL(BACKFILL, migrations.RunSQL.noop),
        migrations.AlterField(
            model_name="tag",
            name="current_since",
            field=models.DateTimeField(help_text=HELP),
        ),
    ]
