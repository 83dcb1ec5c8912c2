"""The profile edit form: the stage x role model matrix and the consensus settings in one
form. Fields stay text so that `profile_validate` (the one source of truth) says what is
wrong with a value; its FieldError.field is mapped back onto the field at fault."""

from __future__ import annotations

from typing import Any

from django import forms

from config_profiles.models import Profile
from config_profiles.services import profile_validate
from swarm.stages import ROLES, STAGE_NAMES
from tekton_site.errors import FieldError

STAGE_CHOICES = [(name, name) for name in STAGE_NAMES]


def matrix_field(stage: str, role: str) -> str:
    return f"model__{stage}__{role}"


# FieldError.field -> form field, for the fields whose names differ.
_FIELD_ALIASES = {"stage_models.default": "default_model", "stage_models": "default_model"}


def error_field(field: str) -> str | None:
    """The form field a FieldError.field belongs to (None: shown above the form)."""
    if field in _FIELD_ALIASES:
        return _FIELD_ALIASES[field]
    parts = field.split(".")
    if len(parts) == 3 and parts[0] == "stage_models":
        return matrix_field(parts[1], parts[2])
    if field in ProfileForm.base_fields:
        return field
    return None


class ProfileForm(forms.Form):
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)
    default_model = forms.CharField(
        label="Default model",
        required=False,
        help_text="vendor/model; used by every role without its own entry below.",
    )
    rounds = forms.CharField(
        label="Debate rounds", required=False, help_text="0 to 5, after the opening round."
    )
    quorum = forms.CharField(
        required=False, help_text="Weighted approval needed, in (0, 1]; 0.6667 is two thirds."
    )
    threshold = forms.CharField(
        label="Confidence threshold",
        required=False,
        help_text="The mediator's confidence needed, in (0, 1].",
    )
    consensus_free = forms.MultipleChoiceField(
        label="Consensus-free stages",
        choices=STAGE_CHOICES,
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    budget_tokens = forms.CharField(
        label="Token budget per run", required=False, help_text="0 = no limit."
    )
    budget_cost_usd = forms.CharField(
        label="Cost budget per run (USD)", required=False, help_text="0 = no limit."
    )
    cache_stagger = forms.BooleanField(
        label="Stagger the opening round for the prompt cache",
        required=False,
        help_text="On one priced model the proponent opens first and the other two read "
        "its cached prompt: cheaper input, +1 call of latency per debate stage.",
    )

    def __init__(self, *args, validate_url: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        for stage in STAGE_NAMES:
            for role in ROLES:
                self.fields[matrix_field(stage, role)] = forms.CharField(
                    label=f"{stage} {role}",
                    required=False,
                    widget=forms.TextInput(attrs={"class": "cell", "placeholder": "default"}),
                )
        if validate_url:
            # Inline validation: on change, the whole form is checked by the service and
            # this field's message lands in its error slot.
            for name, field in self.fields.items():
                if type(field.widget) is forms.TextInput:
                    field.widget.attrs.update(
                        {
                            "hx-post": validate_url,
                            "hx-trigger": "change",
                            "hx-target": f"#err-{name}",
                            "hx-swap": "innerHTML",
                            "hx-include": "closest form",
                        }
                    )

    @classmethod
    def initial_for(cls, profile: Profile) -> dict[str, Any]:
        models = profile.stage_models or {}
        initial: dict[str, Any] = {
            "description": profile.description,
            "default_model": models.get("default", ""),
            "rounds": profile.rounds,
            "quorum": f"{profile.quorum:.4g}",
            "threshold": f"{profile.threshold:.4g}",
            "consensus_free": list(profile.consensus_free or []),
            "budget_tokens": profile.budget_tokens,
            "budget_cost_usd": profile.budget_cost_usd,
            "cache_stagger": profile.cache_stagger,
        }
        for stage, roles in (models.get("stages") or {}).items():
            for role, model in (roles or {}).items():
                initial[matrix_field(stage, role)] = model
        return initial

    def matrix(self) -> list[dict[str, Any]]:
        """Rows of bound fields for the template: one per stage, one cell per role."""
        return [
            {"stage": stage, "cells": [self[matrix_field(stage, role)] for role in ROLES]}
            for stage in STAGE_NAMES
        ]

    def service_data(self) -> dict[str, Any]:
        """What profile_validate / profile_update take, built from the cleaned fields."""
        data = self.cleaned_data
        stages: dict[str, dict[str, str]] = {}
        for stage in STAGE_NAMES:
            for role in ROLES:
                model = (data.get(matrix_field(stage, role)) or "").strip()
                if model:
                    stages.setdefault(stage, {})[role] = model
        return {
            "description": data.get("description") or "",
            "stage_models": {
                "default": (data.get("default_model") or "").strip(),
                "stages": stages,
            },
            "rounds": (data.get("rounds") or "").strip(),
            "quorum": (data.get("quorum") or "").strip(),
            "threshold": (data.get("threshold") or "").strip(),
            "consensus_free": list(data.get("consensus_free") or []),
            "budget_tokens": (data.get("budget_tokens") or "").strip(),
            "budget_cost_usd": (data.get("budget_cost_usd") or "").strip(),
            "cache_stagger": bool(data.get("cache_stagger")),
        }

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.errors:
            return cleaned
        try:
            profile_validate(self.service_data())
        except FieldError as exc:
            self.add_profile_error(exc)
        return cleaned

    def add_profile_error(self, exc: FieldError) -> None:
        self.add_error(error_field(exc.field), exc.message)


class ProfileCopyForm(forms.Form):
    name = forms.CharField(
        label="New profile name",
        max_length=100,
        help_text="Letters, digits, '-' or '_'.",
    )
