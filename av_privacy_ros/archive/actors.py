"""
The code that runs inside Ray actors: a bag worker and a progress board.

Both are plain classes (``ray.remote(BagWorker)`` makes the actor), so they can be used and
tested in one process too.  A worker builds its face detector once, with a capped number of
onnxruntime threads, and anonymizes one bag per call through :func:`anonymize_bag`.
"""

from __future__ import annotations

from dataclasses import dataclass
import os
from pathlib import Path
import socket
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple

PROGRESS_PERIOD_S = 0.5
"""A worker tells the board how far it got at most this often (plus at the end of a bag)."""


@dataclass(frozen=True)
class CrashOnce:
    """
    Fault injection for tests: the worker process exits on the first frame of one bag.

    It exits only while ``marker`` does not exist, and creates it first, so the retry of the
    bag (in a new worker process) runs through.
    """

    bag: str
    """Relative input path of the bag."""
    marker: str
    """File whose existence says that the crash happened already."""

    def maybe_crash(self, relative: str, frames_done: int) -> None:
        """Exit the process at once (no clean-up) when this is the bag and the first time."""
        if relative != self.bag or frames_done < 1 or os.path.exists(self.marker):
            return
        Path(self.marker).touch()
        os._exit(3)


class ProgressBoard:
    """Frames done and frames to do per bag, reported by workers and read by the driver."""

    def __init__(self) -> None:
        """Start with no bag."""
        self.frames: Dict[str, Tuple[int, int]] = {}

    def report(self, bag: str, done: int, total: int) -> None:
        """Record that ``done`` of ``total`` colour frames of ``bag`` are anonymized."""
        self.frames[bag] = (int(done), int(total))

    def totals(self) -> Tuple[int, int]:
        """Return (frames done, frames known to do) over every bag reported so far."""
        done = sum(d for d, _ in self.frames.values())
        total = sum(t for _, t in self.frames.values())
        return done, total


class BagWorker:
    """Anonymizes bags one at a time with a detector built once."""

    def __init__(self, params: Mapping[str, Any], threads: int,
                 crash_once: Optional[CrashOnce] = None) -> None:
        """
        Build the detector from the parameter overrides ``params``.

        ``threads`` caps onnxruntime's and OpenCV's CPU threads in this process so that several
        workers on one machine do not each take every core.
        """
        import cv2
        from .. import params as params_mod
        from ..detection import create_detector
        cv2.setNumThreads(max(1, int(threads)))
        self.params = dict(params)
        self.threads = int(threads)
        self.crash_once = crash_once
        self.name = '%s:%d' % (socket.gethostname(), os.getpid())
        self.detector: Any = None
        self.warnings: List[str] = []
        self.start_error = ''
        try:
            kwargs = params_mod.masker_kwargs(params_mod.resolve(self.params))
            self.detector, self.warnings = create_detector(
                backend=kwargs['backend'], model_path=kwargs['model_path'],
                providers=kwargs['providers'], det_size=kwargs['det_size'],
                trt_fp16=kwargs['trt_fp16'], trt_cache_dir=kwargs['trt_cache_dir'],
                allow_download=kwargs['allow_download'], threads=self.threads)
        except (ValueError, RuntimeError) as exc:
            # Told to the driver by describe(): one clear line instead of a dead actor.
            self.start_error = str(exc)

    def describe(self) -> Dict[str, Any]:
        """Return who this worker is: host:pid, pid, detector, warnings, start error."""
        detector = ('%s on %s' % (self.detector.backend, self.detector.provider)
                    if self.detector is not None else '')
        return {'name': self.name, 'pid': os.getpid(), 'detector': detector,
                'threads': self.threads, 'warnings': list(self.warnings),
                'error': self.start_error}

    def anonymize(self, input_path: str, output_path: str, relative: str,
                  bag_options: Mapping[str, Any], force: bool, board: Any = None
                  ) -> Dict[str, Any]:
        """
        Anonymize one bag with :func:`anonymize_bag`; return a result dictionary.

        The result holds ``ok``, ``summary`` (counts), ``error`` (one line) and ``retry``
        (False for a :class:`BagError`: the input or the options are wrong, and doing it again
        gives the same answer).  Other exceptions are returned too, to be retried.
        """
        from ..bag import anonymize_bag, BagError
        last_report = [0.0]

        def progress(done: int, total: int) -> None:
            if self.crash_once is not None:
                self.crash_once.maybe_crash(relative, done)
            now = time.monotonic()
            if board is not None and (now - last_report[0] >= PROGRESS_PERIOD_S
                                      or done == total):
                last_report[0] = now
                board.report.remote(relative, done, total)

        started = time.perf_counter()
        result: Dict[str, Any] = {'ok': False, 'summary': {}, 'error': '', 'retry': False,
                                  'worker': self.name, 'busy_s': 0.0}
        try:
            summary = anonymize_bag(input_path, output_path, params=self.params,
                                    detector=self.detector, force=force, progress=progress,
                                    **dict(bag_options))
        except BagError as exc:
            result['error'] = str(exc)
        except Exception as exc:  # noqa: BLE001 - reported and retried by the driver
            result['error'] = '%s: %s' % (type(exc).__name__, exc)
            result['retry'] = True
        else:
            result['ok'] = True
            result['summary'] = summary_counts(summary)
        result['busy_s'] = time.perf_counter() - started
        return result


SUMMARY_FIELDS = ('messages_read', 'messages_copied', 'frames_anonymized', 'faces_found',
                  'frames_failed_closed', 'frames_masked_backward', 'depth_anonymized',
                  'depth_failed_closed', 'masks_written', 'messages_dropped',
                  'processing_time_s', 'wall_time_s', 'detector')


def summary_counts(summary: Any) -> Dict[str, Any]:
    """Return the counts of a BagSummary as a plain dictionary (for Ray and the manifest)."""
    counts = {name: getattr(summary, name) for name in SUMMARY_FIELDS if hasattr(summary, name)}
    counts['cameras'] = [getattr(plan, 'topic', str(plan))
                         for plan in getattr(summary, 'cameras', [])]
    errors = getattr(summary, 'errors', {}) or {}
    counts['errors'] = dict(sorted(errors.items(), key=lambda kv: -kv[1])[:5])
    return counts
