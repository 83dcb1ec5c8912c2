"""`manage.py tekton check` (syschecks' plugin of the tekton command group) through
call_command."""

from __future__ import annotations

import json

import pytest

from tests.cli import tekton

pytestmark = pytest.mark.django_db


def test_check_prints_the_table_and_exits_1_on_an_error(git_repo, tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-api03-SECRETVALUE1234567890")
    code, out, _ = tekton("check", "--repo", str(git_repo), "--only", "providers")
    assert code == 0
    assert "ANTHROPIC_API_KEY is set" in out and "SECRETVALUE" not in out
    code, out, _ = tekton("check", "--repo", str(tmp_path / "missing"), "--only", "repository")
    assert code == 1
    assert "error" in out


def test_check_json_lists_every_check(git_repo):
    code, out, _ = tekton("check", "--repo", str(git_repo), "--json")
    data = json.loads(out)
    ids = {c["id"] for c in data["checks"]}
    assert {"db", "redis", "celery", "channels", "sandbox.artifact_root"} <= ids
    assert f"repository:{git_repo}" in ids
    assert sum(data["summary"].values()) == len(data["checks"])
    assert code == (1 if data["summary"]["error"] else 0)


def test_check_unknown_only_is_a_usage_error():
    code, _, err = tekton("check", "--only", "nonsense")
    assert code == 2 and "nonsense" in err
