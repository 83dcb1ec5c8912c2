"""`manage.py migrate` against a PostgreSQL database that does not exist: one line that
says so and how to create it, exit 1, no traceback."""

from __future__ import annotations

import os

import pytest

from tekton_site.db_errors import database_problem
from tests.integration.harness import (
    database_url_with_name,
    manage,
    postgres_admin_conn,
    services_database_url,
)


def test_a_missing_database_is_named_with_how_to_create_it():
    try:
        postgres_admin_conn(services_database_url()).close()
    except Exception as exc:  # no PostgreSQL here
        if os.environ.get("TEKTON_REQUIRE_SERVICES") == "1":
            raise
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    url = database_url_with_name(services_database_url(), "tekton_never_created_7f3a")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/tmp"),
        "DATABASE_URL": url,
        "DJANGO_SECRET_KEY": "x" * 50,
    }
    done = manage(["migrate", "--noinput"], env=env, timeout=120)
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert 'the database "tekton_never_created_7f3a" does not exist' in lines[0]
    assert "createdb" in lines[0] and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (
            'connection failed: FATAL:  password authentication failed for user "bob"',
            "refused user",
        ),
        (
            "connection to server at 127.0.0.1 port 5999 failed: Connection refused",
            "does not answer",
        ),
        ('FATAL:  role "bob" does not exist', "has no role 'bob'"),
    ],
)
def test_other_connection_problems_get_one_readable_line(error, says):
    settings = {"ENGINE": "django.db.backends.postgresql", "NAME": "t", "HOST": "db", "USER": "bob"}
    assert says in database_problem(settings, Exception(error))
