"""`python -m tui [--url URL] [--token TOKEN]`."""

from __future__ import annotations

import argparse
import sys

from tui.main import tui_run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tui",
        description="Tekton's terminal UI. With no --url: the local install "
        "(a running server, else one served in this process until you quit).",
    )
    parser.add_argument("--url", help="a Tekton server (default: TEKTON_URL, else local)")
    parser.add_argument("--token", help="an API token, tkn_... (default: TEKTON_TOKEN)")
    args = parser.parse_args(argv)
    return tui_run(args.url, args.token)


if __name__ == "__main__":
    sys.exit(main())
