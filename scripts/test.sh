#!/usr/bin/env bash
# Run Tekton's full test suite. Integration tests use PostgreSQL and Redis on 127.0.0.1
# (TEKTON_TEST_DATABASE_URL, TEKTON_TEST_REDIS_URL); they skip with the reason when those
# are unreachable, unless TEKTON_REQUIRE_SERVICES=1 (CI), where that is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_uv.sh

# --compile-bytecode: where PYTHONDONTWRITEBYTECODE is set (as on the development machine)
# Python caches nothing itself, and every manage.py start would compile Django and its
# libraries again: seconds of CPU (docs/benchmarks.md, CLI start-up).
uv sync --frozen --quiet --compile-bytecode
exec uv run pytest "$@"
