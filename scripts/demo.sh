#!/usr/bin/env bash
# Set up everything on a fresh machine, then stylise the built-in sample into demo.png.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/painterly demo -o "${1:-demo.png}"
