import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")

app = Celery("imagetagger")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Every worker checks the Runs' leases on its own timer (not a queued task that a broker restart could lose).
app.steps["worker"].add("catalog.tasks:RunLeaseCheck")
