"""The profile admin refuses what the services refuse, beside the field at fault."""

from __future__ import annotations

import importlib
import json

import pytest
from django.apps import apps

from config_profiles.admin import ProfileAdminForm
from config_profiles.models import DEFAULT_PROFILE_NAME, Profile

pytestmark = pytest.mark.django_db
migration = importlib.import_module("config_profiles.migrations.0002_default_profile")


def _form_data(**overrides):
    data = {
        "name": "team",
        "description": "",
        "stage_models": json.dumps({"default": "anthropic/claude-opus-4.1"}),
        "rounds": 2,
        "quorum": 0.6667,
        "threshold": 0.7,
        "consensus_free": "[]",
        "budget_tokens": 0,
        "budget_cost_usd": "0",
        "artifact_root": "",
        "routes": "[]",
        "tool_grants": "{}",
        "max_tool_calls": 8,
        "max_test_runs": 3,
        "sandbox_limits": "{}",
    }
    data.update(overrides)
    return data


def test_admin_form_refuses_a_bad_quorum_beside_the_field():
    form = ProfileAdminForm(data=_form_data(quorum=1.5))
    assert not form.is_valid()
    assert "quorum" in form.errors
    assert "(0, 1]" in form.errors["quorum"][0]


def test_admin_form_refuses_unknown_stage_in_models():
    models = {
        "default": "anthropic/claude-opus-4.1",
        "stages": {"deploy": {"proponent": "openai/gpt-4o"}},
    }
    form = ProfileAdminForm(data=_form_data(stage_models=json.dumps(models)))
    assert not form.is_valid()
    assert "deploy" in form.errors["stage_models"][0]


def test_admin_form_saves_good_values():
    form = ProfileAdminForm(data=_form_data(consensus_free=json.dumps(["test_debug", "code"])))
    assert form.is_valid(), form.errors
    profile = form.save()
    assert profile.consensus_free == ["code", "test_debug"]


def test_admin_form_keeps_default_name(admin_client):
    migration.create_default(apps, None)
    default = Profile.objects.get(name=DEFAULT_PROFILE_NAME)
    form = ProfileAdminForm(data=_form_data(name="renamed"), instance=default)
    assert not form.is_valid()
    assert "name" in form.errors


def test_admin_pages_render_and_default_cannot_be_deleted(admin_client):
    migration.create_default(apps, None)
    default = Profile.objects.get(name=DEFAULT_PROFILE_NAME)
    assert admin_client.get("/admin/config_profiles/profile/").status_code == 200
    assert (
        admin_client.get(f"/admin/config_profiles/profile/{default.pk}/change/").status_code == 200
    )
    response = admin_client.post(
        f"/admin/config_profiles/profile/{default.pk}/delete/", {"post": "yes"}
    )
    assert response.status_code == 403
    assert Profile.objects.filter(name=DEFAULT_PROFILE_NAME).exists()


def test_admin_form_refuses_a_tool_nobody_knows_beside_the_field():
    grants = json.dumps({"code": {"skeptic": ["read_file", "rm_rf"]}})
    form = ProfileAdminForm(data=_form_data(tool_grants=grants))
    assert not form.is_valid()
    assert "unknown tool 'rm_rf'" in form.errors["tool_grants"][0]


def test_admin_form_saves_tool_grants_and_sandbox_limits():
    grants = {"review": {"skeptic": ["read_file", "run_command"]}}
    form = ProfileAdminForm(
        data=_form_data(tool_grants=json.dumps(grants), sandbox_limits='{"wall_s": 120}')
    )
    assert form.is_valid(), form.errors
    profile = form.save()
    assert profile.tool_grants == grants and profile.sandbox_limits == {"wall_s": 120.0}


def test_admin_form_turns_the_staggered_opening_round_off_and_on():
    form = ProfileAdminForm(data=_form_data())  # an unticked box is not posted
    assert form.is_valid(), form.errors
    assert form.save().cache_stagger is False
    form = ProfileAdminForm(data=_form_data(name="other", cache_stagger="on"))
    assert form.is_valid(), form.errors
    assert form.save().cache_stagger is True
