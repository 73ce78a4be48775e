"""Re-run the mutants mutmut generated for one module in ONE pytest process (issue 23).

mutmut runs each mutant in a process of its own; on a busy 2-core machine that costs seconds per mutant before a
test starts. Its mutants are switched at call time (mutmut's trampoline reads ``MUTANT_UNDER_TEST``), so one
collected pytest session can run the same tests against every mutant in turn:

    scripts/mutation.sh volume            # generates the mutants (stop it once they run, or let it finish)
    python scripts/mutation_quick.py $MUTATION_WORK/volume/project/mutants src/medsam3/geometry/volume.py \
        tests/engine/geometry/test_volume.py [more pytest arguments]

A mutant is killed when one of the tests fails or errs (the first failure stops its run), or when a test runs
longer than ``--seconds`` (a timeout). It prints killed / survived / total, the score and every survivor.
mutmut stays the reference (a mutant that corrupts a cache of the test process could spill into the next one; each
survivor can be checked with mutmut alone: ``MUTATION_MUTANTS=<name> scripts/mutation.sh <module>``).
"""

from __future__ import annotations

import json
import os
import signal
import sys


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

    def pytest_runtestloop(self, session):
        signal.signal(signal.SIGALRM, self._alarm)
        os.environ["MUTANT_UNDER_TEST"] = ""
        if self._fails(session.items):
            raise SystemExit("The tests fail without any mutant: fix them first.")
        for number, name in enumerate(self.names, start=1):
            os.environ["MUTANT_UNDER_TEST"] = name
            self.killed[name] = self._fails(session.items)
            print(f"{number}/{len(self.names)} {name}: {'killed' if self.killed[name] else 'SURVIVED'}", flush=True)
        os.environ["MUTANT_UNDER_TEST"] = ""
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
    if os.environ.get("MUTATION_SHUFFLE"):  # a run stopped early then samples every function alike
        import random
        random.Random(0).shuffle(names)
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
