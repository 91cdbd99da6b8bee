from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("analytics", "0028_registry_events"),
    ]

    operations = [
        migrations.AddField(
            model_name="registry",
            name="pulls_counted_since",
            field=models.DateTimeField(
                blank=True,
                help_text="Pulls are counted from this time on: the oldest event handed to pull counting.",
                null=True,
            ),
        ),
        # Pulls counted before the field existed: the oldest of them (events still stored are older or not).
        migrations.RunSQL(
            """
            UPDATE analytics_registry g SET pulls_counted_since = x.since
            FROM (
                SELECT r.registry_id, least(min(p.first_pulled_at), min(e.since)) AS since
                FROM analytics_repository r
                LEFT JOIN analytics_manifestpulls p ON p.repository_id = r.id
                LEFT JOIN (
                    SELECT registry_id, min(coalesce(occurred_at, received_at)) AS since
                    FROM analytics_registryevent WHERE applied_at IS NOT NULL GROUP BY registry_id
                ) e ON e.registry_id = r.registry_id
                GROUP BY r.registry_id
            ) x
            WHERE g.id = x.registry_id AND x.since IS NOT NULL
            """,
            migrations.RunSQL.noop,
        ),
    ]
