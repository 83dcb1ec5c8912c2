"""The artifacts screen: the run's files in a list (1-9 jump to one), each shown rendered as
a document or raw (r), and the code stage's diff per file with syntax colouring (d).

API: GET /api/runs/<id>/artifacts/ and GET /api/runs/<id>/artifacts/<name>.
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Group
from rich.syntax import Syntax
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

from tui.format import document
from tui.screens.base import TektonScreen

DIFF = "diff.patch"
THEME = "ansi_dark"


def diff_files(text: str) -> list[tuple[str, str, int, int]]:
    """A unified diff split per file: (path, text, added, removed)."""
    files: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("diff --git ") or (line.startswith("--- ") and not files):
            files.append(("", [line]))
            continue
        if not files:
            files.append(("", []))
        files[-1][1].append(line)
    out = []
    for _, lines in files:
        path = ""
        for line in lines:
            if line.startswith("+++ "):
                path = line[4:].removeprefix("b/")
                break
        if not path and lines and lines[0].startswith("diff --git "):
            path = lines[0].split(" b/", 1)[-1]
        added = sum(1 for ln in lines if ln.startswith("+") and not ln.startswith("+++"))
        removed = sum(1 for ln in lines if ln.startswith("-") and not ln.startswith("---"))
        out.append((path or "(diff)", "\n".join(lines), added, removed))
    return out


def render_diff(text: str) -> Group:
    parts: list[Any] = []
    files = diff_files(text)
    if not files:
        return Group(Text("the diff is empty", style="grey50"))
    for path, chunk, added, removed in files:
        head = Text()
        head.append(path, style="bold")
        head.append(f"  +{added}", style="green")
        head.append(f" -{removed}", style="red")
        parts.append(head)
        parts.append(Syntax(chunk, "diff", theme=THEME, line_numbers=True, word_wrap=False))
        parts.append(Text(""))
    return Group(*parts)


class ArtifactsScreen(TektonScreen):
    BINDINGS = [
        Binding("r", "raw", "Rendered/raw"),
        Binding("d", "diff", "Diff"),
        *[Binding(str(n), f"jump({n})", f"Artifact {n}", show=False) for n in range(1, 10)],
        Binding("escape,backspace", "back", "Back"),
    ]

    def __init__(self, run_id: int, *, initial: str | None = None):
        super().__init__()
        self.run_id = run_id
        self.initial = initial
        self.items: list[dict[str, Any]] = []
        self.current: str | None = None
        self.raw = False
        self.texts: dict[str, str] = {}

    def compose(self) -> ComposeResult:
        with Horizontal(id="topbar"):
            yield Static(id="title")
            yield Static(id="mode")
        with Horizontal(id="artifacts-body"):
            yield OptionList(id="artifact-list")
            with VerticalScroll(id="artifact-view"):
                yield Static(id="artifact-content")
        yield Static(id="status")
        yield Footer()

    def on_mount(self) -> None:
        title = Text()
        title.append("Tekton", style="bold")
        title.append(f"  run {self.run_id} · artifacts  ", style="reverse")
        self.query_one("#title", Static).update(title)
        self.mode_update()
        self.load()

    def mode_update(self) -> None:
        if not self.alive:
            return
        mode = "raw" if self.raw else "rendered"
        self.query_one("#mode", Static).update(Text(f"{mode} · r toggles", style="grey62"))

    @work(exclusive=True, group="artifacts-load", exit_on_error=False)
    async def load(self) -> None:
        items = await self.app.call(self.app.client.artifacts(self.run_id))
        if items is None or not self.alive:
            return
        self.items = items
        options = self.query_one("#artifact-list", OptionList)
        options.clear_options()
        for index, item in enumerate(items, start=1):
            label = Text()
            label.append(f"{index} " if index < 10 else "  ", style="bold")
            label.append(str(item.get("name")))
            label.append(f"  {item.get('stage') or 'run'}", style="grey62")
            options.add_option(Option(label, id=str(item.get("name"))))
        if not items:
            self.set_status("this run has no artifacts yet")
            return
        names = [str(i.get("name")) for i in items]
        first = self.initial if self.initial in names else names[0]
        options.highlighted = names.index(first)
        options.focus()
        self.show(first)

    @on(OptionList.OptionHighlighted, "#artifact-list")
    def highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option.id and event.option.id != self.current:
            self.show(event.option.id)

    @work(exclusive=True, group="artifacts-show", exit_on_error=False)
    async def show(self, name: str) -> None:
        self.current = name
        if name not in self.texts:
            self.set_status(f"loading {name}…")
            text = await self.app.call(self.app.client.artifact_text(self.run_id, name))
            if text is None:
                return
            self.texts[name] = text
        self.draw()

    def draw(self) -> None:
        if not self.alive:
            return
        name = self.current
        if name is None or name not in self.texts:
            return
        text = self.texts[name]
        content = self.query_one("#artifact-content", Static)
        size = next((i.get("size") for i in self.items if i.get("name") == name), None)
        if name.endswith(".patch") or name.endswith(".diff"):
            content.update(
                Syntax(text, "diff", theme=THEME, line_numbers=True)
                if self.raw
                else render_diff(text)
            )
        else:
            try:
                data = json.loads(text)
            except json.JSONDecodeError:
                data = None
            if data is None or self.raw:
                pretty = json.dumps(data, indent=2) if data is not None else text
                content.update(
                    Syntax(pretty, "json", theme=THEME, line_numbers=False, word_wrap=True)
                )
            else:
                heading = Text(name + "\n", style="bold underline")
                content.update(Group(heading, document(data)))
        self.query_one("#artifact-view", VerticalScroll).scroll_home(animate=False)
        self.set_status(f"{name} · {size if size is not None else len(text)} bytes")

    def action_raw(self) -> None:
        self.raw = not self.raw
        self.mode_update()
        self.draw()

    def action_jump(self, number: int) -> None:
        if 1 <= number <= len(self.items):
            self.query_one("#artifact-list", OptionList).highlighted = number - 1

    def action_diff(self) -> None:
        names = [str(i.get("name")) for i in self.items]
        if DIFF in names:
            self.query_one("#artifact-list", OptionList).highlighted = names.index(DIFF)
        else:
            self.set_status("this run has no diff (the code stage writes diff.patch)", error=True)

    def action_back(self) -> None:
        self.app.pop_screen()
