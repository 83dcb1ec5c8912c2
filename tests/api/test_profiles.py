"""The profiles endpoints: read for everyone signed in, writes for staff, full validation."""

from __future__ import annotations

import pytest

from config_profiles.models import Profile

pytestmark = pytest.mark.django_db

NEW = {
    "name": "fast",
    "description": "cheap and quick",
    "stage_models": {
        "default": "anthropic/claude-opus-4.1",
        "stages": {"plan": {"proponent": "openai/gpt-4o"}},
    },
    "rounds": 1,
    "quorum": 0.5,
    "threshold": 0.6,
    "consensus_free": ["test_debug", "code"],
    "budget_tokens": 50000,
    "budget_cost_usd": 2.5,
}


def test_list_and_retrieve(api):
    listing = api.get("/api/config/profiles/")
    assert listing.status_code == 200
    names = [p["name"] for p in listing.json()]
    assert "diamond-v5" in names
    default = api.get("/api/config/profiles/diamond-v5/").json()
    assert default["is_default"] is True
    assert default["stage_models"]["default"]
    assert api.get("/api/config/profiles/nope/").status_code == 404


def test_staff_create_update_and_delete(staff_api):
    created = staff_api.post("/api/config/profiles/", NEW, format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["consensus_free"] == ["code", "test_debug"]  # run order
    assert body["budget_cost_usd"] == 2.5 and body["is_default"] is False
    assert Profile.objects.get(name="fast").rounds == 1

    patched = staff_api.patch("/api/config/profiles/fast/", {"rounds": 3}, format="json")
    assert patched.status_code == 200 and patched.json()["rounds"] == 3
    assert patched.json()["quorum"] == 0.5  # untouched by a PATCH
    assert patched.json()["cache_stagger"] is True  # the default
    unstaggered = staff_api.patch(
        "/api/config/profiles/fast/", {"cache_stagger": False}, format="json"
    )
    assert unstaggered.status_code == 200 and unstaggered.json()["cache_stagger"] is False
    assert staff_api.get("/api/config/profiles/fast/").json()["cache_stagger"] is False
    assert Profile.objects.get(name="fast").cache_stagger is False

    replaced = staff_api.put(
        "/api/config/profiles/fast/",
        {"name": "faster", "stage_models": {"default": "openai/gpt-4o"}},
        format="json",
    )
    assert replaced.status_code == 200, replaced.json()
    assert replaced.json()["name"] == "faster" and replaced.json()["rounds"] == 2
    assert replaced.json()["consensus_free"] == []  # a PUT replaces every field

    assert staff_api.delete("/api/config/profiles/faster/").status_code == 204
    assert not Profile.objects.filter(name__in=["fast", "faster"]).exists()


def test_the_default_profile_cannot_be_deleted(staff_api):
    response = staff_api.delete("/api/config/profiles/diamond-v5/")
    assert response.status_code == 409
    assert response.json()["detail"] == "the default profile 'diamond-v5' cannot be deleted"
    assert Profile.objects.filter(name="diamond-v5").exists()


def test_only_staff_write(api):
    assert api.post("/api/config/profiles/", NEW, format="json").status_code == 403
    assert (
        api.patch("/api/config/profiles/diamond-v5/", {"rounds": 1}, format="json").status_code
        == 403
    )
    assert api.delete("/api/config/profiles/diamond-v5/").status_code == 403
    assert not Profile.objects.filter(name="fast").exists()


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        ({"rounds": 6}, "rounds", "5"),
        ({"rounds": "two"}, "rounds", "integer"),
        ({"quorum": 0}, "quorum", "(0, 1]"),
        ({"quorum": True}, "quorum", "number"),
        ({"threshold": 1.5}, "threshold", "1"),
        ({"budget_tokens": -1}, "budget_tokens", "0"),
        ({"budget_cost_usd": -0.5}, "budget_cost_usd", "0"),
        ({"consensus_free": ["deploy"]}, "consensus_free.0", "not a valid choice"),
        ({"stage_models": {"default": "no-slash"}}, "stage_models.default", "vendor/model"),
        (
            {
                "stage_models": {
                    "default": "openai/gpt-4o",
                    "stages": {"deploy": {"proponent": "openai/gpt-4o"}},
                }
            },
            "stage_models.stages",
            "unknown stage",
        ),
        (
            {
                "stage_models": {
                    "default": "openai/gpt-4o",
                    "stages": {"plan": {"judge": "openai/gpt-4o"}},
                }
            },
            "stage_models.plan",
            "unknown role",
        ),
        ({"name": "has spaces"}, "name", "letters"),
        ({"name": "diamond-v5"}, "name", "already exists"),
        ({"routes": [{"match": "x-ai/*"}]}, "routes", ""),
    ],
)
def test_create_validates_naming_the_field(staff_api, change, field, fragment):
    response = staff_api.post("/api/config/profiles/", {**NEW, **change}, format="json")
    assert response.status_code == 400, response.json()
    errors = response.json()["errors"]
    assert field in errors, errors
    assert fragment in " ".join(errors[field])
    assert not Profile.objects.filter(name="fast").exists()


def test_the_default_profile_cannot_be_renamed(staff_api):
    response = staff_api.patch("/api/config/profiles/diamond-v5/", {"name": "other"}, format="json")
    assert response.status_code == 400
    assert "cannot be renamed" in response.json()["errors"]["name"][0]
