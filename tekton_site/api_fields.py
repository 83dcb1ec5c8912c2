"""Serializer fields the API's inputs share."""

from __future__ import annotations

from rest_framework import serializers


class StrictFloatField(serializers.FloatField):
    """A number, and not a boolean: DRF's FloatField takes `true` for 1.0."""

    def to_internal_value(self, data):
        if isinstance(data, bool):
            self.fail("invalid")
        return super().to_internal_value(data)
