#!/usr/bin/env bash
# Set everything up on a fresh machine, then run the whole test suite.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup_env.sh"
cd "$root"
exec .venv/bin/python -m pytest -q "$@"
