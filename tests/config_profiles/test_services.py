"""Profiles: the default profile from the data migration, validation, writes, resolution."""

from __future__ import annotations

import importlib
from decimal import Decimal

import pytest

from config_profiles.models import DEFAULT_PROFILE_NAME, Profile
from config_profiles.services import (
    profile_copy,
    profile_create,
    profile_delete,
    profile_get,
    profile_resolve,
    profile_update,
    profile_validate,
)
from swarm.stages import ROLES, STAGE_NAMES
from tekton_site.errors import FieldError

pytestmark = pytest.mark.django_db

OPUS = "anthropic/claude-opus-4.1"
migration = importlib.import_module("config_profiles.migrations.0002_default_profile")


@pytest.fixture
def default_profile() -> Profile:
    # Transactional tests elsewhere flush the table; recreate it the way the migration does.
    from django.apps import apps

    migration.create_default(apps, None)
    return Profile.objects.get(name=DEFAULT_PROFILE_NAME)


def test_migration_creates_default_profile_with_documented_models(default_profile):
    p = profile_get()
    assert p.pk == default_profile.pk and p.is_default
    assert p.stage_models == {
        "default": OPUS,
        "stages": {
            "plan": {"proponent": "openai/gpt-4o"},
            "research": {"proponent": "perplexity/llama-3.3-sonar-large-128k-online"},
            "code": {"proponent": "x-ai/grok-2-mini"},
        },
    }
    assert (p.rounds, p.threshold, p.consensus_free, p.budget_tokens) == (2, 0.70, [], 0)
    assert p.quorum == pytest.approx(2 / 3)
    assert p.budget_cost_usd == 0
    assert "2/3 quorum" in p.description and "0.70" in p.description


def test_migration_is_idempotent_when_profile_exists(default_profile):
    from django.apps import apps

    migration.create_default(apps, None)
    assert Profile.objects.filter(name=DEFAULT_PROFILE_NAME).count() == 1


def test_profile_get_unknown_lists_profiles(default_profile):
    with pytest.raises(FieldError) as exc:
        profile_get(name="nope")
    assert exc.value.field == "profile"
    assert str(exc.value) == "unknown profile 'nope'; profiles: diamond-v5"


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"rounds": 6}, "rounds", "between 0 and 5"),
        ({"rounds": -1}, "rounds", "between 0 and 5"),
        ({"quorum": 0}, "quorum", "(0, 1]"),
        ({"quorum": 1.5}, "quorum", "(0, 1]"),
        ({"threshold": "high"}, "threshold", "number"),
        ({"budget_tokens": -5}, "budget_tokens", ">= 0"),
        ({"budget_cost_usd": "-1"}, "budget_cost_usd", ">= 0"),
        ({"consensus_free": ["coding"]}, "consensus_free", "unknown stage 'coding'"),
        ({"stage_models": {"default": "gpt4"}}, "stage_models.default", "vendor/model"),
        (
            {"stage_models": {"default": OPUS, "stages": {"deploy": {}}}},
            "stage_models.stages",
            "deploy",
        ),
        (
            {"stage_models": {"default": OPUS, "stages": {"plan": {"judge": OPUS}}}},
            "stage_models.plan",
            "unknown role 'judge'",
        ),
        (
            {"stage_models": {"default": OPUS, "stages": {"plan": {"skeptic": "nomodel"}}}},
            "stage_models.plan.skeptic",
            "vendor/model",
        ),
        ({"routes": [{"match": "x/*", "backend": "telepathy"}]}, "routes", "telepathy"),
        ({"name": "has space"}, "name", "letters"),
        ({"colour": "red"}, "colour", "unknown profile fields"),
    ],
)
def test_validate_names_the_field(data, field, words):
    with pytest.raises(FieldError) as exc:
        profile_validate(data)
    assert exc.value.field == field
    assert words in exc.value.message


def test_validate_refuses_a_key_value_as_key_env_without_echoing_it():
    secret = "sk-or-v1-abcdefghijklmnopqrstuvwxyz0123"
    with pytest.raises(FieldError) as exc:
        profile_validate({"routes": [{"match": "x-ai/*", "backend": "openai", "key_env": secret}]})
    assert exc.value.field == "routes"
    assert secret not in str(exc.value)


def test_validate_cleans_values():
    out = profile_validate(
        {
            "rounds": "3",
            "quorum": "0.5",
            "consensus_free": "test_debug, code",
            "budget_cost_usd": "1.5",
            "stage_models": {
                "default": OPUS,
                "stages": {"review": {"skeptic": "openai/gpt-4o"}, "plan": {}},
            },
        }
    )
    assert out["rounds"] == 3 and out["quorum"] == 0.5
    assert out["consensus_free"] == ["code", "test_debug"]  # run order
    assert out["budget_cost_usd"] == Decimal("1.50")
    assert out["stage_models"] == {
        "default": OPUS,
        "stages": {"review": {"skeptic": "openai/gpt-4o"}},
    }


def test_create_update_copy_delete(default_profile):
    p = profile_create(
        data={"name": "cheap", "stage_models": {"default": "openai/gpt-4o"}, "rounds": 1}
    )
    assert (p.name, p.rounds, p.quorum) == ("cheap", 1, pytest.approx(2 / 3))
    with pytest.raises(FieldError) as exc:
        profile_create(data={"name": "cheap", "stage_models": {"default": OPUS}})
    assert exc.value.field == "name"

    profile_update(profile=p, data={"threshold": 0.9, "consensus_free": ["code"]})
    p.refresh_from_db()
    assert (p.threshold, p.consensus_free) == (0.9, ["code"])
    with pytest.raises(FieldError) as exc:
        profile_update(profile=p, data={"quorum": 2})
    assert exc.value.field == "quorum"
    p.refresh_from_db()
    assert p.quorum == pytest.approx(2 / 3)

    copy = profile_copy(profile=p, name="cheap-2")
    assert (copy.stage_models, copy.threshold, copy.rounds) == (p.stage_models, 0.9, 1)

    profile_delete(profile=copy)
    assert not Profile.objects.filter(name="cheap-2").exists()


def test_default_profile_cannot_be_deleted_or_renamed(default_profile):
    with pytest.raises(FieldError) as exc:
        profile_delete(profile=default_profile)
    assert exc.value.field == "profile"
    with pytest.raises(FieldError) as exc:
        profile_update(profile=default_profile, data={"name": "other"})
    assert exc.value.field == "name"
    assert Profile.objects.filter(name=DEFAULT_PROFILE_NAME).exists()


def test_resolve_freezes_the_default_profile(default_profile, tekton_settings):
    cfg = profile_resolve(
        profile=default_profile,
        stages=["plan", "research", "code"],
        consensus_free=["code"],
        env={"TEKTON_LLM_BACKEND": "offline"},
    )
    assert cfg["profile"] == "diamond-v5" and cfg["stages"] == ["plan", "research", "code"]
    assert set(cfg["models"]) == {"plan", "research", "code"}
    assert cfg["models"]["plan"] == {
        "proponent": "openai/gpt-4o",
        "skeptic": OPUS,
        "pragmatist": OPUS,
        "mediator": OPUS,
    }
    assert cfg["models"]["code"]["proponent"] == "x-ai/grok-2-mini"
    assert cfg["backends"] == {
        m: "offline"
        for m in (
            "openai/gpt-4o",
            OPUS,
            "perplexity/llama-3.3-sonar-large-128k-online",
            "x-ai/grok-2-mini",
        )
    }
    assert (cfg["rounds"], cfg["quorum"], cfg["threshold"]) == (2, 0.6667, 0.7)
    assert cfg["consensus_free"] == ["code"]
    assert (cfg["budget_tokens"], cfg["budget_cost_usd"]) == (0, 0.0)
    assert cfg["artifact_root"] == str(tekton_settings.TEKTON_ARTIFACT_ROOT)
    assert cfg["llm_backend"] == "offline" and cfg["record_path"] is None


def test_resolve_model_override_fills_every_role(default_profile):
    cfg = profile_resolve(
        profile=default_profile,
        stages=list(STAGE_NAMES),
        model="offline/echo",
        env={"TEKTON_LLM_BACKEND": "auto"},
    )
    assert all(cfg["models"][s] == {r: "offline/echo" for r in ROLES} for s in STAGE_NAMES)
    assert cfg["backends"] == {"offline/echo": "offline"}


def test_resolve_names_the_missing_key_variable_never_a_value(default_profile):
    key = "sk-proj-abcdefghijklmnopqrstuvwxyz"
    with pytest.raises(FieldError) as exc:
        profile_resolve(
            profile=default_profile,
            stages=["plan"],
            env={"TEKTON_LLM_BACKEND": "auto", "OPENAI_API_KEY": key},
        )
    assert exc.value.field == "model"
    assert "ANTHROPIC_API_KEY" in str(exc.value)
    assert key not in str(exc.value)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"consensus_free": ["nope"]}, "consensus_free"),
        ({"model": "nomodel"}, "model"),
        ({"env": {"TEKTON_LLM_BACKEND": "psychic"}}, "llm_backend"),
        ({"env": {"TEKTON_LLM_BACKEND": "replay"}}, "llm_backend"),
    ],
)
def test_resolve_errors_name_the_field(default_profile, kwargs, field):
    kwargs.setdefault("env", {"TEKTON_LLM_BACKEND": "offline"})
    with pytest.raises(FieldError) as exc:
        profile_resolve(profile=default_profile, stages=["plan"], **kwargs)
    assert exc.value.field == field


def test_resolve_relative_artifact_root_is_under_the_data_dir(
    default_profile, tekton_settings, tmp_path
):
    tekton_settings.TEKTON_DATA_DIR = tmp_path
    p = profile_copy(profile=default_profile, name="mine")
    profile_update(profile=p, data={"artifact_root": "team-artifacts"})
    cfg = profile_resolve(profile=p, stages=["plan"], env={"TEKTON_LLM_BACKEND": "offline"})
    assert cfg["artifact_root"] == str((tmp_path / "team-artifacts").resolve())


def test_prices_are_checked_and_frozen_into_the_run():
    from config_profiles.services import profile_validate

    good = {"x-ai/grok-new": {"input": 3, "output": 15.5}}
    assert profile_validate({"prices": good}) == {
        "prices": {"x-ai/grok-new": {"input": 3.0, "output": 15.5}}
    }
    for bad, field in (
        ([1, 2], "prices"),
        ({"grok": {"input": 1, "output": 1}}, "prices"),
        ({"x-ai/g": {"input": 1}}, "prices.x-ai/g"),
        ({"x-ai/g": {"input": -1, "output": 1}}, "prices.x-ai/g.input"),
        ({"x-ai/g": {"input": 1, "output": "1"}}, "prices.x-ai/g.output"),
    ):
        with pytest.raises(FieldError) as err:
            profile_validate({"prices": bad})
        assert err.value.field == field, bad


def test_cache_stagger_is_checked_kept_and_frozen_into_the_run(default_profile):
    assert default_profile.cache_stagger is True
    assert profile_validate({"cache_stagger": False}) == {"cache_stagger": False}
    assert profile_validate({"cache_stagger": "true"}) == {"cache_stagger": True}
    for bad in (0, "no", None):
        with pytest.raises(FieldError) as exc:
            profile_validate({"cache_stagger": bad})
        assert exc.value.field == "cache_stagger" and "true or false" in exc.value.message
    env = {"TEKTON_LLM_BACKEND": "offline"}
    assert profile_resolve(profile=default_profile, stages=["plan"], env=env)["cache_stagger"]

    p = profile_copy(profile=default_profile, name="eager")
    profile_update(profile=p, data={"cache_stagger": False})
    p.refresh_from_db()
    assert p.cache_stagger is False
    assert profile_copy(profile=p, name="eager-2").cache_stagger is False
    cfg = profile_resolve(profile=p, stages=["plan"], env=env)
    assert cfg["cache_stagger"] is False
