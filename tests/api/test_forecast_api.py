"""The API's explain carries the cost forecast (runs/forecast.py)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_the_api_explain_carries_the_forecast(api, user, git_repo):
    body = {"goal": "g", "repo": str(git_repo), "explain": True, "to": "research"}
    response = api.post("/api/runs/", body, format="json")
    assert response.status_code == 200, response.json()
    forecast = response.json()["forecast"]
    assert [s["stage"] for s in forecast["stages"]] == ["plan", "research"]
    assert forecast["tokens"] == sum(s["tokens"] for s in forecast["stages"]) > 0
