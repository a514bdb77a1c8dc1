"""
The anonymizer's counters and their snapshots, for ``statistics()`` and /diagnostics.

Pure Python (no rclpy): :class:`NodeStats` holds what the node's callbacks, its worker and its
timer count; :meth:`NodeStats.snapshot` copies it under its lock into a frozen
:class:`StatsSnapshot`; :func:`statistics` and :func:`diagnostic_values` turn a snapshot into
the node's ``statistics()`` dictionary and the key/value pairs of its DiagnosticStatus, and
:meth:`NodeStats.stall_reason` says why nothing is published while input arrives.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
import os
import threading
import time
from typing import Any, Deque, Dict, List, Optional, Sequence, Tuple

from .boxes import percentile_ms

LATENCY_WINDOW = 512
"""Latency samples kept for ``statistics()``."""
DIAGNOSTICS_SAMPLES = 64
"""Newest detect and process samples behind the p50 values on /diagnostics."""
STALL_S = 1.0
"""Seconds of input without any output after which /diagnostics reports WARN with a reason."""

# DiagnosticStatus levels (diagnostic_msgs keeps them as bytes; the node converts).
OK, WARN, ERROR = 0, 1, 2


@dataclass(frozen=True)
class StatsSnapshot:
    """
    The node's counters at one moment, with latency samples in seconds.

    ``latencies`` is the whole window (receive to publish), ``period_latencies`` those since the
    previous /diagnostics status, ``detect_times`` and ``process_times`` the detector's and the
    worker's share of each published frame. ``dropped_unpaired`` counts inputs the pairer gave
    up on; ``time_jumps`` clock jumps seen by the node and its pairer.
    """

    images_received: int
    depths_received: int
    frames_in: int
    frames_out: int
    dropped_busy: int
    dropped_unpaired: int
    failed_closed: int
    input_errors: int
    publish_errors: int
    faces: int
    tracks: int
    tracks_held: int
    track_sources: str
    last_error: str
    time_jumps: int
    latencies: Tuple[float, ...]
    period_latencies: Tuple[float, ...]
    detect_times: Tuple[float, ...]
    process_times: Tuple[float, ...]

    @property
    def frames_dropped(self) -> int:
        """Return every input pair dropped: the worker was busy or no partner arrived."""
        return self.dropped_busy + self.dropped_unpaired


class NodeStats:
    """Counters and latency samples shared by the callbacks, the worker and diagnostics."""

    def __init__(self, now: Optional[float] = None) -> None:
        """Start every counter at 0; ``now`` (monotonic seconds) is the start time."""
        self.lock = threading.RLock()  # the node reads its pairer's counters under it
        self.images_received = 0
        self.depths_received = 0
        self.frames_in = 0
        self.frames_out = 0
        self.dropped_busy = 0
        self.failed_closed = 0
        self.input_errors = 0
        self.publish_errors = 0
        self.latencies: Deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.detect_times: Deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.process_times: Deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.period_latencies: List[float] = []
        self.faces = 0
        self.tracks = 0
        self.tracks_held = 0
        self.track_sources = ''
        self.last_error = ''
        self.time_jumps = 0
        self.filter_pruned = 0
        # Stall detection: when the last output left, when input first arrived after it, and
        # the counters at the last output (what changed since tells why nothing is published).
        self.last_output = time.monotonic() if now is None else now
        self.last_input = 0.0
        self.first_input_since_output: Optional[float] = None
        self.at_last_output: Dict[str, int] = {}

    def counters(self) -> Dict[str, int]:
        """Return the counters that explain a stall (call with the lock held)."""
        return {'images': self.images_received, 'depths': self.depths_received,
                'pairs': self.frames_in, 'input_errors': self.input_errors,
                'failed_closed': self.failed_closed}

    def input_arrived(self, now: Optional[float] = None) -> None:
        """Note that an input message arrived (call with the lock held)."""
        now = time.monotonic() if now is None else now
        self.last_input = now
        if self.first_input_since_output is None:
            self.first_input_since_output = now

    def output_published(self, published: float, latency: float, process_s: float,
                         detect_s: Optional[float], faces: int,
                         tracks: Sequence[Tuple[int, str]]) -> None:
        """
        Count one published frame (call with the lock held).

        ``detect_s`` is None for a frame that failed closed (no detector time to count);
        ``tracks`` are the masked faces' (track id, source) pairs.
        """
        self.last_output = published
        self.first_input_since_output = None
        self.at_last_output = self.counters()
        self.frames_out += 1
        self.latencies.append(latency)
        self.period_latencies.append(latency)
        self.process_times.append(process_s)
        if detect_s is not None:
            self.detect_times.append(detect_s)
        self.faces = faces
        self.tracks = len(tracks)
        self.tracks_held = sum(1 for _, source in tracks if source == 'held')
        # Track ids and where each masked box came from, e.g. '3:detected 5:held'.
        self.track_sources = ' '.join('%d:%s' % (track_id, source) for track_id, source in tracks)

    def count_error(self, counter: str, error: object) -> None:
        """Add one to ``counter`` (e.g. ``'input_errors'``) and keep the error's text."""
        with self.lock:
            setattr(self, counter, getattr(self, counter) + 1)
            self.last_error = str(error or '')

    def snapshot(self, dropped_unpaired: int = 0, time_jumps: int = 0,
                 new_period: bool = False) -> StatsSnapshot:
        """
        Return a copy of the counters; ``new_period`` also starts a new diagnostics period.

        ``dropped_unpaired`` and ``time_jumps`` add what the pairer counts on its own.
        """
        with self.lock:
            period = tuple(self.period_latencies)
            if new_period:
                self.period_latencies = []
            return StatsSnapshot(
                images_received=self.images_received, depths_received=self.depths_received,
                frames_in=self.frames_in, frames_out=self.frames_out,
                dropped_busy=self.dropped_busy, dropped_unpaired=int(dropped_unpaired),
                failed_closed=self.failed_closed, input_errors=self.input_errors,
                publish_errors=self.publish_errors, faces=self.faces, tracks=self.tracks,
                tracks_held=self.tracks_held, track_sources=self.track_sources,
                last_error=self.last_error, time_jumps=self.time_jumps + int(time_jumps),
                latencies=tuple(self.latencies), period_latencies=period,
                detect_times=tuple(self.detect_times), process_times=tuple(self.process_times))

    def stall_reason(self, now: float, idle_after_s: float, fail_mode: str, use_depth: bool,
                     slop_s: float) -> Optional[str]:
        """
        Return why nothing was published for STALL_S while input arrives, or None.

        Compares the counters with those at the last output: which inputs arrived, whether they
        were paired, refused as malformed, or failed closed with fail_mode drop. Input that
        stopped more than ``idle_after_s`` (at least STALL_S) ago is idle, not a stall.
        """
        with self.lock:
            first = self.first_input_since_output
            if first is None or now - first < STALL_S:
                return None
            if now - self.last_input > max(STALL_S, idle_after_s):
                return None  # the input stopped: idle, not stalled
            current = self.counters()
            before = self.at_last_output
            last_error = self.last_error
            silent_s = now - max(self.last_output, 0.0)
        delta = {name: value - before.get(name, 0) for name, value in current.items()}
        if delta['input_errors'] > 0:
            why = 'the inputs are malformed and dropped (%s)' % last_error[:160]
        elif delta['pairs'] > 0 and delta['failed_closed'] > 0 and fail_mode == 'drop':
            why = ('frames fail closed (%s) and fail_mode is drop'
                   % (last_error[:160] or 'detector warm-up not finished'))
        elif delta['pairs'] > 0:
            why = ('frames arrive but are not processed: the worker is stuck or takes more '
                   'than %.0f s a frame' % STALL_S)
        elif use_depth and delta['images'] > 0 and delta['depths'] == 0:
            why = 'colour images arrive but no depth image (use_depth is true)'
        elif use_depth and delta['depths'] > 0 and delta['images'] == 0:
            why = 'depth images arrive but no colour image'
        elif use_depth:
            why = ('colour and depth images arrive but are not paired: their stamps differ by '
                   'more than sync.slop (%g s); check that depth is aligned and stamped like '
                   'colour' % slop_s)
        else:
            why = 'images arrive but none was processed'
        return 'nothing published for %.1f s while input arrives: %s' % (
            min(silent_s, now - first), why)


def statistics(snapshot: StatsSnapshot, ready: bool) -> Dict[str, Any]:
    """Return what the node's statistics method gives: counters, latency p50/p95 in ms."""
    return {
        'ready': ready,
        'images_received': snapshot.images_received,
        'depths_received': snapshot.depths_received,
        'frames_in': snapshot.frames_in,
        'frames_out': snapshot.frames_out,
        'frames_dropped': snapshot.frames_dropped,
        'dropped_busy': snapshot.dropped_busy,
        'failed_closed': snapshot.failed_closed,
        'input_errors': snapshot.input_errors,
        'publish_errors': snapshot.publish_errors,
        'faces': snapshot.faces,
        'tracks': snapshot.tracks,
        'tracks_held': snapshot.tracks_held,
        'track_sources': snapshot.track_sources,
        'last_error': snapshot.last_error,
        'latency_p50_ms': percentile_ms(snapshot.latencies, 50),
        'latency_p95_ms': percentile_ms(snapshot.latencies, 95),
        'detect_p50_ms': percentile_ms(snapshot.detect_times, 50),
        'process_p50_ms': percentile_ms(snapshot.process_times, 50),
    }


@dataclass(frozen=True)
class NodeState:
    """What /diagnostics tells about the node beside its counters."""

    backend: str
    provider: str
    ready: bool
    sync: str
    fail_mode: str
    focal_px: float
    weakenings: int


def _fmt_ms(value: Optional[float]) -> str:
    return 'n/a' if value is None else '%.1f' % value


def diagnostic_values(snapshot: StatsSnapshot, state: NodeState, input_fps: float,
                      output_fps: float, rss_mb: Optional[float] = None
                      ) -> List[Tuple[str, str]]:
    """Return the DiagnosticStatus key/value pairs; latencies are those of the period."""
    detect = snapshot.detect_times[-DIAGNOSTICS_SAMPLES:]
    process = snapshot.process_times[-DIAGNOSTICS_SAMPLES:]
    values = [
        ('backend', state.backend),
        ('provider', state.provider),
        ('ready', str(state.ready)),
        ('sync', state.sync),
        ('input_fps', '%.1f' % input_fps),
        ('output_fps', '%.1f' % output_fps),
        ('latency_p50_ms', _fmt_ms(percentile_ms(snapshot.period_latencies, 50))),
        ('latency_p95_ms', _fmt_ms(percentile_ms(snapshot.period_latencies, 95))),
        ('detect_p50_ms', _fmt_ms(percentile_ms(detect, 50))),
        ('process_p50_ms', _fmt_ms(percentile_ms(process, 50))),
        ('frames_in', str(snapshot.frames_in)),
        ('frames_out', str(snapshot.frames_out)),
        ('frames_dropped', str(snapshot.frames_dropped)),
        ('dropped_busy', str(snapshot.dropped_busy)),
        ('dropped_unpaired', str(snapshot.dropped_unpaired)),
        ('time_jumps', str(snapshot.time_jumps)),
        ('privacy_weakened', str(state.weakenings)),
        ('failed_closed', str(snapshot.failed_closed)),
        ('input_errors', str(snapshot.input_errors)),
        ('publish_errors', str(snapshot.publish_errors)),
        ('images_received', str(snapshot.images_received)),
        ('depths_received', str(snapshot.depths_received)),
        ('faces', str(snapshot.faces)),
        ('fail_mode', state.fail_mode),
        ('focal_px', '%.1f' % state.focal_px),
        ('tracks', str(snapshot.tracks)),
        ('tracks_held', str(snapshot.tracks_held)),
        ('track_sources', snapshot.track_sources),
    ]
    if rss_mb is not None:
        values.append(('rss_mb', '%.1f' % rss_mb))
    if snapshot.last_error:
        values.append(('last_error', snapshot.last_error[:200]))
    return values


def diagnostic_level(findings: Sequence[Tuple[int, str]]) -> Tuple[int, str]:
    """Return the level and message of a status: the worst finding, all findings' text."""
    if not findings:
        return OK, 'anonymizing faces'
    return max(level for level, _ in findings), '; '.join(text for _, text in findings)


def rss_mb() -> Optional[float]:
    """Return the resident memory of this process in MiB (Linux), or None."""
    try:
        with open('/proc/self/statm', 'r', encoding='ascii') as handle:
            pages = int(handle.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf('SC_PAGE_SIZE') / (1024.0 * 1024.0)
