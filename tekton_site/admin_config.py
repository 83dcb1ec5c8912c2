"""The admin without its start-up cost: `AdminConfig` would import every app's admin.py
(and the services and forms they use) whenever Django sets up, for each manage.py
command and Celery worker. Here the admin modules are found when the URL configuration
is loaded (tekton_site/urls.py) or the admin's system checks run, the two things that
read the admin site's registry."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.apps import SimpleAdminConfig
from django.contrib.admin.checks import check_admin_app, check_dependencies
from django.core import checks


def admin_app_check(app_configs=None, **kwargs):
    # The checks run in no set order: the registry must be complete before they look.
    admin.autodiscover()
    return check_admin_app(app_configs, **kwargs)


class AdminConfig(SimpleAdminConfig):
    def ready(self) -> None:
        checks.register(check_dependencies, checks.Tags.admin)
        checks.register(admin_app_check, checks.Tags.admin)
