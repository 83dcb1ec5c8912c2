"""Issue 14, section 3: what prompt caching saves on a full run's input bill.

    uv run python -m bench.prompt_cache [--no-write]

A full nine-stage run in embedded mode (SQLite, in-process, the default profile's
rounds and tools) with every role on one vendor's model, answered through the official
SDK by the local fake server (tests/fakes/llm_server.py) that answers as the offline
backend would (tests/fakes/diamond.py) and applies that vendor's documented caching
rules (tests/fakes/prompt_cache.py: minimum length, Anthropic's 1.25x write premium,
a prefix readable only once the call that wrote it has finished). The same run again
with the fake's cache turned off is the run without caching: same prompts, same token
counts, every input token at the full price. Per vendor:

    ratio = billed input cost with caching / billed input cost without (target <= 40%)

Input cost is priced by swarm.providers.pricing (cache reads 0.1x and writes 1.25x of
the input price for Anthropic; the model's cached price for OpenAI), output left out.
"""

from __future__ import annotations

import argparse

from bench.common import EmbeddedEnv, child, doc_section_write, machine
from swarm.providers.pricing import cost_usd
from tests.fakes.diamond import DiamondResponder
from tests.fakes.llm_server import FakeLlmServer, slow
from tests.fakes.prompt_cache import PromptCache

VENDORS = {
    "anthropic": "anthropic/claude-sonnet-4.5",
    "openai": "openai/gpt-5",
}
# The input cost of the run without caching before each call carried its stage's other
# answer schema (docs/benchmarks.md before issue 14's mediator change): the fair baseline.
BEFORE_UNCACHED = {"anthropic": 0.8691, "openai": 0.3619}
# The wall time of the run with caching before the opening round was staggered (the same
# bench at main 351fd04, on this machine, minutes before): what the staggering costs.
BEFORE_WALL_S = {"anthropic": 20.6, "openai": 18.6}


def _vendor_env(vendor: str, server: FakeLlmServer) -> dict[str, str]:
    if vendor == "anthropic":
        return {
            "ANTHROPIC_API_KEY": "sk-ant-bench-0123456789abcdef",
            "ANTHROPIC_BASE_URL": server.anthropic_base_url,
        }
    return {"OPENAI_API_KEY": "sk-bench-0123456789", "OPENAI_BASE_URL": server.openai_base_url}


def input_cost(model: str, out: dict) -> float:
    return cost_usd(
        model,
        out["input_tokens"],
        0,
        cached_input_tokens=out["cached_input_tokens"],
        cache_write_tokens=out["cache_write_tokens"],
    )


class _Slow:
    """Every answer takes `seconds`, so a round's calls overlap as they do at a vendor."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.inner = seconds, DiamondResponder("")

    def __call__(self, path: str, body: dict):
        return slow(self.seconds, self.inner(path, body))


def measure(vendor: str, env: EmbeddedEnv, latency_ms: int) -> dict[str, dict]:
    model = VENDORS[vendor]
    results = {}
    for label, enabled in (("cached", True), ("uncached", False)):
        server = FakeLlmServer(
            responder=_Slow(latency_ms / 1000), cache=PromptCache(enabled=enabled)
        )
        server.start()
        try:
            out = child(
                [
                    "embedded-run",
                    "--goal",
                    "Document the add function in README",
                    "--repo",
                    str(env.repo),
                    "--model",
                    model,
                ],
                env={**env.env, "TEKTON_LLM_BACKEND": "auto", **_vendor_env(vendor, server)},
            )
        finally:
            server.stop()
        out["input_cost_usd"] = input_cost(model, out)
        results[label] = out
    return results


def report(figures: dict[str, dict[str, dict]], latency_ms: int) -> str:
    rows = []
    verdicts = []
    breakdown = []
    for vendor, legs in figures.items():
        cached, plain = legs["cached"], legs["uncached"]
        ratio = cached["input_cost_usd"] / plain["input_cost_usd"]
        uncached_in = (
            cached["input_tokens"] - cached["cached_input_tokens"] - cached["cache_write_tokens"]
        )
        rows.append(
            f"| {VENDORS[vendor]} | {cached['llm_calls']} | {plain['input_tokens']:,} | "
            f"{cached['cached_input_tokens']:,} | {cached['cache_write_tokens']:,} | "
            f"{uncached_in:,} | ${plain['input_cost_usd']:.4f} | "
            f"${cached['input_cost_usd']:.4f} | **{ratio:.0%}** | {plain['wall_s']:.1f} s | "
            f"{cached['wall_s']:.1f} s | {cached['status']} |"
        )
        parts = cached["uncached_by_call"]
        breakdown.append(
            f"| {VENDORS[vendor]} | {parts['opening round']:,} | {parts['debate rounds']:,} | "
            f"{parts['mediator']:,} |"
        )
        verdicts.append(f"{VENDORS[vendor]} {ratio:.0%} ({'met' if ratio <= 0.40 else 'missed'})")
    return "\n".join(
        [
            "## Prompt caching: billed input cost of a full run (issue 14, section 3)",
            "",
            f"`uv run python -m bench.prompt_cache` on {machine()}; embedded mode, the default",
            "profile with one model in every role, answered through the vendor's SDK by the",
            f"local fake server in {latency_ms} ms a call, applying the vendor's caching rules;",
            "the same run with the fake's cache off is the run without caching. Input cost",
            "only, at list prices.",
            "",
            "| model | calls | input tokens | cache reads | cache writes | uncached | "
            "input cost uncached | with caching | ratio | wall uncached | wall cached | "
            "status |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
            *rows,
            "",
            f"**Billed input cost with caching against without: {'; '.join(verdicts)}; "
            "target <= 40%.**",
            "",
            "Where the input billed in full goes (with caching), in tokens:",
            "",
            "| model | opening round | debate rounds | mediator |",
            "|---|---:|---:|---:|",
            *breakdown,
            "",
            "The prompt is laid out most widely shared first: the tools (the stage's "
            "tools, then in a debate stage both its answer schemas, the debaters' and the "
            "mediator's, so every call of the stage sends one list), the system text, the "
            "run's part (goal, repository, the earlier artifacts in stage order, one block "
            "each), the stage's part, one message per debate round so far, the turn (which "
            "names the call's answer schema). Anthropic gets breakpoints after the tools, "
            "at the run part's end and at the prefix's end, and finds what an earlier "
            "request wrote up to 20 blocks before a breakpoint; every call with tools sends "
            'tool_choice "any" (the fake applies Anthropic\'s rule that a changed '
            "tool_choice invalidates the message blocks' cache). OpenAI gets the answer "
            'schemas as functions beside the tools (tool_choice "required") instead of '
            "response_format, a prefix of the system message that differs per schema. So "
            "the mediator reads the prefix the last round's proponent wrote and pays only "
            "the last round's transcript and its turn. The price: a stage's tools differ "
            "from the stage before's (its mediator schema), so a stage no longer reads the "
            "run part the one before wrote; the opening round's proponent goes first and "
            "the other two start when it has finished, reading the run and stage parts it "
            "wrote (on one priced model only: one call's latency more per stage). In the "
            "other rounds only the proponent's call marks the part new in it (one write at "
            "1.25x), the other two mark what an earlier call wrote.",
            "",
            "Before this change (the answer schema a tool or response_format of its own, "
            "all three openers at once): 49% (Anthropic, $0.4220 with caching against "
            "$0.8691) and 47% (OpenAI, $0.1688 against $0.3619), the mediator paying "
            "39,974 and 39,907 tokens in full. Each call now also carries its stage's "
            "other answer schema, so the run without caching costs more than it did; "
            "against that earlier run without caching, the run with caching is at "
            + "; ".join(
                f"{VENDORS[v]} {legs['cached']['input_cost_usd'] / BEFORE_UNCACHED[v]:.0%}"
                for v, legs in figures.items()
            )
            + ". Wall time of the run with caching, before and now: "
            + "; ".join(
                f"{VENDORS[v]} {BEFORE_WALL_S[v]:.1f} s and {legs['cached']['wall_s']:.1f} s"
                for v, legs in figures.items()
            )
            + f" (the staggered opening adds one call, {latency_ms} ms here, to each of the "
            "nine stages; the machine is shared, so a run's wall varies by a few seconds)"
            ". Before the layout of one prefix per run (stage prefix only, the transcript "
            "in the turn): 62% (Anthropic) and 50% (OpenAI). What caching still cannot "
            "reach: the debate rounds' calls start together, so the last round's "
            "transcript is paid in full by two of the three (staggering those rounds too "
            "would add a call's latency to every round).",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.prompt_cache")
    parser.add_argument("--vendor", choices=[*VENDORS, "both"], default="both")
    parser.add_argument("--latency-ms", type=int, default=300, help="the fake's time per call")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    env = EmbeddedEnv.create(latency_ms=0)
    vendors = list(VENDORS) if args.vendor == "both" else [args.vendor]
    figures = {vendor: measure(vendor, env, args.latency_ms) for vendor in vendors}
    body = report(figures, args.latency_ms)
    print(body)
    if not args.no_write:
        doc_section_write("prompt_cache", body)


if __name__ == "__main__":
    main()
