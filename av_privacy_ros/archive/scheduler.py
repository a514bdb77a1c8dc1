"""
Hand the bags of an archive to Ray workers, retry what failed, record what finished.

The driver keeps the list of bags and the manifest; workers (Ray actors) anonymize one bag per
call.  A worker that dies (its process or its node) is replaced by a new one and the bag it was
running is handed out again, up to ``retries`` more times.  A bag whose input or options are
wrong (:class:`BagError`) is not retried: it would fail the same way.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
import datetime
from pathlib import Path
import shutil
from typing import Any, Deque, Dict, List, Mapping, Optional

from .actors import BagWorker, CrashOnce, ProgressBoard
from .cluster import ray_module, WorkerPlan
from .discovery import BagInput
from .manifest import DONE, FAILED, Manifest, ManifestRecord
from .report import ArchiveReport, BagOutcome

POLL_S = 0.5
STOP_TIMEOUT_S = 10.0


@dataclass
class Job:
    """One bag to anonymize and how often it was tried."""

    bag: BagInput
    output: Path
    force: bool
    """Replace an existing output: it is this archive's (or the user said --force)."""
    attempts: int = 0


@dataclass
class _Slot:
    """One worker: its actor handle, what it is running, and its pid once it answered."""

    actor: Any
    ready_ref: Any
    pid: int = 0
    name: str = ''
    job: Optional[Job] = None
    ref: Any = None


@dataclass
class Scheduler:
    """Runs the jobs on ``plan.workers`` Ray actors; see :meth:`run`."""

    plan: WorkerPlan
    params: Mapping[str, Any]
    bag_options: Mapping[str, Any]
    retries: int
    manifest: Manifest
    output_dir: Path
    report: ArchiveReport
    crash_once: Optional[CrashOnce] = None
    progress: Any = None
    """An object with ``update(bags_done, frames_done, frames_total)`` (the tqdm bars)."""
    slots: List[_Slot] = field(default_factory=list)

    def run(self, jobs: List[Job]) -> None:
        """Anonymize every job; record each one as it finishes."""
        ray = ray_module()
        board = ray.remote(ProgressBoard).options(num_cpus=0).remote()
        pending: Deque[Job] = deque(jobs)
        self.slots = [self._start_worker() for _ in range(self.plan.workers)]
        try:
            while pending or any(slot.job is not None for slot in self.slots):
                self._dispatch(pending, board)
                refs = [s.ref for s in self.slots if s.job is not None]
                refs += [s.ready_ref for s in self.slots if s.ready_ref is not None]
                if not refs:
                    raise RuntimeError('no Ray worker could be started for the remaining '
                                       '%d bag(s)' % len(pending))
                done, _ = ray.wait(refs, num_returns=1, timeout=POLL_S)
                for ref in done:
                    self._collect(ref, pending)
                if self.progress is not None:
                    frames_done, frames_total = ray.get(board.totals.remote())
                    self.progress.update(self.report.finished, frames_done, frames_total)
        finally:
            self._stop_workers()
            ray.kill(board)

    def _stop_workers(self) -> None:
        """Kill every worker; remove the staging folders of bags cut short (an interrupt)."""
        ray = ray_module()
        for slot in self.slots:
            ray.kill(slot.actor)
        running = [slot for slot in self.slots if slot.job is not None]
        if running:
            # A killed worker's call ends with an error; wait for that before removing its
            # staging folder, so that nothing writes into it any more.
            ray.wait([slot.ref for slot in running], num_returns=len(running),
                     timeout=STOP_TIMEOUT_S)
            for slot in running:
                assert slot.job is not None
                self._remove_staging(slot.job, slot.pid)

    # workers -------------------------------------------------------------------------------
    def _start_worker(self) -> _Slot:
        ray = ray_module()
        options: Dict[str, Any] = {'num_cpus': self.plan.cpus, 'max_restarts': 0}
        if self.plan.gpus:
            options['num_gpus'] = self.plan.gpus
        actor = ray.remote(BagWorker).options(**options).remote(
            dict(self.params), self.plan.cpus, self.crash_once)
        return _Slot(actor=actor, ready_ref=actor.describe.remote())

    def _dispatch(self, pending: Deque[Job], board: Any) -> None:
        for slot in self.slots:
            if not pending:
                return
            if slot.job is None and slot.ready_ref is None and slot.pid:
                job = pending.popleft()
                job.attempts += 1
                slot.job = job
                slot.ref = slot.actor.anonymize.remote(
                    str(job.bag.path), str(job.output), job.bag.relative,
                    dict(self.bag_options), job.force, board)

    def _collect(self, ref: Any, pending: Deque[Job]) -> None:
        ray = ray_module()
        for index, slot in enumerate(self.slots):
            if slot.ready_ref is not None and ref == slot.ready_ref:
                slot.ready_ref = None
                try:
                    info = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    # The detector could not be built: every worker would fail alike.
                    raise RuntimeError('a worker could not start: %s' % _one_line(exc)) from exc
                if info.get('error'):
                    raise ValueError('the workers cannot build the face detector: %s'
                                     % info['error'])
                slot.pid, slot.name = int(info['pid']), str(info['name'])
                self.report.note_worker(info)
                return
            if slot.job is not None and ref == slot.ref:
                job, slot.job, slot.ref = slot.job, None, None
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    result = {'ok': False, 'summary': {}, 'retry': True, 'busy_s': 0.0,
                              'worker': slot.name,
                              'error': 'the worker running it died: %s' % _one_line(exc)}
                    self._remove_staging(job, slot.pid)
                    ray.kill(slot.actor)
                    self.slots[index] = self._start_worker()
                self._finish(job, result, pending)
                return

    def _remove_staging(self, job: Job, pid: int) -> None:
        """Remove the hidden staging folder a dead worker left beside the output."""
        staging = job.output.parent / ('.%s.partial-%d' % (job.output.name, pid))
        if pid and staging.is_dir():
            shutil.rmtree(staging, ignore_errors=True)

    # results -------------------------------------------------------------------------------
    def _finish(self, job: Job, result: Mapping[str, Any], pending: Deque[Job]) -> None:
        if not result['ok'] and result.get('retry') and job.attempts <= self.retries:
            self.report.retried += 1
            pending.append(job)
            return
        error = str(result.get('error', ''))
        if not result['ok'] and job.attempts > 1:
            error = '%s (after %d attempts)' % (error, job.attempts)
        record = ManifestRecord(
            input_path=job.bag.relative, size=job.bag.size, mtime_ns=job.bag.mtime_ns,
            status=DONE if result['ok'] else FAILED,
            output=job.bag.output_relative(), summary=dict(result.get('summary', {})),
            error=error, attempts=job.attempts, worker=str(result.get('worker', '')),
            finished=datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec='seconds'))
        self.manifest.append(record)
        self.report.add(BagOutcome.from_record(record, float(result.get('busy_s', 0.0))))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return '%s: %s' % (type(exc).__name__, text[0] if text else '')
