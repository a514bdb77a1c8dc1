"""
Adversarial suite: every case records what it tried and what leaked, and the run prints totals.

A case calls the ``adversarial`` fixture once per attack it tried::

    adversarial.record('bag: colour topic whose first message claims 16UC1',
                       raw_face_pixels=0, inputs_lost=0)

The tests assert zero themselves; the record is the suite's own report, printed at the end of the
run (``make adversarial``) as cases tried, raw face pixels found and inputs lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Tuple

import pytest


@dataclass
class AdversarialLedger:
    """Cases tried by the adversarial suite and what each one let through."""

    cases: List[Tuple[str, int, int]] = field(default_factory=list)

    def record(self, case: str, raw_face_pixels: int = 0, inputs_lost: int = 0) -> None:
        """Record one attack: its name, raw face pixels seen in outputs, input files lost."""
        self.cases.append((case, int(raw_face_pixels), int(inputs_lost)))


_LEDGER = AdversarialLedger()


@pytest.fixture
def adversarial() -> AdversarialLedger:
    """Return the run-wide ledger of adversarial cases."""
    return _LEDGER


def pytest_terminal_summary(terminalreporter: 'pytest.TerminalReporter') -> None:
    """Print the suite's figures: cases tried, raw face pixels, inputs lost."""
    if not _LEDGER.cases:
        return
    raw = sum(c[1] for c in _LEDGER.cases)
    lost = sum(c[2] for c in _LEDGER.cases)
    terminalreporter.section('adversarial suite')
    terminalreporter.write_line('cases tried: %d   raw face pixels in outputs: %d   '
                                'input files lost: %d' % (len(_LEDGER.cases), raw, lost))
    for case, case_raw, case_lost in _LEDGER.cases:
        if case_raw or case_lost:
            terminalreporter.write_line('  LEAK  %s: %d raw pixels, %d inputs lost'
                                        % (case, case_raw, case_lost))
