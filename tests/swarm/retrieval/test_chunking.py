from __future__ import annotations

import pytest

from swarm.retrieval.chunking import (
    _GRAMMARS,
    chunk_text,
    decode_text,
    estimate_tokens,
    has_grammar,
    skip_reason,
)
from swarm.retrieval.text import lexical, split_identifier


def _covers(text: str, chunks) -> None:
    """Chunks are in order, never overlap, and leave out only blank lines."""
    lines = text.split("\n")
    seen: set[int] = set()
    last = 0
    for c in chunks:
        assert c.start_line > last and c.end_line >= c.start_line
        assert c.text == "\n".join(lines[c.start_line - 1 : c.end_line])
        seen.update(range(c.start_line, c.end_line + 1))
        last = c.end_line
    missing = [i for i, line in enumerate(lines, start=1) if line.strip() and i not in seen]
    assert missing == []


def _python_module(methods: int) -> str:
    body = "\n\n".join(
        f"    def method_{i}(self, value):\n"
        + "".join(f"        value = value + {j}  # step {j} of method {i}\n" for j in range(12))
        + "        return value"
        for i in range(methods)
    )
    return (
        '"""A module."""\n\nimport os\n\n\n'
        "def helper(a, b):\n    return a + b\n\n\n"
        '@dataclass\nclass Engine:\n    """Does things."""\n\n'
        f"{body}\n\n\n"
        "def tail():\n    return os.sep\n"
    )


def test_every_grammar_in_the_table_installs_offline():
    missing = [ext for ext in _GRAMMARS if not has_grammar(f"x{ext}")]
    assert missing == []


def test_python_is_cut_along_definitions_with_their_names():
    text = _python_module(methods=8)
    chunks = chunk_text("pkg/engine.py", text, max_chars=700)
    _covers(text, chunks)
    assert all(len(c.text) <= 700 for c in chunks)
    symbols = ", ".join(c.symbol for c in chunks)
    for i in range(8):
        assert f"Engine.method_{i}" in symbols
    # No method is split across chunks: each starts a chunk or sits wholly inside one.
    for i in range(8):
        holders = [c for c in chunks if f"def method_{i}(" in c.text]
        assert len(holders) == 1 and "return value" in holders[0].text.split(f"def method_{i}(")[1]
    # The decorator travels with the class it decorates.
    first_class = next(c for c in chunks if "class Engine" in c.text)
    assert "@dataclass" in first_class.text


def test_small_definitions_are_packed_together():
    text = _python_module(methods=1)
    chunks = chunk_text("engine.py", text, max_chars=4000)
    assert len(chunks) == 1
    assert chunks[0].symbol == "helper, Engine, tail"
    assert (chunks[0].start_line, chunks[0].end_line) == (1, len(text.rstrip("\n").split("\n")))


def test_markdown_is_cut_along_sections():
    text = (
        "# Guide\n\nIntro.\n\n## Install\n\n"
        + "Run the installer.\n" * 30
        + "\n## Use\n\nCall it.\n"
    )
    chunks = chunk_text("docs/guide.md", text, max_chars=400)
    _covers(text, chunks)
    assert any(c.symbol.startswith("Guide > Install") for c in chunks)
    assert chunks[-1].symbol.endswith("Use")


def test_typescript_names_exported_definitions():
    text = (
        "export class Client {\n  get(p: string) { return p; }\n}\n\n"
        "export const helper = (x: number) => x * 2;\n\ninterface Opts { retries: number }\n"
    )
    chunks = chunk_text("src/client.ts", text, max_chars=4000)
    assert chunks[0].symbol == "Client, helper, Opts"


def test_files_without_a_grammar_are_cut_by_lines_at_blank_lines():
    paragraphs = ["\n".join(f"line {p}.{i} with some words" for i in range(6)) for p in range(10)]
    text = "\n\n".join(paragraphs) + "\n"
    chunks = chunk_text("notes.txt", text, max_chars=400)
    _covers(text, chunks)
    assert len(chunks) > 1
    assert all(len(c.text) <= 400 for c in chunks)
    # Cut after a blank line, not inside a paragraph.
    assert all(c.text.split("\n")[-1].endswith("5 with some words") for c in chunks[:-1])


def test_blank_files_have_no_chunks():
    assert chunk_text("empty.py", "\n\n   \n") == []


@pytest.mark.parametrize(
    ("path", "size", "reason"),
    [
        (".env", 10, "secret"),
        ("deploy/.env.production", 10, "secret"),
        ("keys/server.pem", 10, "secret"),
        ("home/.ssh/id_ed25519", 10, "secret"),
        ("config/credentials.json", 10, "secret"),
        ("web/node_modules/react/index.js", 10, "vendored"),
        ("third_party/lib.c", 10, "vendored"),
        ("package-lock.json", 10, "generated"),
        ("static/app.min.js", 10, "generated"),
        ("api/service_pb2.py", 10, "generated"),
        ("logo.png", 10, "binary"),
        ("data/big.csv", 10_000_000, "too_large"),
        ("deep/" * 300 + "x.py", 10, "path_too_long"),
        (".env.example", 10, None),
        ("src/app.py", 10, None),
        ("docs/secrets-management.md", 10, None),
    ],
)
def test_skip_rules(path, size, reason):
    assert skip_reason(path, size) == reason


def test_decoding_refuses_binary_generated_and_minified_content():
    assert decode_text(b"PK\x03\x04\x00\x00")[1] == "binary"
    assert decode_text("caf\xe9".encode("latin-1"))[1] == "binary"
    assert decode_text(b"// Code generated by protoc. DO NOT EDIT.\npackage x\n")[1] == "generated"
    assert decode_text(b"# This file is autogenerated by pip-compile\nx==1\n")[1] == "generated"
    assert decode_text(b'"""Ids: auto-generated ids are unique."""\n')[1] is None
    assert decode_text(b"var a=1;" * 1000)[1] == "minified"
    assert decode_text("print('héllo')\n".encode()) == ("print('héllo')\n", None)


def test_lexical_form_splits_compound_identifiers():
    assert split_identifier("HTTPClientError") == ["HTTP", "Client", "Error"]
    assert split_identifier("open_file") == ["open", "file"]
    text = lexical("def open_file(path): return readAll(path)", extra="io/file_utils.py")
    assert text.split("\n")[0] == "io file utils py"
    tail = text.split("\n")[-1].split()
    assert {"open", "file", "read", "All", "utils"} <= set(tail)


def test_token_estimate_grows_with_text():
    assert estimate_tokens("") == 0
    assert estimate_tokens("x" * 400) == 100
