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
# The full-size parity tests write 6.5 GB under pytest's temporary folder: say early when it will not fit (a full
# disk once failed CI with errors far from their cause).
scratch="$(.venv/bin/python -c 'import tempfile; print(tempfile.gettempdir())')"
free_gib="$(df -Pk "$scratch" | awk 'NR == 2 {print int($4 / 1048576)}')"
if [ "$free_gib" -lt 10 ]; then
  echo "warning: only ${free_gib} GiB free in $scratch; the full-size tests need about 10 GiB there (set TMPDIR to" \
       "a folder with room, or remove old /tmp/pytest-of-\$USER folders)." >&2
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
