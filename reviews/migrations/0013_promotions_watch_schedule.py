"""The watch after a promotion (reviews.promotions_watch): an editable django-celery-beat row, every 10 minutes."""

from django.db import migrations

NAME = "Watch promotions"


def create_schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every, _ = IntervalSchedule.objects.get_or_create(every=10, period="minutes")
    PeriodicTask.objects.get_or_create(
        name=NAME,
        defaults={
            "task": "reviews.promotions_watch",
            "interval": every,
            "description": "Compares each recently promoted model with the one it replaced (PROMOTION_WATCH_SECONDS).",
        },
    )


def delete_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("reviews", "0012_effectivetag_model_version"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]
