#!/usr/bin/env bash
# The main-job demo, from a fresh clone: set up the environment, then segment the spleen on a real CT from the
# typed word "spleen" and one click. Results (labelmap, .seg.nrrd, overlay PNG, timing.json) go to one folder.
#   scripts/demo.sh                      # the spleen CT in ../shared/data
#   scripts/demo.sh PATH/TO/CT.nii.gz    # another CT (file or DICOM folder); add --point X,Y,Z for a click
#   scripts/demo.sh --output DIR ...     # where the results go (default: output/demo in the repository)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup_env.sh"
exec "$root/.venv/bin/python" -m medsam3.apps.demo --output "$root/output/demo" "$@"  # a later --output wins
