"""`manage.py runserver` is Daphne's: HTTP and WebSockets (ASGI) in one process.

Daphne's documented set-up puts "daphne" at the top of INSTALLED_APPS, and its AppConfig
imports Twisted and the whole server (about a second here) into every manage.py
command. Django lets the first app in INSTALLED_APPS that has a command of a name
override it, so this app (listed before django.contrib.staticfiles) provides Daphne's
runserver instead, and only `runserver` imports the server.
"""

from daphne.management.commands.runserver import Command

__all__ = ["Command"]
