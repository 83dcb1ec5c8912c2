"""swarm.diffs: the one unified-diff parser."""

from __future__ import annotations

import pytest

from swarm.diffs import DiffInvalid, diff_parse, diff_paths, interdiff

DIFF = """diff --git a/mod.py b/mod.py
--- a/mod.py
+++ b/mod.py
@@ -1,2 +1,2 @@ def f():
-x = 1
+x = 2
 y = 3
\\ No newline at end of file
diff --git a/gone.txt b/gone.txt
deleted file mode 100644
--- a/gone.txt
+++ /dev/null
@@ -1 +0,0 @@
-bye
diff --git a/img.png b/img.png
new file mode 100644
index 0000000..abc
Binary files /dev/null and b/img.png differ
"""


def test_files_come_with_paths_counts_and_numbered_lines():
    mod, gone, img = diff_parse(DIFF)
    assert (mod.path, mod.old_path, mod.new_path, mod.added, mod.removed) == (
        "mod.py", "mod.py", "mod.py", 1, 1,
    )  # fmt: skip
    (hunk,) = mod.hunks
    assert hunk.header == "@@ -1,2 +1,2 @@ def f():"
    assert [(ln.kind, ln.text, ln.old_no, ln.new_no) for ln in hunk.lines] == [
        ("del", "x = 1", 1, None),
        ("add", "x = 2", None, 1),
        ("ctx", "y = 3", 2, 2),
        ("meta", "\\ No newline at end of file", None, None),
    ]
    assert (gone.path, gone.new_path, gone.removed) == ("gone.txt", None, 1)
    assert img.is_binary and img.old_path is None


def test_paths_are_listed_once_in_order():
    assert diff_paths(DIFF) == ["mod.py", "gone.txt", "img.png"]


def test_a_hunk_shorter_than_its_header_is_invalid():
    with pytest.raises(DiffInvalid, match="not a valid unified diff: Hunk is shorter"):
        diff_parse("--- a/x\n+++ b/x\n@@ -1,5 +1,5 @@\n-a\n")


def test_text_without_file_headers_has_no_files():
    assert diff_parse("just some prose\n") == []


def _patch(*files: tuple[str, str, str]) -> str:
    """A patch changing each (path, old line, new line) at line 1."""
    return "".join(
        f"--- a/{path}\n+++ b/{path}\n@@ -1,2 +1,2 @@\n-{old}\n+{new}\n keep\n"
        for path, old, new in files
    )


def test_interdiff_says_which_files_only_one_side_touches():
    old = _patch(("a.py", "x = 1", "x = 2"), ("gone.py", "y = 1", "y = 2"))
    new = _patch(("a.py", "x = 1", "x = 2"), ("new.py", "z = 1", "z = 2"))

    files = interdiff(old, new)

    # a.py is patched alike on both sides: left out.
    assert [(f.path, f.change) for f in files] == [("gone.py", "only_old"), ("new.py", "only_new")]
    assert files[0].diff == (
        "--- a/gone.py\n+++ /dev/null\n@@ -1,4 +0,0 @@\n"
        "-@@ -1,2 +1,2 @@\n--y = 1\n-+y = 2\n- keep\n"
    )
    assert files[1].diff.startswith("--- /dev/null\n+++ b/new.py\n@@ -0,0 +1,4 @@\n")
    assert "++z = 2\n" in files[1].diff


def test_interdiff_of_a_file_changed_differently_diffs_the_patch_lines():
    old = _patch(("a.py", "x = 1", "x = 2"))
    new = _patch(("a.py", "x = 1", "x = 3"))

    [file] = interdiff(old, new)

    assert (file.path, file.change) == ("a.py", "differs")
    # The interdiff's own -/+ first, then the patch's: both removed x = 1, they added
    # different lines, and the context is the same.
    assert file.diff == (
        "--- a/a.py\n+++ b/a.py\n@@ -1,4 +1,4 @@\n"
        " @@ -1,2 +1,2 @@\n -x = 1\n-+x = 2\n++x = 3\n  keep\n"
    )
    assert [(ln.kind, ln.text) for ln in diff_parse(file.diff)[0].hunks[0].lines][2:4] == [
        ("del", "+x = 2"),
        ("add", "+x = 3"),
    ]


def test_interdiff_of_identical_patches_is_empty_and_a_broken_one_is_invalid():
    patch = _patch(("a.py", "x = 1", "x = 2"), ("b.md", "- item", "-- item"))
    assert interdiff(patch, patch) == []
    assert interdiff("", "") == []
    with pytest.raises(DiffInvalid):
        interdiff(patch, "--- a/a.py\n+++ b/a.py\n@@ -1,5 +1,5 @@\n-x\n")
