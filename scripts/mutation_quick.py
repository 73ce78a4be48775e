"""Re-run the mutants mutmut generated for one module from ONE collected pytest session (issue 23).

mutmut runs each mutant in a process of its own; on a busy 2-core machine that costs seconds per mutant before a
test starts. Its mutants are switched at call time (mutmut's trampoline reads ``MUTANT_UNDER_TEST``), so the tests
are imported and collected once, and each mutant then runs them in a child forked from that process (``os.fork``):
no import or collection per mutant, and nothing one mutant does (a spoilt cache, a crash) reaches the next.

    scripts/mutation.sh volume            # generates the mutants (stop it once they run, or let it finish)
    python scripts/mutation_quick.py $MUTATION_WORK/volume/project/mutants src/medsam3/geometry/volume.py \
        tests/engine/geometry/test_volume.py [more pytest arguments]

A mutant is killed when one of the tests fails or errs (the first failure stops its child), when a test runs longer
than ``--seconds`` (a timeout), when its child runs longer than three times the unmutated run plus ``--seconds``
(a hang outside Python), or when its child dies (a crash such as a segmentation fault in slicer-core, or any exit
other than "all passed"), as mutmut counts them. It prints killed / survived / total, the score and every
survivor. ``MUTATION_MUTANTS`` (fnmatch patterns) chooses mutants, ``MUTATION_SHUFFLE=1`` runs them in a fixed
random order (seed 0), and ``MUTATION_SAMPLE=N`` runs only the first N of that order (a fixed random sample).
mutmut stays the reference: check a surprising survivor with ``MUTATION_MUTANTS=<name> scripts/mutation.sh <module>``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

PASSED, FAILED = 0, 1  # a child's exit codes; anything else (a signal, a crash) counts as killed


class _Timeout(Exception):
    pass


class _Runner:
    def __init__(self, names: list[str], seconds: int):
        self.names, self.seconds, self.killed = names, seconds, {}

    def _alarm(self, *_):
        raise _Timeout(f"a test ran longer than {self.seconds} s")

    def _fails(self, items) -> bool:
        from _pytest.runner import runtestprotocol

        for index, item in enumerate(items):
            signal.alarm(self.seconds)
            try:
                reports = runtestprotocol(item, log=False, nextitem=items[index + 1] if index + 1 < len(items) else None)
            except _Timeout:
                return True
            finally:
                signal.alarm(0)
            if any(report.failed for report in reports):
                return True
        return False

    def _in_child(self, items, mutant: str, limit: float | None) -> tuple[str, float]:
        """Run the tests against ``mutant`` in a forked child: ('passed' | 'failed' | why it died, seconds)."""
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 3
            try:
                os.environ["MUTANT_UNDER_TEST"] = mutant
                signal.signal(signal.SIGALRM, self._alarm)
                code = FAILED if self._fails(items) else PASSED
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if limit is not None and time.monotonic() - started > limit:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return f"ran past {limit:.0f} s", time.monotonic() - started
            time.sleep(0.05)
        seconds = time.monotonic() - started
        if os.WIFSIGNALED(status):
            return f"died of {signal.Signals(os.WTERMSIG(status)).name}", seconds
        code = os.WEXITSTATUS(status)
        return {PASSED: "passed", FAILED: "failed"}.get(code, f"exit code {code}"), seconds

    def pytest_runtestloop(self, session):
        outcome, baseline = self._in_child(session.items, "", None)
        if outcome != "passed":
            raise SystemExit(f"The tests fail without any mutant ({outcome}): fix them first.")
        limit = 3 * baseline + self.seconds
        for number, name in enumerate(self.names, start=1):
            outcome, _ = self._in_child(session.items, name, limit)
            self.killed[name] = outcome != "passed"
            how = "SURVIVED" if outcome == "passed" else "killed" + ("" if outcome == "failed" else f" ({outcome})")
            print(f"{number}/{len(self.names)} {name}: {how}", flush=True)
        return True


def main(argv: list[str]) -> int:
    import pytest

    seconds = 120
    if argv and argv[0].startswith("--seconds="):
        seconds, argv = int(argv[0].split("=", 1)[1]), argv[1:]
    mutants_dir, source, *pytest_args = argv
    os.chdir(mutants_dir)
    sys.path.insert(0, os.path.abspath("src"))
    with open(source + ".meta", encoding="utf-8") as stream:
        names = sorted(json.load(stream)["exit_code_by_key"])
    only = os.environ.get("MUTATION_MUTANTS", "").split()
    if only:
        from fnmatch import fnmatch
        names = [n for n in names if any(fnmatch(n, pattern) for pattern in only)]
    sample = int(os.environ.get("MUTATION_SAMPLE", "0"))
    if os.environ.get("MUTATION_SHUFFLE") or sample:  # a run stopped early then samples every function alike
        import random
        random.Random(0).shuffle(names)
    if sample:
        names = names[:sample]
    runner = _Runner(names, seconds)
    pytest.main(["-p", "no:cacheprovider", "-q", "-p", "no:randomly", *pytest_args], plugins=[runner])
    survivors = [n for n, killed in runner.killed.items() if not killed]
    total = len(runner.killed)
    print(f"{source}: {total - len(survivors)} killed, {len(survivors)} survived, {total} mutants, "
          f"score {(total - len(survivors)) / total:.1%}" if total else "no mutants run")
    for name in survivors:
        print("survived:", name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
