"""The Celery application. Workers start with `celery -A tekton_site worker`."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tekton_site.settings")

app = Celery("tekton")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
