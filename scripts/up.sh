#!/usr/bin/env bash
# Set up Tekton on embedded defaults (SQLite, in-process execution, offline LLM backend)
# and run a complete nine-stage Diamond v5 run over this repository.
# Extra arguments go to `manage.py tekton run`, e.g. --goal "..." --repo PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_uv.sh

uv sync --frozen --quiet
uv run python manage.py migrate --noinput >/dev/null
echo "Tekton is set up (data in ${TEKTON_DATA_DIR:-var/}). Starting a Diamond v5 run ..."
if [ $# -eq 0 ]; then
  set -- --goal "Add a short CONTRIBUTING guide that explains how to run the tests" --repo .
fi
exec uv run python manage.py tekton run "$@"
