"""The README as a newcomer follows it literally (issue 9 §5): the services example makes
its database and names the repositories a run may target, up.sh says how to put the uv it
installed on PATH, and nothing cites a file the repository does not have."""

from __future__ import annotations

import importlib
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from config_profiles.models import Profile

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
PATH_LINE = 'export PATH="$HOME/.local/bin:$PATH"'


def _sh_block(containing: str) -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", README, flags=re.S)
    (block,) = [b for b in blocks if containing in b]
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def test_the_services_example_creates_its_database_and_allows_the_repository():
    lines = _sh_block("celery -A tekton_site worker")
    at = {word: next(i for i, line in enumerate(lines) if word in line) for word in (
        "createdb", "DATABASE_URL=", "TEKTON_REPO_ROOTS=", "manage.py migrate", "tekton run"
    )}  # fmt: skip
    assert at["createdb"] < at["manage.py migrate"] < at["tekton run"]
    assert at["TEKTON_REPO_ROOTS="] < at["tekton run"]
    created = shlex.split(lines[at["createdb"]])[-1]
    assert lines[at["DATABASE_URL="]].rsplit("/", 1)[-1] == created  # the same database
    roots = lines[at["TEKTON_REPO_ROOTS="]].split("=", 1)[1].split(":")
    repo = shlex.split(lines[at["tekton run"]])
    target = Path(repo[repo.index("--repo") + 1])
    assert any(target.is_relative_to(root) for root in roots), (target, roots)


@pytest.mark.parametrize("uv_on_path", [False, True])
def test_up_sh_says_how_to_put_the_uv_it_installed_on_path(tmp_path, uv_on_path):
    home = tmp_path / "home"
    (home / ".local" / "bin").mkdir(parents=True)
    for folder in [home / ".local" / "bin"] + ([tmp_path] if uv_on_path else []):
        uv = folder / "uv"
        uv.write_text("#!/bin/sh\n")
        uv.chmod(0o755)
    path = (f"{tmp_path}:" if uv_on_path else "") + "/usr/bin:/bin"
    probe = ". scripts/_uv.sh; echo $TEKTON_UV_PATH_ADDED; command -v uv"
    done = subprocess.run(
        ["bash", "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=30,
        env={"PATH": path, "HOME": str(home)},
    )  # fmt: skip
    added, found = done.stdout.split()
    assert (added, found) == (("0", str(tmp_path / "uv")) if uv_on_path else ("1", str(uv)))
    # What up.sh then prints is the line the README gives.
    up = (ROOT / "scripts" / "up.sh").read_text()
    told = up[up.index('if [ "${TEKTON_UV_PATH_ADDED:-0}" = 1 ]') :].split("fi\n")[0]
    assert (
        PATH_LINE.replace('"', '\\"').replace("$HOME", "\\$HOME").replace("$PATH", "\\$PATH")
        in told
    )
    assert PATH_LINE in README


FILE_LIKE = re.compile(r"[\w./-]+\.(?:md|py|toml|json|ya?ml|txt|sh|cfg|ini)\b")


@pytest.mark.django_db
def test_the_default_profile_cites_no_file_the_repository_lacks():
    description = Profile.objects.get(name="diamond-v5").description
    assert description
    cited = FILE_LIKE.findall(description)
    assert all((ROOT / name).exists() for name in cited), cited


@pytest.mark.django_db
def test_an_installation_migrated_before_the_fix_loses_the_citation_too():
    from django.apps import apps

    module = importlib.import_module(
        "config_profiles.migrations.0006_default_profile_cites_no_missing_file"
    )
    profile = Profile.objects.get(name="diamond-v5")
    fixed = profile.description
    old = fixed.replace("The Diamond v5 defaults", "The Diamond v5 defaults" + module.CITATION, 1)
    Profile.objects.filter(pk=profile.pk).update(description=old)
    Profile.objects.create(name="team", description=old)  # another profile: the team's text
    module.citation_drop(apps, None)
    assert Profile.objects.get(name="diamond-v5").description == fixed
    assert Profile.objects.get(name="team").description == old


def test_every_file_the_readme_links_is_in_the_repository():
    links = re.findall(r"\]\(([^)#\s]+)", README)
    local = [link for link in links if not re.match(r"[a-z]+:", link)]
    assert local
    missing = [link for link in local if not (ROOT / link).exists()]
    assert not missing, missing


def test_the_services_example_sets_only_variables_the_settings_read():
    settings_text = (ROOT / "tekton_site" / "settings.py").read_text()
    for line in _sh_block("celery -A tekton_site worker"):
        if line.startswith("export "):
            name = line.split()[1].split("=")[0]
            assert name in settings_text, name
