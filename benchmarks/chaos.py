"""The chaos test's long version (issue #17): 50 SIGKILLs of the stream workers while a trace with four
migrations is published paced over four minutes and the alerts topic refuses alerts for 15 s.

    python benchmarks/chaos.py [--kills 50] [--paced 240] [--seed 1]

Runs ``pytest tests/test_chaos.py -s`` with MIGWATCH_CHAOS_KILLS, MIGWATCH_CHAOS_PACED_S and
MIGWATCH_CHAOS_SEED, and prints its outcome and figures: kills, refused produces, expected alerts found on the
topic, dead letters, and how long after its event time each alert reached the topic. Needs the local Kafka
(the test's fixture starts it when none runs). The README's reliability table holds a run's figures.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_chaos.py", "-s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--paced", type=float, default=240.0, help="seconds of the trace published in real time")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    env = {**os.environ, "MIGWATCH_CHAOS_KILLS": str(args.kills), "MIGWATCH_CHAOS_PACED_S": str(args.paced),
           "MIGWATCH_CHAOS_SEED": str(args.seed)}  # fmt: skip
    started = time.monotonic()
    result = subprocess.run(TEST, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800, check=False)
    took = time.monotonic() - started
    found = re.search(r"^chaos \(seed .*$", result.stdout, re.MULTILINE)
    if found:
        print(found.group(0))
    else:  # the assertion that failed, without the workers' logs the test appends to it
        failed = re.search(r"^E\s+AssertionError.*$", result.stdout, re.MULTILINE)
        print(failed.group(0)[:3000] if failed else result.stdout[-3000:])
    print(f"{'passed' if result.returncode == 0 else 'FAILED'} in {took:.0f} s (seed {args.seed})")
    sys.exit(result.returncode)


if __name__ == "__main__":
    main()
