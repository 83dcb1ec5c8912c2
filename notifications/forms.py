"""The form of the Webhooks page: it parses and labels; notifications.services decides."""

from __future__ import annotations

from django import forms

from notifications.models import EVENT_KINDS

EVENT_CHOICES = [(kind, kind) for kind in EVENT_KINDS]
ERROR_FIELDS = {
    "name": "name",
    "url": "url",
    "email": "email",
    "events": "events",
    "profile_name": "profile_name",
}


class HookForm(forms.Form):
    name = forms.CharField(max_length=100, required=False)
    url = forms.CharField(
        label="Webhook URL",
        max_length=2000,
        required=False,
        help_text="Receives a signed JSON POST. Leave empty for e-mail.",
        widget=forms.URLInput(attrs={"placeholder": "https://hooks.example.com/tekton"}),
    )
    email = forms.CharField(
        label="Or e-mail", max_length=254, required=False, widget=forms.EmailInput()
    )
    events = forms.MultipleChoiceField(
        choices=EVENT_CHOICES,
        initial=["stage.blocked", "run.failed"],
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    profile_name = forms.ChoiceField(
        label="Runs",
        choices=[],
        required=False,
        help_text="Your own runs, or (staff) every run of a profile.",
    )

    def __init__(self, *args, profiles: list[str], is_staff: bool, **kwargs):
        super().__init__(*args, **kwargs)
        choices = [("", "my runs")]
        if is_staff:
            choices += [(p, f"every run of profile {p}") for p in profiles]
        self.fields["profile_name"].choices = choices

    def add_service_error(self, field: str, message: str) -> None:
        self.add_error(ERROR_FIELDS.get(field), message)
