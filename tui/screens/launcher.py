"""The launcher: goal, repository, profile, stage range, consensus-free stages and a model
override; the explain preview (what would run, nothing created) comes first, and launch
goes ahead only for the values that were explained.

API: GET /api/config/profiles/; POST /api/runs/ with explain: true (the preview) and then
without it (201, the new run). A refused value is shown under its field.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Footer, Input, Label, Select, SelectionList, Static

from tui.client import ApiError
from tui.screens.base import TektonScreen
from tui.state import ROLES, STAGES

FIELDS = ("goal", "repo", "profile", "from", "to", "consensus_free", "model")


class LauncherScreen(TektonScreen):
    BINDINGS = [
        Binding("ctrl+e", "explain", "Explain", priority=True),
        Binding("ctrl+l", "launch", "Launch", priority=True),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.explained: dict[str, Any] | None = None
        self.preview: dict[str, Any] | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="topbar"):
            yield Static(id="title")
        with Horizontal(id="launcher-body"):
            with VerticalScroll(id="form"):
                yield Label("Goal")
                yield Input(placeholder="what the run should achieve", id="goal")
                yield Static(classes="field-error", id="err-goal")
                yield Label("Repository")
                yield Input(
                    value=self.app.default_repo,
                    placeholder="path of a git repository on the server",
                    id="repo",
                )
                yield Static(classes="field-error", id="err-repo")
                yield Label("Profile")
                yield Select([], prompt="default profile", id="profile")
                yield Static(classes="field-error", id="err-profile")
                with Horizontal(id="range"):
                    with Vertical():
                        yield Label("From stage")
                        yield Select(
                            [(s, s) for s in STAGES], value="plan", allow_blank=False, id="from"
                        )
                    with Vertical():
                        yield Label("To stage")
                        yield Select(
                            [(s, s) for s in STAGES], value="release", allow_blank=False, id="to"
                        )
                yield Static(classes="field-error", id="err-from")
                yield Static(classes="field-error", id="err-to")
                yield Label("Consensus-free stages (space toggles)")
                yield SelectionList[str](*[(s, s) for s in STAGES], id="consensus_free")
                yield Static(classes="field-error", id="err-consensus_free")
                yield Label("Model for every role (optional)")
                yield Input(placeholder="vendor/model, e.g. anthropic/claude-opus-4.1", id="model")
                yield Static(classes="field-error", id="err-model")
            with VerticalScroll(id="preview"):
                yield Static(id="preview-body")
        yield Static(id="status")
        yield Footer()

    def on_mount(self) -> None:
        title = Text()
        title.append("Tekton", style="bold")
        title.append("  new run  ", style="reverse")
        title.append(f"  {self.app.where}", style="grey62")
        self.query_one("#title", Static).update(title)
        self.query_one("#preview-body", Static).update(
            Text("ctrl+e explains what would run; ctrl+l launches it.", style="grey62")
        )
        self.query_one("#goal", Input).focus()
        self.load_profiles()

    @work(exclusive=True, group="launcher-profiles", exit_on_error=False)
    async def load_profiles(self) -> None:
        profiles = await self.app.call(self.app.client.profiles(), quiet=True)
        if not profiles or not self.alive:
            return
        select = self.query_one("#profile", Select)
        select.set_options([(str(p.get("name")), str(p.get("name"))) for p in profiles])

    # --- the form ---------------------------------------------------------------------------
    def body(self) -> dict[str, Any]:
        profile = self.query_one("#profile", Select).value
        model = self.query_one("#model", Input).value.strip()
        return {
            "goal": self.query_one("#goal", Input).value.strip(),
            "repo": self.query_one("#repo", Input).value.strip(),
            "profile": None if profile is Select.NULL else profile,
            "from": self.query_one("#from", Select).value,
            "to": self.query_one("#to", Select).value,
            "consensus_free": sorted(
                self.query_one("#consensus_free", SelectionList).selected,
                key=STAGES.index,
            ),
            "model": model or None,
        }

    def errors_show(self, errors: dict[str, list[str]]) -> None:
        if not self.alive:
            return
        for name in FIELDS:
            messages = errors.get(name) or []
            widget = self.query_one(f"#err-{name}", Static)
            widget.update(Text(" ".join(str(m) for m in messages), style="red"))
            widget.display = bool(messages)
        other = [
            f"{k}: {' '.join(map(str, v))}"
            for k, v in errors.items()
            if k.split(".")[0] not in FIELDS
        ]
        if other:
            self.set_status("; ".join(other), error=True)

    def preview_show(self, plan: dict[str, Any]) -> None:
        if not self.alive:
            return
        text = Text()
        text.append("What will run\n", style="bold underline")
        text.append("profile ", style="grey62")
        text.append(str(plan.get("profile")))
        text.append("  rounds ", style="grey62")
        text.append(str(plan.get("rounds")))
        text.append("  quorum ", style="grey62")
        text.append(f"{plan.get('quorum', 0):.2f}")
        text.append("  threshold ", style="grey62")
        text.append(f"{plan.get('threshold', 0):.2f}\n")
        text.append("repo ", style="grey62")
        text.append(str(plan.get("repo")) + "\n")
        if plan.get("cache_stagger_note"):
            text.append(str(plan["cache_stagger_note"]) + "\n", style="grey62")
        text.append("\n")
        forecast = plan.get("forecast") or {}
        expected = {f["stage"]: f for f in forecast.get("stages") or []}
        for stage in plan.get("stages") or []:
            text.append(f"{stage.get('position', '')}. {stage.get('stage')}", style="bold")
            if stage.get("consensus_free"):
                text.append("  consensus-free", style="yellow")
            if stage.get("depends_on"):
                text.append(f"  after {', '.join(stage['depends_on'])}", style="grey62")
            if stage.get("stage") in expected:
                f = expected[stage["stage"]]
                text.append(f"  ~{f['tokens']:,} tokens ${f['cost_usd']:.2f}", style="grey62")
            text.append("\n")
            roles = stage.get("roles") or {}
            for role in ROLES:
                if role in roles:
                    info = roles[role] or {}
                    text.append(f"   {role:<11}", style="grey62")
                    text.append(f"{info.get('model') or '—'}")
                    text.append(f"  ({info.get('backend') or '?'})\n", style="grey50")
        if forecast:
            text.append("\nexpected ", style="grey62")
            text.append(
                f"{forecast['tokens']:,} tokens ({forecast['tokens_p90']:,} at p90), "
                f"${forecast['cost_usd']:.2f} (${forecast['cost_usd_p90']:.2f} at p90)\n"
            )
            for warning in forecast.get("warnings") or []:
                text.append(f"forecast: {warning}\n", style="yellow")
        text.append("\nctrl+l launches exactly this.", style="bold")
        self.query_one("#preview-body", Static).update(text)

    # --- actions ----------------------------------------------------------------------------
    def action_explain(self) -> None:
        self.explain()

    @work(exclusive=True, group="launcher-submit", exit_on_error=False)
    async def explain(self) -> bool:
        body = self.body()
        self.set_status("explaining…")
        try:
            plan = await self.app.client.explain(body)
        except ApiError as exc:
            self.errors_show(exc.errors)
            self.explained = None
            self.app.show_error(str(exc))
            return False
        self.errors_show({})
        self.explained = body
        self.preview = plan
        self.preview_show(plan)
        self.set_status("explained: nothing was created. ctrl+l launches it.")
        return True

    def action_launch(self) -> None:
        self.launch()

    @work(exclusive=True, group="launcher-submit", exit_on_error=False)
    async def launch(self) -> None:
        body = self.body()
        if body != self.explained:
            # Explain first: a person launches only what they have seen.
            self.set_status("explaining first…")
            try:
                plan = await self.app.client.explain(body)
            except ApiError as exc:
                self.errors_show(exc.errors)
                self.app.show_error(str(exc))
                return
            self.errors_show({})
            self.explained = body
            self.preview_show(plan)
            self.set_status("this is what would run: ctrl+l again launches it")
            return
        self.set_status("launching…")
        try:
            run = await self.app.client.create(body)
        except ApiError as exc:
            self.errors_show(exc.errors)
            self.app.show_error(str(exc))
            return
        self.app.launched.append(int(run["id"]))
        self.app.pop_screen()
        self.app.open_run(int(run["id"]))
        self.app.notify(f"run {run['id']} launched", timeout=4)

    @on(Input.Changed)
    @on(Select.Changed)
    @on(SelectionList.SelectedChanged)
    def changed(self) -> None:
        if self.explained is not None and self.body() != self.explained:
            self.set_status("the form changed since the preview: ctrl+l explains it again")

    def action_back(self) -> None:
        self.app.pop_screen()
