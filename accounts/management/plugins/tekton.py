"""`manage.py tekton token create|list|revoke` and `manage.py tekton user-ensure`: API
tokens and dashboard logins, added to the tekton command group as a django-typer plugin.

django-typer imports this module when a tekton command is first made, so it imports
nothing heavier than the command itself; the services come in inside each subcommand.
"""

# No `from __future__ import annotations`: see runs/management/commands/tekton.py.

import os
import secrets
from typing import Annotated, Any

import typer
from rich.table import Table

# typer vendors its own click; its usage errors are these classes, not the click package's.
from typer._click.exceptions import UsageError

from runs.management.commands.tekton import Command, DebugOpt


def tokens_table(tokens: list[dict[str, Any]]) -> Table:
    table = Table(title="API tokens")
    for col in ("id", "user", "name", "prefix", "created", "last used", "revoked"):
        table.add_column(col)
    for t in tokens:
        table.add_row(
            *(
                str(t[k]) if t[k] is not None else "-"
                for k in (
                    "id",
                    "user",
                    "name",
                    "prefix",
                    "created_at",
                    "last_used_at",
                    "revoked_at",
                )
            )
        )
    return table


def _user(username: str):
    from accounts.selectors import user_by_username

    user = user_by_username(username)
    if user is None:
        raise UsageError(f"no user named {username!r}")
    return user


@Command.group(help="API tokens: create (shown once), list, revoke.")
def token(self) -> None:
    pass


@token.command(name="create", help="Create a token for USERNAME; the token is the last line.")
def token_create(
    self,
    username: Annotated[str, typer.Argument(help="An existing user.")],
    name: Annotated[str, typer.Option("--name", help="What the token is for.")] = "",
    debug: DebugOpt = False,
) -> None:
    from accounts.services import TokenError, token_create

    with self._errors(debug):
        try:
            token, raw = token_create(user=_user(username), name=name)
        except TokenError as err:
            raise UsageError(str(err)) from None
        self._out(f"token {token.pk} for {username} (prefix tkn_{token.prefix}); it is shown once:")
        self._out(raw)


@token.command(name="list", help="List tokens (never their secrets).")
def token_list(
    self,
    username: Annotated[str | None, typer.Option("--user", help="Only this user's.")] = None,
    debug: DebugOpt = False,
) -> None:
    from accounts.services import token_list

    with self._errors(debug):
        user = _user(username) if username is not None else None
        rows = [
            {
                "id": t.pk,
                "user": t.user.get_username(),
                "name": t.name,
                "prefix": f"tkn_{t.prefix}",
                "created_at": t.created_at.strftime("%Y-%m-%d %H:%M"),
                "last_used_at": t.last_used_at and t.last_used_at.strftime("%Y-%m-%d %H:%M"),
                "revoked_at": t.revoked_at and t.revoked_at.strftime("%Y-%m-%d %H:%M"),
            }
            for t in token_list(user=user)
        ]
        if not rows:
            self._out("no tokens")
            return
        self._console().print(tokens_table(rows))


@token.command(
    name="revoke", help="Revoke a token by id or by its display prefix (tkn_ and 8 characters)."
)
def token_revoke(
    self,
    which: Annotated[str, typer.Argument(help="Token id or prefix.")],
    debug: DebugOpt = False,
) -> None:
    from accounts.services import TokenError, token_revoke

    with self._errors(debug):
        try:
            if which.isdigit():
                token = token_revoke(token_id=int(which))
            else:
                token = token_revoke(prefix=which)
        except TokenError as err:
            raise UsageError(str(err)) from None
        self._out(f"token {token.pk} (tkn_{token.prefix}) revoked")


@Command.command(
    name="user-ensure",
    help="Make sure a staff login exists for the dashboard (its password is printed once).",
)
def user_ensure(
    self,
    username: Annotated[str, typer.Argument(help="The login name.")] = "admin",
    debug: DebugOpt = False,
) -> None:
    from accounts.services import staff_user_ensure

    with self._errors(debug):
        # From the environment when given, else generated and shown this one time.
        given = os.environ.get("TEKTON_ADMIN_PASSWORD")
        password = given or secrets.token_urlsafe(12)
        _, created = staff_user_ensure(username=username, password=password)
        if not created:
            self._out(
                f"login {username!r} exists (new password: manage.py changepassword {username})"
            )
        elif given:
            self._out(f"created login {username!r} with the password in TEKTON_ADMIN_PASSWORD")
        else:
            self._out(f"created login {username!r}, password: {password}  (shown once)")
