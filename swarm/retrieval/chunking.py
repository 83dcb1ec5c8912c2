"""What of a repository is indexed, and how a file is cut into chunks.

A file whose grammar ships as a tree-sitter wheel (Python, JavaScript, TypeScript, Go,
Rust, Java, C, Markdown) is cut along its syntax: top-level definitions (or Markdown
sections) are packed together up to `max_chars`, and a definition too big for one chunk
is cut along its own members (a class along its methods). Every other text file is cut by
lines, preferring blank lines. Chunks cover the file without gaps, so the comments and
decorators above a definition travel with it; line numbers are 1-based and inclusive.
"""

from __future__ import annotations

import functools
import importlib
import logging
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

logger = logging.getLogger("tekton.swarm.retrieval.chunking")

MAX_CHARS = 1500
MAX_FILE_BYTES = 512 * 1024
MAX_LINE_CHARS = 4000  # a longer line means minified or data, not something to read
MAX_PATH_BYTES = 1024
_HARD_CAP = 8000  # no chunk text longer than this, whatever the lines

# extension -> (grammar module, function returning its language pointer)
_GRAMMARS = {
    ".py": ("tree_sitter_python", "language"),
    ".pyi": ("tree_sitter_python", "language"),
    ".js": ("tree_sitter_javascript", "language"),
    ".mjs": ("tree_sitter_javascript", "language"),
    ".cjs": ("tree_sitter_javascript", "language"),
    ".jsx": ("tree_sitter_javascript", "language"),
    ".ts": ("tree_sitter_typescript", "language_typescript"),
    ".tsx": ("tree_sitter_typescript", "language_tsx"),
    ".go": ("tree_sitter_go", "language"),
    ".rs": ("tree_sitter_rust", "language"),
    ".java": ("tree_sitter_java", "language"),
    ".c": ("tree_sitter_c", "language"),
    ".h": ("tree_sitter_c", "language"),
    ".md": ("tree_sitter_markdown", "language"),
}

_VENDORED_DIRS = frozenset(
    {
        "node_modules", "bower_components", "vendor", "vendors", "third_party", "third-party",
        "site-packages", ".venv", "venv", "__pycache__", ".git", ".hg", ".svn", ".tox",
        ".nox", ".mypy_cache", ".pytest_cache", ".ruff_cache", "dist", "build", "_build",
        "target", ".next", ".nuxt", "coverage", "htmlcov", ".gradle", ".idea",
    }
)  # fmt: skip
_GENERATED_NAMES = frozenset(
    {
        "package-lock.json", "yarn.lock", "pnpm-lock.yaml", "poetry.lock", "uv.lock",
        "Cargo.lock", "composer.lock", "Gemfile.lock", "Pipfile.lock", "go.sum", "flake.lock",
    }
)  # fmt: skip
_GENERATED_SUFFIXES = (".min.js", ".min.css", ".map", "_pb2.py", "_pb2_grpc.py", ".pb.go", ".lock")
_GENERATED_MARKER = re.compile(r"(?i)@generated|do not edit|code generated|auto-?generated")
_BINARY_SUFFIXES = frozenset(
    {
        ".png", ".jpg", ".jpeg", ".gif", ".bmp", ".ico", ".webp", ".tif", ".tiff", ".psd",
        ".pdf", ".zip", ".gz", ".tgz", ".bz2", ".xz", ".zst", ".7z", ".rar", ".tar", ".whl",
        ".egg", ".jar", ".war", ".class", ".so", ".dylib", ".dll", ".exe", ".o", ".a",
        ".pyc", ".pyo", ".woff", ".woff2", ".ttf", ".otf", ".eot", ".mp3", ".mp4", ".wav",
        ".ogg", ".mov", ".avi", ".webm", ".sqlite", ".sqlite3", ".db", ".bin", ".dat",
        ".parquet", ".npy", ".npz", ".pkl", ".pickle", ".safetensors", ".onnx", ".gguf",
    }
)  # fmt: skip
# Files that hold secrets by their nature; redaction covers secrets inside other files.
_SECRET_NAME = re.compile(
    r"""(?ix)^(
        \.env(\..+)? | \.netrc | \.npmrc | \.pypirc | \.htpasswd | \.git-credentials
        | id_(rsa|dsa|ecdsa|ed25519)(\.pub)? | credentials(\.[a-z]+)? | secrets?(\.[a-z]+)?
        | service[-_]?account.*\.json | .*\.(pem|key|p12|pfx|jks|keystore|kdbx|tfvars|asc|gpg)
    )$"""
)
_SECRET_TEMPLATE = re.compile(r"(?i)^\.env\.(example|sample|template|dist)$")


def skip_reason(path: str, size: int, *, max_bytes: int = MAX_FILE_BYTES) -> str | None:
    """Why a tracked file is not indexed, judged from its path and size alone: "secret",
    "vendored", "generated", "binary", "too_large", "path_too_long"; None when it may be."""
    pure = PurePosixPath(path)
    name = pure.name
    if len(path.encode("utf-8")) > MAX_PATH_BYTES:
        return "path_too_long"
    if _SECRET_NAME.match(name) and not _SECRET_TEMPLATE.match(name):
        return "secret"
    if any(part in _VENDORED_DIRS for part in pure.parts[:-1]):
        return "vendored"
    if name in _GENERATED_NAMES or name.endswith(_GENERATED_SUFFIXES):
        return "generated"
    if pure.suffix.lower() in _BINARY_SUFFIXES:
        return "binary"
    if size > max_bytes:
        return "too_large"
    return None


def decode_text(data: bytes) -> tuple[str | None, str | None]:
    """(text, None) for a readable text file, else (None, reason): "binary" (a NUL byte or
    not UTF-8), "generated" (a marker in its first lines) or "minified" (very long lines)."""
    if b"\0" in data[:8192]:
        return None, "binary"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None, "binary"
    head = "\n".join(text.split("\n", 5)[:5])
    if _GENERATED_MARKER.search(head):
        return None, "generated"
    if any(len(line) > MAX_LINE_CHARS for line in text.split("\n")):
        return None, "minified"
    return text, None


@dataclass(frozen=True)
class Chunk:
    start_line: int  # 1-based, inclusive
    end_line: int
    text: str
    symbol: str = ""  # the definitions or sections it holds ("Client.send, Client.close")


# --- grammars ---------------------------------------------------------------------------


@functools.cache
def _parser(module: str, function: str) -> Any:
    try:
        import tree_sitter

        grammar = importlib.import_module(module)
        return tree_sitter.Parser(tree_sitter.Language(getattr(grammar, function)()))
    except (ImportError, AttributeError, ValueError) as exc:
        logger.warning("no %s grammar (%s): chunking by lines", module, exc)
        return None


def has_grammar(path: str) -> bool:
    """True when `path` is cut along its syntax (its grammar wheel is installed)."""
    spec = _GRAMMARS.get(PurePosixPath(path).suffix.lower())
    return spec is not None and _parser(*spec) is not None


# Node types that define something worth naming in a chunk's symbol.
_DEFINITIONS = frozenset(
    {
        "function_definition", "class_definition", "decorated_definition",
        "function_declaration", "generator_function_declaration", "class_declaration",
        "abstract_class_declaration", "method_definition", "interface_declaration",
        "type_alias_declaration", "enum_declaration", "lexical_declaration",
        "export_statement", "method_declaration", "type_declaration", "function_item",
        "struct_item", "enum_item", "impl_item", "trait_item", "mod_item", "macro_definition",
        "constructor_declaration", "record_declaration", "struct_specifier", "section",
    }
)  # fmt: skip
_MAX_SYMBOL = 200


def _text(node: Any) -> str:
    return node.text.decode("utf-8", "replace") if node is not None and node.text else ""


def _symbol(node: Any) -> str:
    kind = node.type
    if kind not in _DEFINITIONS:
        return ""
    if kind == "section":
        heading = node.named_children[0] if node.named_children else None
        if heading is None or not heading.type.endswith("heading"):
            return ""
        return _text(heading).split("\n", 1)[0].strip().lstrip("#").strip()[:100]
    for field in ("definition", "declaration"):  # decorated_definition, export_statement
        inner = node.child_by_field_name(field)
        if inner is not None:
            return _symbol(inner)
    if kind == "impl_item":
        return "impl " + _text(node.child_by_field_name("type"))[:100]
    name = node.child_by_field_name("name")
    if name is None and kind in ("lexical_declaration", "type_declaration"):
        first = next((c for c in node.named_children), None)
        name = first.child_by_field_name("name") if first is not None else None
    if name is None and kind == "function_definition":  # C: the name sits in the declarator
        decl = node.child_by_field_name("declarator")
        while decl is not None and decl.child_by_field_name("declarator") is not None:
            decl = decl.child_by_field_name("declarator")
        name = decl
    return _text(name)[:100]


def _rows(node: Any) -> tuple[int, int]:
    start, end = node.start_point, node.end_point
    last = end.row - 1 if end.column == 0 and end.row > start.row else end.row
    return start.row, last


def _parts(node: Any) -> list[Any]:
    """The members to cut `node` along: its named children, with the body that holds most
    of it (a class's block, a Markdown section's subsections) opened up in place."""
    kids = list(node.named_children)
    if not kids:
        return []
    if node.type in ("decorated_definition", "export_statement"):
        inner = node.child_by_field_name("definition") or node.child_by_field_name("declaration")
        if inner is not None:  # the wrapper is named after what it wraps: open that instead
            return [*(k for k in kids if k != inner), *_parts(inner)]
    lo, hi = _rows(node)
    big = max(kids, key=lambda k: _rows(k)[1] - _rows(k)[0])
    b_lo, b_hi = _rows(big)
    if (
        big.type not in _DEFINITIONS
        and big.named_children
        and (b_hi - b_lo + 1) * 10 >= (hi - lo + 1) * 6
    ):
        i = kids.index(big)
        return [*kids[:i], *_parts(big), *kids[i + 1 :]]
    return kids


class _Cutter:
    def __init__(self, lines: list[str], max_chars: int, joiner: str) -> None:
        self.lines = lines
        self.max_chars = max_chars
        self.joiner = joiner
        self.offsets = [0]
        for line in lines:
            self.offsets.append(self.offsets[-1] + len(line) + 1)

    def size(self, lo: int, hi: int) -> int:
        return self.offsets[hi + 1] - self.offsets[lo]

    def by_lines(self, lo: int, hi: int, symbol: str) -> list[tuple[int, int, str]]:
        spans = []
        start = lo
        while start <= hi:
            end = start
            while end + 1 <= hi and self.size(start, end + 1) <= self.max_chars:
                end += 1
            if end < hi:
                # Prefer to cut after a blank line in the second half of the window.
                for cut in range(end, (start + end) // 2, -1):
                    if not self.lines[cut].strip():
                        end = cut
                        break
            spans.append((start, end, symbol))
            start = end + 1
        return spans

    def by_nodes(
        self, nodes: list[Any], lo: int, hi: int, prefix: str, depth: int = 0
    ) -> list[tuple[int, int, str]]:
        # Each node claims the rows from the end of the one before it to its own last row,
        # so leading comments and decorators belong to the definition below them.
        units: list[tuple[int, int, Any]] = []
        cur = lo
        for node in nodes:
            end = min(_rows(node)[1], hi)
            if end < cur:
                continue
            units.append((cur, end, node))
            cur = end + 1
        if cur <= hi:
            if units:
                units[-1] = (units[-1][0], hi, units[-1][2])
            else:
                return self.by_lines(lo, hi, prefix.removesuffix(self.joiner))

        spans: list[tuple[int, int, str]] = []
        group: list[tuple[int, int, Any]] = []

        def flush() -> None:
            if group:
                names = [prefix + s for _, _, n in group if (s := _symbol(n))]
                symbol = ", ".join(names) or prefix.removesuffix(self.joiner)
                spans.append((group[0][0], group[-1][1], symbol[:_MAX_SYMBOL]))
                group.clear()

        for unit in units:
            u_lo, u_hi, node = unit
            if self.size(u_lo, u_hi) > self.max_chars:
                flush()
                name = _symbol(node)
                inner = _parts(node)
                if inner and depth < 12:
                    spans.extend(
                        self.by_nodes(
                            inner,
                            u_lo,
                            u_hi,
                            f"{prefix}{name}{self.joiner}" if name else prefix,
                            depth + 1,
                        )
                    )
                else:
                    symbol = prefix + name if name else prefix.removesuffix(self.joiner)
                    spans.extend(self.by_lines(u_lo, u_hi, symbol))
                continue
            if group and self.size(group[0][0], u_hi) > self.max_chars:
                flush()
            group.append(unit)
        flush()
        return spans

    def merge_small(self, spans: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
        """Join neighbours that fit together: cutting a big definition leaves short pieces."""
        merged: list[tuple[int, int, str]] = []
        for lo, hi, symbol in spans:
            if merged and self.size(merged[-1][0], hi) <= self.max_chars:
                p_lo, _, p_symbol = merged[-1]
                names = list(
                    dict.fromkeys(n for n in (*p_symbol.split(", "), *symbol.split(", ")) if n)
                )
                merged[-1] = (p_lo, hi, ", ".join(names)[:_MAX_SYMBOL])
            else:
                merged.append((lo, hi, symbol))
        return merged


def chunk_text(path: str, text: str, *, max_chars: int = MAX_CHARS) -> list[Chunk]:
    """Cut `text` (the content of `path`) into chunks of at most about `max_chars`; blank
    chunks are dropped. Syntax-aware when the file's grammar is installed."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not any(line.strip() for line in lines):
        return []
    suffix = PurePosixPath(path).suffix.lower()
    cutter = _Cutter(lines, max_chars, " > " if suffix == ".md" else ".")
    spec = _GRAMMARS.get(suffix)
    parser = _parser(*spec) if spec else None
    spans = None
    if parser is not None:
        try:
            root = parser.parse(text.encode("utf-8")).root_node
            spans = cutter.merge_small(
                cutter.by_nodes(list(root.named_children), 0, len(lines) - 1, "")
            )
        except (ValueError, RecursionError) as exc:
            logger.warning("cannot parse %s (%s): chunking by lines", path, exc)
    if spans is None:
        spans = cutter.by_lines(0, len(lines) - 1, "")

    chunks = []
    for lo, hi, symbol in spans:
        while lo <= hi and not lines[lo].strip():
            lo += 1
        while hi >= lo and not lines[hi].strip():
            hi -= 1
        if lo > hi:
            continue
        body = "\n".join(lines[lo : hi + 1])[:_HARD_CAP]
        chunks.append(Chunk(start_line=lo + 1, end_line=hi + 1, text=body, symbol=symbol))
    return chunks


def estimate_tokens(text: str) -> int:
    """A model-neutral token estimate (about four characters a token), for budgets."""
    return (len(text) + 3) // 4
