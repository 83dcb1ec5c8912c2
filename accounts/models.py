"""API tokens: only a hash of the secret is stored, with a short prefix to recognise it by."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class ApiToken(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, blank=True, default="")
    # The first characters of the secret after "tkn_": enough to tell tokens apart in a
    # list or to revoke one, far too few to guess the rest.
    prefix = models.CharField(max_length=8, db_index=True)
    token_hash = models.CharField(max_length=64, unique=True)  # sha256 hex of the full token
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.display} ({self.user})"

    @property
    def display(self) -> str:
        return f"tkn_{self.prefix}…"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
