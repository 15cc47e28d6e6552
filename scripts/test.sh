#!/usr/bin/env bash
# Set up everything on a fresh machine, lint and type-check, then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The web UI's end-to-end test drives a real headless Chromium (Debian's package; Playwright's
# own browser download is not needed). Install it when we can; the test says so when it is missing.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
echo "ruff: $(.venv/bin/ruff --version)"
.venv/bin/ruff check src tests benchmarks hubconf.py
echo "mypy: $(.venv/bin/mypy --version)"
.venv/bin/mypy
# pytest keeps the test modules it has rewritten (for its assert messages) beside them, as .pyc files, unless
# told not to write bytecode: without them every worker parses and rewrites every test module again at
# each run (~8 CPU-s a worker on this project's machines, where PYTHONDONTWRITEBYTECODE=1 is set).
unset PYTHONDONTWRITEBYTECODE
# One pytest-xdist worker per core (PYTEST_XDIST_AUTO_NUM_WORKERS overrides the count; `-n 0` after it runs
# serially), each test file on one worker so its module fixtures are built once; tests/conftest.py gives
# every worker, and every process a test starts, one torch thread.
exec .venv/bin/python -m pytest -n auto --dist loadfile "$@"
