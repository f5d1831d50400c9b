import os

from celery import Celery

# The settings manage.py uses, so the README's `celery -A config worker` starts beside `bin/start`; production sets
# DJANGO_SETTINGS_MODULE itself (docker-compose.yml).
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("imagetagger")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Every worker checks the Runs' leases on its own timer (not a queued task that a broker restart could lose).
app.steps["worker"].add("catalog.tasks:RunLeaseCheck")
