"""`manage.py migrate`, saying in one line what is wrong when the database cannot be
reached, instead of a few hundred lines of traceback (the most common first mistake with
DATABASE_URL is a database that was never created)."""

from __future__ import annotations

from django.core.management.base import CommandError
from django.core.management.commands.migrate import Command as DjangoMigrate
from django.db import OperationalError, connections

from tekton_site.db import connect_probe
from tekton_site.db_errors import database_problem


class Command(DjangoMigrate):
    def handle(self, *args, **options):
        try:
            connect_probe(options.get("database") or "default")
            return super().handle(*args, **options)
        except OperationalError as exc:
            alias = options.get("database") or "default"
            problem = database_problem(connections[alias].settings_dict, exc)
            if options.get("traceback") or int(options.get("verbosity", 1)) > 2:
                raise
            raise CommandError(problem) from None
