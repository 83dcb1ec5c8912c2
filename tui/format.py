"""Small formatters shared by the screens. Everything that came from the server or a model
is put into rich Text objects as plain text, never parsed as markup."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from tui.state import STAGES

STATUS_STYLES = {
    "queued": "grey62",
    "running": "bold yellow",
    "blocked": "bold magenta",
    "succeeded": "green",
    "failed": "bold red",
    "cancelled": "grey50",
    "skipped": "grey50",
}
STRIP_GLYPHS = {
    "queued": "○",
    "running": "◐",
    "blocked": "■",
    "succeeded": "●",
    "failed": "✕",
    "cancelled": "⊘",
    "skipped": "·",
}


def status_text(status: str) -> Text:
    return Text(status or "?", style=STATUS_STYLES.get(status, ""))


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def tokens(n: Any) -> str:
    try:
        n = int(n or 0)
    except (TypeError, ValueError):
        return "—"
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}M"
    if n >= 10_000:
        return f"{n / 1000:.0f}k"
    return f"{n:,}"


def cost(usd: Any) -> str:
    try:
        usd = float(usd or 0)
    except (TypeError, ValueError):
        return "—"
    return f"${usd:.4f}" if usd < 1 else f"${usd:.2f}"


def ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def stage_strip(stages: list[dict[str, Any]] | None) -> Text:
    """Nine glyphs, one per stage in pipeline order; a stage outside the run's range is a
    dim dot, an unknown one (details not loaded yet) a blank."""
    if stages is None:
        return Text("·" * len(STAGES), style="grey30")
    by_name = {str(s.get("stage")): str(s.get("status") or "") for s in stages}
    text = Text()
    for name in STAGES:
        status = by_name.get(name)
        if status is None:
            text.append("·", style="grey30")
        else:
            text.append(STRIP_GLYPHS.get(status, "?"), style=STATUS_STYLES.get(status, ""))
    return text


def one_line(value: Any, width: int) -> Text:
    text = " ".join(str(value or "").split())
    if len(text) > width:
        text = text[: width - 1] + "…"
    return Text(text)


def path_tail(value: Any, width: int) -> Text:
    """A path cut from the left: its last parts are the ones that tell repositories apart."""
    text = " ".join(str(value or "").split())
    if len(text) > width:
        text = "…" + text[-(width - 1) :]
    return Text(text)


def title_case(key: str) -> str:
    words = str(key).replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def document(value: Any, *, indent: int = 0) -> Text:
    """A JSON artifact as a readable document: headings for keys, bullets for lists."""
    out = Text()
    pad = "  " * indent
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                out.append(f"{pad}{title_case(key)}\n", style="bold")
                out.append_text(document(item, indent=indent + 1))
            else:
                out.append(f"{pad}{title_case(key)}: ", style="bold")
                out.append(_scalar(item) + "\n")
    elif isinstance(value, list):
        if not value:
            out.append(f"{pad}(none)\n", style="grey50")
        for item in value:
            if isinstance(item, dict):
                out.append(f"{pad}•\n")
                out.append_text(document(item, indent=indent + 1))
            else:
                out.append(f"{pad}• {_scalar(item)}\n")
    else:
        out.append(f"{pad}{_scalar(value)}\n")
    return out


def _scalar(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | dict):
        return "(none)"
    return str(value)
