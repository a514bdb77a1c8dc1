#!/usr/bin/env python3
"""
Run every ``scripts/bench*.py`` in turn: ``make bench``.

Each benchmark prints its own table. A benchmark that cannot run with the detector this
machine has (the SCRFD comparison without SCRFD weights) exits with status 75 and prints why
as its last line; the others run anyway. At the end one line names what was skipped and why.
Exit status 0 unless a benchmark failed.
"""

from __future__ import annotations

from pathlib import Path
import subprocess
import sys
from typing import List, Tuple

EXIT_SKIPPED = 75
SCRIPTS = Path(__file__).resolve().parent


def run(script: Path) -> Tuple[int, str]:
    """Run one benchmark, echoing its output; return its exit status and last line."""
    print('== %s' % script.relative_to(SCRIPTS.parent), flush=True)
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, bufsize=1)
    last = ''
    assert process.stdout is not None
    for line in process.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        if line.strip():
            last = line.strip()
    return process.wait(), last


def main() -> int:
    """Run the benchmarks; return 0 unless one failed."""
    skipped: List[str] = []
    failed: List[str] = []
    for script in sorted(SCRIPTS.glob('bench*.py')):
        status, last = run(script)
        if status == EXIT_SKIPPED:
            skipped.append('%s (%s)' % (script.name, last.replace('skipped: ', '', 1)))
        elif status != 0:
            failed.append('%s (exit status %d)' % (script.name, status))
    print()
    print('skipped: %s' % ('; '.join(skipped) if skipped else 'none'))
    if failed:
        print('failed: %s' % '; '.join(failed))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
