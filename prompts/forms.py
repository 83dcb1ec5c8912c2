"""The Prompts page's forms: ask (again), and the history filters."""

from __future__ import annotations

from django import forms
from django.conf import settings

from prompts.models import PromptInvocation
from swarm.frontdoor.intent import INTENTS

ERROR_FIELDS = {"non_field_errors": None, "agent": "agent", "repo": "repo"}


class PromptAskForm(forms.Form):
    agent = forms.ChoiceField(
        choices=[
            ("prompt", "prompt: the intent's model chain"),
            ("claude", "claude"),
            ("agno", "agno: planner → coder → reviewer"),
        ],
        initial="prompt",
    )
    prompt = forms.CharField(
        max_length=settings.TEKTON_PROMPT_MAX_CHARS,
        widget=forms.Textarea(attrs={"rows": 4, "placeholder": "What do you want to ask?"}),
        strip=False,
    )
    context = forms.CharField(
        required=False,
        max_length=200_000,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Extra text sent along (a log, a file).",
    )
    model = forms.CharField(
        required=False, max_length=200, help_text="vendor/model; empty: the default"
    )
    intent = forms.ChoiceField(
        required=False,
        choices=[("", "by the rules")] + [(i, i) for i in INTENTS],
        help_text="prompt only",
    )
    memory = forms.BooleanField(
        required=False, initial=True, label="Send my recent sessions along (memory)"
    )

    def __init__(self, *args, can_codex: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if can_codex:
            self.fields["agent"].choices = [*self.fields["agent"].choices, ("codex", "codex")]

    def add_service_error(self, field: str, message: str) -> None:
        self.add_error(field if field in self.fields else ERROR_FIELDS.get(field), message)


class PromptFilterForm(forms.Form):
    q = forms.CharField(required=False, max_length=200, label="Text")
    agent = forms.ChoiceField(
        required=False,
        choices=[("", "any")] + [(a, a) for a in ("prompt", "claude", "codex", "agno", "diamond")],
    )
    status = forms.ChoiceField(
        required=False, choices=[("", "any")] + list(PromptInvocation.Status.choices)
    )
