# The Celery app lives in tekton_site.celery: `celery -A tekton_site` finds it there, and
# runs.dispatch loads it before queueing a task. It is not imported here, so commands
# that never queue a task do not pay for importing Celery.
