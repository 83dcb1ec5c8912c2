"""API tokens: create (the secret is returned once), list, revoke, and authenticate.

A token is "tkn_" followed by 32 random bytes, urlsafe base64. Only its sha256 is stored, so
a leaked database does not leak working tokens; the 8 characters after "tkn_" are kept as
a display prefix.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts.models import ApiToken

TOKEN_PREFIX = "tkn_"
# last_used_at is refreshed at most this often, so an API client does not write to the
# database on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class TokenError(ValueError):
    """A token operation cannot be done (unknown or ambiguous token, bad arguments)."""


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


@transaction.atomic
def token_create(*, user, name: str = "") -> tuple[ApiToken, str]:
    """Create a token for `user`; returns (row, raw token). The raw token is not stored
    anywhere: show it once. Raises TokenError for a missing or inactive user or a name over
    100 characters."""
    if user is None or not getattr(user, "pk", None):
        raise TokenError("a token needs an existing user")
    if not user.is_active:
        raise TokenError(f"user {user.get_username()!r} is inactive")
    name = (name or "").strip()
    if len(name) > 100:
        raise TokenError(f"the token name is {len(name)} characters; the limit is 100")
    secret = secrets.token_urlsafe(32)
    raw = f"{TOKEN_PREFIX}{secret}"
    token = ApiToken.objects.create(
        user=user, name=name, prefix=secret[:8], token_hash=token_hash(raw)
    )
    return token, raw


def token_list(*, user=None) -> QuerySet[ApiToken]:
    """Tokens, newest first, with their users; only `user`'s when given. Revoked ones are
    included (their revoked_at says so)."""
    tokens = ApiToken.objects.select_related("user")
    if user is not None:
        tokens = tokens.filter(user=user)
    return tokens


@transaction.atomic
def token_revoke(*, token_id: int | None = None, prefix: str | None = None) -> ApiToken:
    """Revoke one token, chosen by id or by its display prefix ("tkn_" optional). Revoking a
    revoked token changes nothing and returns it. Raises TokenError when none or several
    tokens match, or when neither (or both) of token_id and prefix is given."""
    if (token_id is None) == (prefix is None):
        raise TokenError("give exactly one of token_id or prefix")
    if token_id is not None:
        token = ApiToken.objects.select_for_update().filter(pk=token_id).first()
        if token is None:
            raise TokenError(f"no token with id {token_id}")
    else:
        wanted = prefix.strip().removeprefix(TOKEN_PREFIX).rstrip("…")
        if not wanted:
            raise TokenError("the token prefix is empty")
        matches = list(
            ApiToken.objects.select_for_update().filter(prefix__startswith=wanted[:8])[:2]
        )
        if not matches:
            raise TokenError(f"no token with prefix {TOKEN_PREFIX}{wanted[:8]}")
        if len(matches) > 1:
            raise TokenError(
                f"several tokens start with {TOKEN_PREFIX}{wanted[:8]}; revoke by id instead"
            )
        token = matches[0]
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


def token_authenticate(*, raw: str) -> ApiToken | None:
    """The active token whose secret is `raw` (its user active too), or None. Refreshes
    last_used_at at most once a minute."""
    if not raw.startswith(TOKEN_PREFIX) or len(raw) > 200:
        return None
    token = (
        ApiToken.objects.select_related("user")
        .filter(token_hash=token_hash(raw), revoked_at__isnull=True)
        .first()
    )
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
        ).update(last_used_at=now)
        token.last_used_at = now
    return token


@transaction.atomic
def staff_user_ensure(*, username: str, password: str) -> tuple[Any, bool]:
    """Make sure a login named `username` exists; returns (user, created). A new one is a
    staff superuser with `password`; an existing user is returned unchanged (its password
    and flags untouched)."""
    users = get_user_model().objects
    existing = users.filter(username=username).first()
    if existing is not None:
        return existing, False
    return users.create_superuser(username=username, email="", password=password), True
