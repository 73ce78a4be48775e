#!/usr/bin/env bash
# Set everything up on a fresh machine, then run the whole test suite.
# Inside a git checkout it then checks that the suite left the checkout as it found it (tests write only under
# pytest's tmp_path): a file added, changed or left behind -- ignored ones too, such as .hypothesis/ or
# __pycache__/ -- fails the run and is listed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup_env.sh"
cd "$root"
export PYTHONDONTWRITEBYTECODE=1  # no __pycache__ in the checkout, from pytest or from the commands tests start
in_git=false
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  in_git=true
  before="$(git status --porcelain --ignored)"
fi
status=0
.venv/bin/python -m pytest -q -p no:cacheprovider "$@" || status=$?
if $in_git; then
  after="$(git status --porcelain --ignored)"
  if [ "$after" != "$before" ]; then
    echo "The test suite wrote into the checkout (tests must write only under tmp_path):" >&2
    diff <(printf '%s\n' "$before") <(printf '%s\n' "$after") | sed -n 's/^> /  /p' >&2
    [ "$status" -ne 0 ] || status=1
  fi
fi
exit "$status"
