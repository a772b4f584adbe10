"""`make test-stress`: the integration tests that start worker clusters (distributed, faults,
load) ROUNDS times in a row while a CPU hog keeps one core busy, as on a machine whose other
core is training. The modules run as `make test` runs them, on two pytest-xdist workers (faults
beside distributed and load), so each round has three busy processes on two cores. Prints each
round's result and duration; exits non-zero if any round failed.

    python tests/stress.py [--rounds 5] [--hogs 1] [--workers 2] [pytest args ...]
"""

from __future__ import annotations

import argparse
import multiprocessing
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODULES = [
    "tests/integration/test_distributed.py",
    "tests/integration/test_faults.py",
    "tests/integration/test_load.py",
]


def _hog() -> None:
    # at the tests' own priority: a real neighbour, not a polite one
    while True:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--hogs", type=int, default=1, help="busy-looping processes (one core each)"
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="pytest-xdist workers (1: one pytest process)"
    )
    options, pytest_args = parser.parse_known_args()
    if options.workers > 1:
        pytest_args = ["-n", str(options.workers), "--dist", "loadfile", "--no-loadscope-reorder", *pytest_args]
    hogs = [multiprocessing.Process(target=_hog, daemon=True) for _ in range(options.hogs)]
    for hog in hogs:
        hog.start()
    results = []
    try:
        for round_ in range(1, options.rounds + 1):
            started = time.monotonic()
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pytest",
                    "-q",
                    "-p",
                    "no:cacheprovider",
                    *MODULES,
                    *pytest_args,
                ],
                cwd=REPO,
            )
            seconds = time.monotonic() - started
            results.append((round_, done.returncode, seconds))
            result = "passed" if done.returncode == 0 else "FAILED"
            print(f"stress round {round_}/{options.rounds}: {result} in {seconds:.0f}s", flush=True)
    finally:
        for hog in hogs:
            hog.terminate()
            hog.join()
    failed = [r for r, code, _ in results if code != 0]
    print(
        f"stress: {len(results) - len(failed)}/{len(results)} rounds passed "
        f"with {options.hogs} CPU hog(s) and {options.workers} pytest worker(s); "
        f"durations {', '.join(f'{s:.0f}s' for _, _, s in results)}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
