#!/usr/bin/env bash
# Create or update the project's virtual environment (.venv at the repository root) with pinned packages.
# Safe to run repeatedly: it reinstalls only when a requirements file changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=.venv/.requirements-stamp
wanted=$(cat requirements/*.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements/dev.txt
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements/meta-reference.txt
  # medsam3 web: every package pinned in the file, --no-deps because trame-slicer's slicer-layer-dm declares an older
  # slicer-core than requirements/dev.txt pins (docs/web.md; tests/apps/web/test_web_server.py guards the set)
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements/web.txt
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
  echo "$wanted" > "$stamp"
fi
# The web browser test drives Debian's chromium (Playwright's own browser download is not used). Installed only when
# missing, and only as root with apt-get; otherwise that test skips with one line saying so.
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup_env.sh: installing chromium (apt-get) for the web browser test"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
      || echo "setup_env.sh: chromium could not be installed; the web browser test will skip"
  else
    echo "setup_env.sh: /usr/bin/chromium is missing and this is not root with apt-get; the web browser test will skip"
  fi
fi
