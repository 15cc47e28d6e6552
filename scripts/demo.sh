#!/usr/bin/env bash
# Set up what the demo needs on a fresh machine (the library alone, not the test tools), then
# stylise the built-in sample into demo.png.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh lean
exec .venv/bin/painterly demo -o "${1:-demo.png}"
