"""Rendering helpers: diffs per file with counts and escaped highlighting, artifacts as
documents in schema order, transcripts by round, and git facts for the /repo/ page."""

from __future__ import annotations

import subprocess

from runs.render import artifact_sections, diff_files, transcript_rounds
from runs.repo_health import repo_health

PATCH = """diff --git a/app.py b/app.py
index 1111111..2222222 100644
--- a/app.py
+++ b/app.py
@@ -1,3 +1,4 @@
 def add(a, b):
-    return a - b
+    # "<script>alert(1)</script>"
+    return a + b
{blank_context_line}
--- /dev/null
+++ b/docs/notes.md
@@ -0,0 +1,2 @@
+# Notes
+<img src=x onerror=alert(1)>
""".format(blank_context_line=" ")  # a context line that is only the leading space


def test_diff_is_split_per_file_with_counts_and_line_numbers():
    files = diff_files(PATCH)
    assert [(f.path, f.added, f.removed) for f in files] == [
        ("app.py", 2, 1),
        ("docs/notes.md", 2, 0),
    ]
    kinds = [line.kind for line in files[0].lines]
    assert kinds == ["hunk", "ctx", "del", "add", "add", "ctx"]
    added = [line for line in files[0].lines if line.kind == "add"]
    assert [line.new_no for line in added] == [2, 3]
    assert files[0].lines[2].old_no == 2


def test_diff_highlighting_escapes_the_code():
    files = diff_files(PATCH)
    comment = files[0].lines[3].html
    assert "<script>" not in comment and "&lt;script&gt;" in comment
    assert '<span class="c1">' in comment  # a Python comment token
    keyword = files[0].lines[1].html
    assert '<span class="k">def</span>' in keyword
    img = files[1].lines[2].html
    assert "<img" not in img and "&lt;img src=x onerror=alert(1)&gt;" in img


def test_an_interdiff_marks_each_lines_own_prefix_and_highlights_the_code_after_it():
    [file] = diff_files(
        "--- a/app.py\n+++ b/app.py\n@@ -1,3 +1,3 @@\n @@ -1,2 +1,2 @@\n-+def f(): '<b>'\n"
        "++def g(): '<b>'\n  x = 1\n",
        nested=True,
    )
    header, old, new, context = (line.html for line in file.lines[1:])
    assert header == '<span class="gu">@@ -1,2 +1,2 @@</span>'
    assert old.startswith('<span class="gi">+</span><span class="k">def</span>')
    assert "&lt;b&gt;" in new and "<b>" not in new
    assert context.startswith(" <span")  # a context line of the patch: no mark
    assert (file.lines[2].kind, file.lines[3].kind) == ("del", "add")


def test_long_diffs_are_cut():
    body = "".join(f"+line {i}\n" for i in range(50))
    files = diff_files(f"--- a/x.txt\n+++ b/x.txt\n@@ -0,0 +1,50 @@\n{body}", max_lines=10)
    assert files[0].truncated and len(files[0].lines) == 10 and files[0].added == 50


def test_artifact_sections_follow_the_schema_and_keep_extras():
    content = {
        "extra_note": "added by the model",
        "confidence": 0.82,
        "options": [{"name": "A", "pros": ["fast"], "cons": [], "links": []}],
        "chosen": "A",
        "citations": ["https://example.org"],
        "decision_matrix": [],
        "freshness_window_days": 120,
        "offline": True,
    }
    sections = artifact_sections("research", content)
    assert [s.key for s in sections] == [
        "options",
        "decision_matrix",
        "chosen",
        "citations",
        "freshness_window_days",
        "confidence",
        "extra_note",
    ]
    options = sections[0]
    assert options.kind == "table" and options.columns == ["Name", "Pros", "Cons", "Links"]
    assert options.rows == [["A", "fast", "none", "none"]]
    assert sections[5].kind == "confidence" and sections[5].value == "0.82"


class _Event:
    def __init__(self, seq, role, rnd, attempt=1, **answer):
        self.seq = seq
        self.payload = {
            "role": role,
            "round": rnd,
            "attempt": attempt,
            "model": "m/x",
            "answer": answer,
        }


def test_transcript_groups_rounds_in_order_with_the_mediator_last():
    events = [
        # Finished in this order (concurrent calls); shown in the roles' order.
        _Event(1, "pragmatist", 0, position="fine"),
        _Event(2, "skeptic", 0, position="risky", vote={"approve": False, "reason": "no"}),
        _Event(6, "proponent", 0, position="draft", self_confidence=0.9),
        _Event(3, "proponent", 1, position="better"),
        _Event(4, "mediator", 2, rationale="merged", confidence=0.8),
        _Event(5, "proponent", 0, attempt=2, position="again"),
    ]
    rounds = transcript_rounds(events)
    assert [(r.attempt, r.label) for r in rounds] == [
        (1, "Opening"),
        (1, "Debate round 1"),
        (1, "Mediator"),
        (2, "Opening"),
    ]
    assert [m.role for m in rounds[0].messages] == ["proponent", "skeptic", "pragmatist"]
    assert rounds[0].messages[1].vote == {"approve": False, "reason": "no"}
    assert rounds[2].messages[0].position == "merged"
    assert rounds[2].messages[0].self_confidence == 0.8


def _git(path, *args):
    subprocess.run(
        ["git", "-c", "user.name=T", "-c", "user.email=t@example.invalid", *args],
        cwd=path,
        check=True,
        capture_output=True,
    )


def test_repo_health_reads_branch_changes_and_upstream(git_repo, tmp_path):
    clean = repo_health(git_repo)
    assert clean.branch == "main" and clean.is_clean and clean.error == ""
    assert [c.subject for c in clean.commits] == ["Initial commit"]

    clone = tmp_path / "clone"
    _git(tmp_path, "clone", "-q", str(git_repo), str(clone))
    (clone / "README.md").write_text("# Changed\n")
    _git(clone, "commit", "-qam", "Local change")
    (clone / "src" / "app.py").write_text("def add(a, b):\n    return b + a\n\n# more\n")
    (clone / "new.txt").write_text("untracked\n")
    health = repo_health(clone)
    assert health.upstream == "origin/main" and health.ahead == 1 and health.behind == 0
    assert not health.is_clean
    assert {(c.status, c.path) for c in health.changed} == {(" M", "src/app.py"), ("??", "new.txt")}
    assert [(d.path, d.added, d.removed) for d in health.diffstat] == [("src/app.py", 4, 2)]


def test_repo_health_reports_a_missing_directory(tmp_path):
    health = repo_health(tmp_path / "gone")
    assert health.error == "the directory does not exist any more" and not health.is_clean


def test_an_unreadable_diff_is_still_shown_as_plain_lines():
    (shown,) = diff_files("--- a/x\n+++ b/x\n@@ -1,5 +1,5 @@\n-<b>a</b>\n")
    assert shown.path == "(unreadable diff)"
    assert "Hunk is shorter than expected" in shown.lines[0].html
    assert any("&lt;b&gt;a&lt;/b&gt;" in line.html for line in shown.lines)
