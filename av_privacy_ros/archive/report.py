"""What an archive run did: per bag and per worker, and the final table for the user."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping

from .manifest import DONE, ManifestRecord


@dataclass(frozen=True)
class BagOutcome:
    """How one bag ended in this run."""

    input_path: str
    ok: bool
    frames: int
    faces: int
    worker: str
    busy_s: float
    attempts: int
    error: str = ''

    @classmethod
    def from_record(cls, record: ManifestRecord, busy_s: float) -> 'BagOutcome':
        """Build the outcome from the manifest record just written."""
        summary = record.summary or {}
        return cls(input_path=record.input_path, ok=record.status == DONE,
                   frames=int(summary.get('frames_anonymized', 0)),
                   faces=int(summary.get('faces_found', 0)), worker=record.worker,
                   busy_s=busy_s, attempts=record.attempts, error=record.error)


@dataclass
class ArchiveReport:
    """Counts of one archive run; :meth:`lines` renders the final summary table."""

    bags_found: int = 0
    skipped: int = 0
    retried: int = 0
    outcomes: List[BagOutcome] = field(default_factory=list)
    workers: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    plan: str = ''
    wall_s: float = 0.0

    def add(self, outcome: BagOutcome) -> None:
        """Record a bag that finished (done or failed for good)."""
        self.outcomes.append(outcome)

    def note_worker(self, info: Mapping[str, Any]) -> None:
        """Record a worker that started (its name, detector and threads)."""
        self.workers[str(info['name'])] = dict(info)

    @property
    def finished(self) -> int:
        """Return the bags finished in this run (done or failed)."""
        return len(self.outcomes)

    @property
    def done(self) -> List[BagOutcome]:
        """Return the bags anonymized in this run."""
        return [o for o in self.outcomes if o.ok]

    @property
    def failed(self) -> List[BagOutcome]:
        """Return the bags that failed for good in this run."""
        return [o for o in self.outcomes if not o.ok]

    @property
    def frames(self) -> int:
        """Return the colour frames anonymized in this run."""
        return sum(o.frames for o in self.done)

    @property
    def frames_per_second(self) -> float:
        """Return frames anonymized per second of the whole run (start-up included)."""
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    def per_worker(self) -> Dict[str, Dict[str, float]]:
        """Return bags, frames, busy seconds and frames per busy second of each worker."""
        table: Dict[str, Dict[str, float]] = {}
        for outcome in self.outcomes:
            row = table.setdefault(outcome.worker or '?', {'bags': 0, 'frames': 0,
                                                           'busy_s': 0.0})
            row['bags'] += 1
            row['frames'] += outcome.frames
            row['busy_s'] += outcome.busy_s
        for row in table.values():
            row['fps'] = row['frames'] / row['busy_s'] if row['busy_s'] > 0 else 0.0
        return table

    def lines(self) -> List[str]:
        """Return the end-of-run summary as text lines."""
        rows = [
            'bags found: %d' % self.bags_found,
            '  done: %d' % len(self.done),
            '  skipped (done in an earlier run, input unchanged): %d' % self.skipped,
            '  failed: %d' % len(self.failed),
            'retries: %d' % self.retried,
            'frames anonymized: %d' % self.frames,
            'faces found: %d' % sum(o.faces for o in self.done),
            'wall time: %.1f s, %.1f frames/s overall' % (self.wall_s, self.frames_per_second),
        ]
        if self.plan:
            rows.append('workers: %s' % self.plan)
        workers = self.per_worker()
        if workers:
            rows.append('%-32s %6s %8s %9s %9s' % ('worker', 'bags', 'frames', 'busy s',
                                                   'frames/s'))
            for name in sorted(workers):
                row = workers[name]
                rows.append('%-32s %6d %8d %9.1f %9.1f' % (name[-32:], row['bags'],
                                                           row['frames'], row['busy_s'],
                                                           row['fps']))
        for outcome in self.failed:
            rows.append('FAILED %s: %s' % (outcome.input_path, outcome.error))
        return rows
