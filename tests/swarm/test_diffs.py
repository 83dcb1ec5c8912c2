"""swarm.diffs: the one unified-diff parser."""

from __future__ import annotations

import pytest

from swarm.diffs import DiffInvalid, diff_parse, diff_paths

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
