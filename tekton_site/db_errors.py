"""One readable line for a database that cannot be reached: which one, and what to do."""

from __future__ import annotations

from typing import Any


def database_problem(settings_dict: dict[str, Any], exc: BaseException) -> str:
    """What a person should read when connecting to the configured database failed."""
    engine = str(settings_dict.get("ENGINE", ""))
    name = settings_dict.get("NAME") or "?"
    text = " ".join(str(exc).split())
    if "postgresql" not in engine:
        return f"cannot open the database {name}: {text}"
    host = settings_dict.get("HOST") or "localhost"
    port = settings_dict.get("PORT") or "5432"
    user = settings_dict.get("USER") or "postgres"
    where = f"PostgreSQL at {host}:{port}"
    if "does not exist" in text and "database" in text:
        return (
            f'the database "{name}" does not exist on {where}; create it with '
            f'`createdb -h {host} -p {port} -U {user} {name}` (or psql: CREATE DATABASE "{name}";)'
        )
    if "password authentication failed" in text or "no password supplied" in text:
        return f"{where} refused user {user!r}: check the user and password in DATABASE_URL"
    if "role" in text and "does not exist" in text:
        return f"{where} has no role {user!r}: create it or use another user in DATABASE_URL"
    if "Connection refused" in text or "could not connect" in text or "timeout" in text:
        return f"{where} does not answer; is the server running and DATABASE_URL right?"
    return f"cannot connect to {where}: {text[:300]}"
