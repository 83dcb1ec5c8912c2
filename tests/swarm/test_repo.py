from __future__ import annotations

import pytest

from swarm.repo import FILES_CAP, README_CHARS, RepoError, is_git_repo, patch_check, repo_facts
from tests.swarm.conftest import SAMPLE_FILES, git, make_repo


def test_facts_of_a_clean_repository(git_repo):
    facts = repo_facts(git_repo)
    assert facts.path == str(git_repo.resolve())
    assert facts.branch == "main"
    assert facts.head == git(git_repo, "rev-parse", "HEAD").strip()
    assert facts.is_dirty is False and facts.changed_files == ()
    assert sorted(facts.files) == sorted(SAMPLE_FILES)
    assert facts.file_count == len(SAMPLE_FILES)
    assert facts.languages == {"Python": 2, "Markdown": 1, "JavaScript": 1}
    assert facts.test_paths == ("tests/",)
    assert facts.readme_excerpt == SAMPLE_FILES["README.md"]


def test_facts_of_a_dirty_repository(git_repo):
    (git_repo / "app" / "main.py").write_text("changed\n")
    (git_repo / "new file.txt").write_text("untracked\n")
    git(git_repo, "mv", "app/util.js", "app/helpers.js")
    facts = repo_facts(git_repo)
    assert facts.is_dirty is True
    assert set(facts.changed_files) == {"app/main.py", "new file.txt", "app/helpers.js"}


def test_facts_of_a_repository_without_commits(tmp_path):
    repo = make_repo(
        tmp_path / "fresh",
        {"src/lib.rs": "fn main() {}\n", "lib_test.go": "package x\n"},
        commit=False,
    )
    facts = repo_facts(repo)
    assert facts.head is None
    assert facts.branch == "main"
    assert facts.file_count == 2  # staged files count as tracked
    assert facts.languages == {"Rust": 1, "Go": 1}
    assert facts.test_paths == ("lib_test.go",)
    assert facts.readme_excerpt == ""


def test_empty_repository_without_files(tmp_path):
    facts = repo_facts(make_repo(tmp_path / "empty", {}))
    assert (facts.head, facts.file_count, facts.files, facts.is_dirty) == (None, 0, (), False)


def test_file_list_is_capped_but_the_count_is_exact(tmp_path):
    files = {f"pkg/m{i:04d}.py": "" for i in range(FILES_CAP + 25)}
    facts = repo_facts(make_repo(tmp_path / "big", files))
    assert len(facts.files) == FILES_CAP
    assert facts.file_count == FILES_CAP + 25
    assert facts.languages == {"Python": FILES_CAP + 25}


def test_readme_excerpt_is_capped(tmp_path):
    facts = repo_facts(make_repo(tmp_path / "r", {"README.rst": "x" * (README_CHARS + 100)}))
    assert facts.readme_excerpt == "x" * README_CHARS


def test_not_a_repository_is_a_clear_error(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(RepoError, match=r"is not a git repository \(run `git init` there first\)"):
        repo_facts(plain)
    with pytest.raises(RepoError, match="does not exist"):
        repo_facts(tmp_path / "missing")
    assert is_git_repo(plain) is False
    assert is_git_repo(tmp_path / "missing") is False


def test_a_folder_inside_a_repository_is_refused(git_repo):
    with pytest.raises(RepoError, match="is inside the git repository"):
        repo_facts(git_repo / "app")
    assert is_git_repo(git_repo / "app") is False
    assert is_git_repo(git_repo) is True


def test_patch_check_accepts_a_patch_that_applies(git_repo):
    diff = (
        "--- a/app/main.py\n+++ b/app/main.py\n@@ -1,2 +1,2 @@\n"
        " def health():\n-    return 'ok'\n+    return 'OK'\n"
    )
    assert patch_check(git_repo, diff) == (True, "git apply --check: the diff applies cleanly")
    assert (git_repo / "app" / "main.py").read_text() == SAMPLE_FILES[
        "app/main.py"
    ]  # nothing applied


def test_patch_check_rejects_a_patch_that_does_not_apply(git_repo):
    diff = "--- a/app/main.py\n+++ b/app/main.py\n@@ -1,2 +1,2 @@\n def nope():\n-    return 1\n+    return 2\n"
    ok, detail = patch_check(git_repo, diff)
    assert ok is False
    assert detail.startswith("git apply --check failed:") and "app/main.py" in detail


def test_patch_check_rejects_empty_and_non_repo(git_repo, tmp_path):
    assert patch_check(git_repo, "  \n") == (False, "empty diff: nothing to apply")
    ok, detail = patch_check(tmp_path, "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n")
    assert ok is False and "is not a git repository" in detail
