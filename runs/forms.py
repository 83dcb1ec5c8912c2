"""Forms of the run pages. They parse and label; `runs.services` validates and decides, and
its FieldError.field is mapped back onto the field at fault."""

from __future__ import annotations

from datetime import datetime

from django import forms
from django.utils.dateparse import parse_datetime

from runs.models import Run
from swarm.stages import STAGE_NAMES

STAGE_CHOICES = [(name, name) for name in STAGE_NAMES]

# FieldError.field -> form field; anything else is shown above the form.
ERROR_FIELDS = {
    "goal": "goal",
    "repo_path": "repo_path",
    "profile": "profile",
    # A cost budget with unpriced models: the profile is what to change.
    "budget_cost_usd": "profile",
    "stage_from": "stage_from",
    "stage_to": "stage_to",
    "model": "model",
    "consensus_free": "consensus_free",
    "test_command": "test_command",
}


class RunLaunchForm(forms.Form):
    goal = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "What should the run achieve?"}),
        required=False,  # the service says why an empty goal is refused
    )
    repo_path = forms.CharField(
        label="Repository", required=False, widget=forms.TextInput(attrs={"list": "known-repos"})
    )
    profile = forms.ChoiceField(choices=[], required=False)
    stage_from = forms.ChoiceField(label="From stage", choices=STAGE_CHOICES, initial="plan")
    stage_to = forms.ChoiceField(label="To stage", choices=STAGE_CHOICES, initial="release")
    consensus_free = forms.MultipleChoiceField(
        label="Consensus-free stages",
        choices=STAGE_CHOICES,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Executable checks decide instead of the debate (meaningful for code and "
        "test_debug).",
    )
    model = forms.CharField(
        label="Model override",
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "vendor/model, e.g. offline/test"}),
        help_text="One model for every agent; leave blank to use the profile.",
    )
    test_command = forms.CharField(
        label="Test command",
        required=False,
        max_length=2000,
        widget=forms.TextInput(attrs={"placeholder": "e.g. python -m pytest -q tests"}),
        help_text="Instead of the repository's .tekton.toml or detected one; runs in the "
        "sandbox. Leave blank to use the repository's.",
    )

    def __init__(self, *args, profiles: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["profile"].choices = [(name, name) for name in profiles]

    def service_kwargs(self) -> dict:
        data = self.cleaned_data
        return {
            "goal": data.get("goal") or "",
            "repo_path": data.get("repo_path") or "",
            "profile_name": data.get("profile") or None,
            "stage_from": data.get("stage_from") or "plan",
            "stage_to": data.get("stage_to") or "release",
            "consensus_free": list(data.get("consensus_free") or []) or None,
            "model": (data.get("model") or "").strip() or None,
            "test_command": (data.get("test_command") or "").strip() or None,
        }

    def add_service_error(self, field: str, message: str) -> None:
        self.add_error(ERROR_FIELDS.get(field), message)


class RunFilterForm(forms.Form):
    status = forms.ChoiceField(choices=[("", "any status"), *Run.Status.choices], required=False)
    profile = forms.ChoiceField(choices=[], required=False)
    repo = forms.CharField(label="Repository", required=False, max_length=1024)
    q = forms.CharField(label="Search goals", required=False, max_length=200)
    before = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args, profiles: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["profile"].choices = [("", "any profile"), *((p, p) for p in profiles)]

    def clean_before(self) -> tuple[datetime, int] | None:
        raw = (self.cleaned_data.get("before") or "").strip()
        if not raw:
            return None
        stamp, _, pk = raw.rpartition(",")
        try:
            when = parse_datetime(stamp)
        except ValueError:
            when = None
        if when is None or not pk.isdigit():
            raise forms.ValidationError("invalid page cursor; use the Older/Newer links as given")
        return when, int(pk)


class StageRetryForm(forms.Form):
    note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}),
        required=False,
        max_length=8000,
        help_text="Goes into the retried stage's prompts.",
    )


class RunBudgetForm(forms.Form):
    """A run's new budgets (blank = unchanged, 0 = no limit)."""

    tokens = forms.IntegerField(min_value=0, required=False, label="Token budget")
    cost_usd = forms.DecimalField(
        min_value=0, decimal_places=4, required=False, label="Cost budget (USD)"
    )
    # The blocked stage to retry once the budget is raised ("" = raise only).
    retry = forms.ChoiceField(choices=[("", "")] + [(s, s) for s in STAGE_NAMES], required=False)


class RunForkForm(forms.Form):
    """Fork a run from one of its stages (runs.services.run_fork decides what is allowed)."""

    from_stage = forms.ChoiceField(label="From stage", choices=STAGE_CHOICES)
    profile = forms.ChoiceField(choices=[], required=False)
    model = forms.CharField(
        label="Model override",
        required=False,
        max_length=200,
        widget=forms.TextInput(attrs={"placeholder": "vendor/model"}),
    )

    def __init__(self, *args, profiles: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["profile"].choices = [("", "the run's"), *((p, p) for p in profiles)]

    def service_kwargs(self) -> dict:
        data = self.cleaned_data
        return {
            "from_stage": data["from_stage"],
            "profile_name": data.get("profile") or None,
            "model": (data.get("model") or "").strip() or None,
        }
