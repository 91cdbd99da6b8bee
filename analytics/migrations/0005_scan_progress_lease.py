# Scan progress (tags listed and read), the running scan's lease (heartbeat) and delivery bookkeeping.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("analytics", "0004_registry_allow_internal"),
    ]

    operations = [
        migrations.AddField(
            model_name="scan",
            name="takeovers",
            field=models.PositiveSmallIntegerField(
                default=0, help_text="Times the scan was taken over from a worker that stopped."
            ),
        ),
        migrations.AddField(
            model_name="scan",
            name="enqueued_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="scan",
            name="lease_until",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="scan",
            name="tags_done",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="scan",
            name="tags_total",
            field=models.PositiveIntegerField(default=0),
        ),
    ]
