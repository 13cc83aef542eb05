"""`python -m tests.faults.report [SCENARIO ...]`: run the fault scenarios, print the table.

The numbers are those of `scenarios.py`, the same the `fault` tests assert on. Exits 1 when
any scenario broke an invariant. gunicorn's logs are kept in a temporary directory, named at
the end.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from tests.faults.scenarios import SCENARIOS, format_report


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen scenarios (all by default) and print the report; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m tests.faults.report", description=__doc__)
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO", help=", ".join(SCENARIOS))
    names = parser.parse_args(argv).scenarios or list(SCENARIOS)
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {unknown[0]!r}; choose from {', '.join(SCENARIOS)}")
    # alembic's own logging would interleave each migration with the progress lines.
    logging.disable(logging.INFO)
    log_dir = Path(tempfile.mkdtemp(prefix="janus-reliability-"))
    results = []
    for name in names:
        print(f"running {name} ...", flush=True)
        started = time.monotonic()
        results.append(SCENARIOS[name](log_dir))
        print(f"  done in {time.monotonic() - started:.1f} s", flush=True)
    print()
    print(format_report(results))
    print(f"\ngunicorn logs: {log_dir}")
    return 1 if any(result.violations for result in results) else 0


if __name__ == "__main__":
    sys.exit(main())
