#!/usr/bin/env bash
# Creates .venv and installs painterly into it; quick when already done.
#   scripts/setup.sh        painterly[dev]: the library, every extra and the test tools (scripts/test.sh)
#   scripts/setup.sh lean   the library and the `painterly` command only (scripts/demo.sh)
# An install with [dev] satisfies a later lean one; a lean one is followed by [dev] when that is asked for.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-dev}" in
    dev) spec=".[dev]" stamp=.venv/.painterly-installed ;;
    lean) spec="." stamp=.venv/.painterly-installed-lean ;;
    *) echo "usage: scripts/setup.sh [dev|lean]" >&2; exit 2 ;;
esac
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
fresh() { [ -f "$1" ] && [ ! pyproject.toml -nt "$1" ] && [ ! scripts/setup.sh -nt "$1" ]; }
if ! fresh "$stamp" && ! fresh .venv/.painterly-installed; then
    .venv/bin/python -m pip install --quiet -e "$spec"
    touch "$stamp"
fi
