#!/usr/bin/env bash
# Set up Tekton on embedded defaults (SQLite, in-process execution, offline LLM backend),
# watch a complete nine-stage Diamond v5 run over this repository, then serve the
# dashboard on http://127.0.0.1:8000/ (Ctrl-C stops it).
#   --goal TEXT / --repo PATH   what the first run does (default: a demo goal on a small
#                               demo repository created under var/demo-repo)
#   --no-run                    skip the first run
#   --port N                    serve on another port
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_uv.sh

goal="Add a short CONTRIBUTING guide that explains how to run the tests"
repo=""
port=8000
first_run=1
while [ $# -gt 0 ]; do
  case "$1" in
    --goal) goal="$2"; shift 2 ;;
    --repo) repo="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    --no-run) first_run=0; shift ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

# --compile-bytecode: where PYTHONDONTWRITEBYTECODE is set (as on the development machine)
# Python caches nothing itself, and every manage.py start would compile Django and its
# libraries again: seconds of CPU (docs/benchmarks.md, CLI start-up).
uv sync --frozen --quiet --compile-bytecode
uv run python manage.py migrate --noinput >/dev/null
# Hashed, compressed static files for WhiteNoise; again only when a source is newer.
manifest="${TEKTON_STATIC_ROOT:-${TEKTON_DATA_DIR:-var}/staticfiles}/staticfiles.json"
if [ ! -f "$manifest" ] || [ -n "$(find static uv.lock tekton_site/settings.py -newer "$manifest" -print -quit)" ]; then
  echo "Collecting static files ..."
  uv run python manage.py collectstatic --noinput -v0
fi
uv run python manage.py tekton user-ensure admin

if [ "$first_run" = 1 ]; then
  if [ -z "$repo" ]; then
    # Tekton's own suite takes minutes; the demo repository's four tests take a second.
    # Under the checkout (an allowed root in embedded mode), wherever TEKTON_DATA_DIR points.
    repo="$(uv run python -m tekton_site.demo_repo var/demo-repo)"
    echo "First run on the demo repository $repo"
  fi
  echo "Starting a Diamond v5 run (offline backend unless an LLM key is set) ..."
  # A blocked or failed run is still worth looking at in the dashboard: go on either way.
  uv run python manage.py tekton run --goal "$goal" --repo "$repo" || true
fi

if [ "${TEKTON_UV_PATH_ADDED:-0}" = 1 ]; then
  # uv lives in ~/.local/bin, which this shell's PATH lacks: every later `uv run` would fail.
  echo "uv is installed in $HOME/.local/bin; put it on your PATH for the commands in README.md:"
  echo "  export PATH=\"\$HOME/.local/bin:\$PATH\"   # add this line to ~/.bashrc or ~/.profile"
fi
echo "Dashboard: http://127.0.0.1:${port}/  (log in as admin; Ctrl-C stops the server)"
exec uv run python manage.py runserver "127.0.0.1:${port}"
