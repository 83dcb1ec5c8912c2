"""Signing secrets at rest: Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`) with
keys from TEKTON_WEBHOOK_KEY, never from the database.

The variable holds one key, or several separated by commas for rotation: the first
encrypts, any of them decrypts (MultiFernet). Generate a key with
`python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"`.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

KEY_HELP = (
    'generate one with `python -c "from cryptography.fernet import Fernet; '
    'print(Fernet.generate_key().decode())"`'
)


class SecretKeyError(Exception):
    """No usable key: TEKTON_WEBHOOK_KEY is unset, malformed, or does not open a secret."""


def _fernet() -> MultiFernet:
    keys = list(settings.TEKTON_WEBHOOK_KEYS or [])
    if not keys:
        raise SecretKeyError(
            "webhooks are signed with a secret kept encrypted, and TEKTON_WEBHOOK_KEY is not "
            f"set; {KEY_HELP} and set it on every Tekton process"
        )
    try:
        return MultiFernet([Fernet(k.encode()) for k in keys])
    except ValueError:
        raise SecretKeyError(
            f"TEKTON_WEBHOOK_KEY is not a Fernet key (32 url-safe base64 bytes); {KEY_HELP}"
        ) from None


def key_configured() -> bool:
    try:
        _fernet()
    except SecretKeyError:
        return False
    return True


def secret_encrypt(secret: str) -> str:
    """The secret encrypted for the database. Raises SecretKeyError."""
    return _fernet().encrypt(secret.encode()).decode()


def secret_decrypt(token: str) -> str:
    """The secret back. Raises SecretKeyError (no key, or none of the keys opens it)."""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretKeyError(
            "the hook's secret does not open with TEKTON_WEBHOOK_KEY (was the key changed "
            "without keeping the old one after a comma?)"
        ) from None
