#!/usr/bin/env bash
# Mutation testing with mutmut over the modules where a silent error hurts a patient or a user (issue 23).
#
#   scripts/mutation.sh                 every module below
#   scripts/mutation.sh slicing session only those (names from the table)
#
# Each module is mutated in its own throw-away copy of the checkout (under $MUTATION_WORK, default a temporary
# folder): the checkout itself is never written. mutmut imports the code from src/, so the copy lays
# MedicalSAM3Slicer/ out as src/. For each module the script prints killed / total and the score
# ((killed + timeouts) / mutants tested), and writes the surviving mutants' diffs to
# $MUTATION_OUT/<module>.survivors.txt (default /tmp/medsam3-mutation). docs/testing.md keeps the scores and
# says, for each survivor, which test kills it now or why it is equivalent.
# Not in CI: a module takes minutes to an hour. MUTATION_CHILDREN (default 2) sets the parallel test processes.
# MUTATION_MUTANTS (mutmut's fnmatch patterns, e.g. '*x_instance_f1__mutmut_*') re-runs only those mutants, e.g.
# a module's survivors against new tests; the other mutants then count as not checked, not as killed.
# MUTATION_KEYWORD replaces the module's pytest -k expression (e.g. only the new tests for such a re-run).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${MUTATION_PYTHON:-$root/.venv/bin/python}"  # MUTATION_PYTHON: another environment with requirements/dev.txt
[ -x "$python" ] || { "$root/scripts/setup_env.sh"; }
"$python" -m pip install --quiet --disable-pip-version-check -r "$root/requirements/mutation.txt"
mutmut="$(dirname "$python")/mutmut"
out="${MUTATION_OUT:-/tmp/medsam3-mutation}"
children="${MUTATION_CHILDREN:-2}"
mkdir -p "$out"

# name | files to mutate (under MedicalSAM3Slicer/) | the tests that should kill their mutants | optional pytest -k
# expression choosing among those tests (the slow parametrised placement tests: one volume with negative direction
# cosines, every view)
modules=(
  "slicing|medsam3/geometry/slicing.py|tests/engine/geometry/test_slicing.py tests/engine/interaction/test_orientation_placement.py tests/engine/interaction/test_engine_placement.py|slicing or brats_tumour or propagation"
  "model_frame|medsam3/geometry/model_frame.py|tests/engine/geometry/test_model_frame.py tests/engine/geometry/test_slicing.py tests/engine/model/test_preprocessing_parity.py"
  "volume|medsam3/geometry/volume.py|tests/engine/geometry tests/apps/test_bad_volumes.py"
  "session|medsam3/interaction/session.py|tests/engine/interaction/test_session.py"
  "server_auth|medsam3/apps/server/keys.py medsam3/apps/server/gate.py|tests/apps/server/test_gate_rules.py tests/apps/server/test_server_key_file.py tests/apps/server/test_server_gate.py tests/apps/server/test_server_users.py tests/apps/server/test_server.py tests/apps/server/test_server_limits.py"
  "server_limits|medsam3/apps/server/rate_limit.py medsam3/apps/server/memory_budget.py medsam3/apps/server/body_limit.py|tests/apps/server/test_server_budget_rules.py tests/apps/server/test_server_limits.py tests/apps/server/test_server_gate.py tests/apps/server/test_server_hardening.py"
  "wire_format|medsam3/transports/wire_format.py|tests/apps/server/test_wire_format.py tests/apps/server/test_prompt_messages.py tests/apps/server/test_server_hardening.py tests/apps/server/test_server_limits.py tests/apps/test_bad_volumes.py"
  "metrics|medsam3/apps/evaluation/metrics.py|tests/apps/evaluation/test_evaluate_metrics.py"
  "click_simulator|medsam3/apps/evaluation/click_simulator.py|tests/apps/evaluation/test_click_simulator.py tests/apps/evaluation/test_evaluate_metrics.py tests/apps/evaluation/test_evaluate_command.py"
  "batch_journal|medsam3/apps/batch/journal.py medsam3/apps/batch/case_commit.py|tests/apps/batch/test_batch_journal.py tests/apps/batch/test_batch_resume.py tests/apps/batch/test_batch.py"
  "segment_io|MedicalSAM3SlicerLib/segment_io.py|tests/bridge/test_slicer_segment_binding.py tests/bridge/test_slicer_segments.py tests/bridge/test_slicer_closed_surface.py tests/bridge/test_slicer_oblique_geometry.py tests/bridge/test_slicer_data_safety.py"
  "outputs|medsam3/files/outputs.py medsam3/files/seg_nrrd.py|tests/engine/files tests/apps/cli/test_cli_outputs.py tests/apps/test_one_writer.py tests/bridge/test_slicer_exports.py"
)

wanted=("$@")
read -r -a only <<<"${MUTATION_MUTANTS:-}"  # word-split, never globbed
selected() { [ ${#wanted[@]} -eq 0 ] && return 0; local w; for w in "${wanted[@]}"; do [ "$w" = "$1" ] && return 0; done; return 1; }

work_root="${MUTATION_WORK:-$(mktemp -d /tmp/medsam3-mutation-work.XXXXXX)}"
shared="$(cd "$root/.." && pwd)/shared"
printf '%-16s %8s %8s %8s %8s %8s %7s\n' module killed timeout survived no_tests total score
for entry in "${modules[@]}"; do
  IFS='|' read -r name files tests keyword <<<"$entry"
  keyword="${MUTATION_KEYWORD:-$keyword}"
  selected "$name" || continue
  copy="$work_root/$name/project"
  rm -rf "$work_root/$name" && mkdir -p "$copy"
  # the checkout as it is now (committed or not), MedicalSAM3Slicer/ as src/
  (cd "$root" && git ls-files -co --exclude-standard -z 2>/dev/null || find . -type f -not -path './.git/*' -print0) \
    | (cd "$root" && xargs -0 tar cf -) | (cd "$copy" && tar xf -)
  mv "$copy/MedicalSAM3Slicer" "$copy/src"
  ln -s "$shared" "$work_root/$name/shared"  # the tests' ../shared/data, from the copy
  ln -s "$shared" "$copy/shared"             # and from mutmut's mutants/ folder inside it
  # torch and MONAI imported once in the fork server (it collects the tests, so it loads conftest.py), not in every
  # mutant's process: the engine and the metrics import them on first use, which takes a minute on a busy machine
  # (one thread each: a thread pool started in the fork server hangs the processes forked from it)
  cat >>"$copy/tests/conftest.py" <<'PRELOAD'

try:  # added by scripts/mutation.sh in its copy
    import torch, monai.metrics  # noqa: F401,E401
    torch.set_num_threads(1)
except ImportError:
    pass
PRELOAD
  {
    printf '\n[tool.mutmut]\nsource_paths = ["src"]\nonly_mutate = ['
    first=1; for f in $files; do [ $first -eq 1 ] || printf ', '; printf '"src/%s"' "$f"; first=0; done
    printf ']\npytest_add_cli_args = ["-p", "no:cacheprovider", "-q"]\npytest_add_cli_args_test_selection = ['
    first=1; for t in $tests; do [ $first -eq 1 ] || printf ', '; printf '"%s"' "$t"; first=0; done
    [ -z "$keyword" ] || printf ', "-k", "%s"' "$keyword"
    # forkserver: the tests use torch, whose thread pools do not survive a fork from a process that ran them
    printf ']\nuse_git_change_detection = false\nprocess_isolation = "forkserver"\nforkserver_warmup = "collect"\n'
  } >>"$copy/pyproject.toml"
  log="$out/$name.log"
  (cd "$copy" && env -u PYTHONPATH PYTHONDONTWRITEBYTECODE=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 "$mutmut" run --max-children "$children" ${only[@]+"${only[@]}"} >"$log" 2>&1) || true
  (cd "$copy" && "$mutmut" export-cicd-stats >>"$log" 2>&1) || true
  stats="$copy/mutants/mutmut-cicd-stats.json"
  if [ ! -f "$stats" ]; then
    printf '%-16s did not run: see %s\n' "$name" "$log"
    continue
  fi
  # (not the mutants MUTATION_MUTANTS left out: mutmut lists them as "not checked")
  (cd "$copy" && "$mutmut" results 2>/dev/null | while read -r mutant status; do
     [ "$status" != "not checked" ] || continue
     mutant="${mutant%:}"; echo "=== $mutant"; "$mutmut" show "$mutant" 2>/dev/null; done) >"$out/$name.survivors.txt" || true
  "$python" - "$stats" "$name" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
tested = s["total"] - s["skipped"]
checked = sum(s[key] for key in ("killed", "timeout", "survived", "no_tests", "suspicious", "segfault"))
if checked < tested:  # MUTATION_MUTANTS: the score among the mutants re-run
    tested = checked
score = (s["killed"] + s["timeout"]) / tested if tested else float("nan")
print(f"{sys.argv[2]:<16} {s['killed']:>8} {s['timeout']:>8} {s['survived']:>8} {s['no_tests']:>8} {s['total']:>8} {score:>7.1%}"
      + (f" of the {checked} re-run" if checked < s["total"] - s["skipped"] else ""))
PY
done
echo "survivors and logs: $out"
