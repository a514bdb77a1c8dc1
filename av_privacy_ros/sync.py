"""
Approximate-time pairing of two message streams, for when ``message_filters`` is not installed.

:class:`ApproximateTimePairer` holds the pairing logic and needs no rclpy: the node feeds it
``add(index, stamp_seconds, msg)`` from two plain subscriptions (index 0 = colour, 1 = depth)
and it calls ``callback(msg0, msg1)`` for every matched pair.  It follows the behaviour of
``message_filters.ApproximateTimeSynchronizer`` (ROS 2, Python) for two inputs:

* every input keeps a queue of at most ``queue_size`` messages; when a queue is full, the
  message that arrived first is dropped (``message_filters`` drops the one with the oldest
  stamp, so a few messages stamped in the future would stay forever and every newer arrival
  would be dropped at once);
* a new message is paired with the queued message of the other input whose stamp is closest
  to its own, provided the difference is at most ``slop`` seconds; both leave their queues, so
  each message is used at most once;
* a new message whose stamp equals a queued one of the same input replaces it.

Differences, chosen for a privacy pipeline that republishes frames:

* ``slop`` is inclusive (``message_filters`` needs a difference strictly below it), with a
  1 microsecond tolerance for float rounding of epoch stamps;
* with ``in_order=True`` (the default) output stamps never go backwards on either input within
  one stretch of time: after a pair is emitted, queued messages older than it are dropped, and
  a late message whose stamp is older than the last one paired from its input, but by no more
  than ``slop``, is dropped at once (``message_filters`` could still pair them and emit an
  older pair after a newer one).  A stamp equal to the last paired one is a new frame (cameras
  and simulators that leave every stamp at zero, a republished frame) and pairs again;
* time may jump: a message older than the last paired one of its input by more than ``slop``
  (a bag played with ``--loop``, a simulator reset, the first normal frame after one stamped
  far in the future) starts a new stretch of time on that input: its last pair is forgotten,
  so pairing resumes with the very next message of the other input.  Queued messages from
  before the jump leave with the queue's first-in, first-out eviction.  No stamp, however far
  in the future, can block later messages.  :attr:`time_jumps` counts these restarts;
* the callback runs after the lock is released, so it may take long or call :meth:`add` again.
  Calls to :meth:`add` from several threads are safe; the callbacks they trigger then run in
  those threads.

Every message that leaves a queue without being paired is counted in :attr:`dropped`.
"""

from __future__ import annotations

import math
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

PairCallback = Callable[[Any, Any], Any]

STAMP_TOLERANCE_S = 1e-6
"""Tolerance added to ``slop`` to absorb float rounding of stamps near the current epoch."""


def stamp_to_sec(stamp: Any) -> float:
    """
    Return a ``builtin_interfaces/Time``-like stamp (``sec``, ``nanosec``) in seconds.

    Also accepts an ``rclpy.time.Time`` (it has ``nanoseconds``).  A float keeps about 0.2
    microsecond resolution for stamps near the current epoch, ample for pairing camera frames.

    :raises ValueError: when the object is not a stamp or its fields are out of range.
    """
    if hasattr(stamp, 'sec') and hasattr(stamp, 'nanosec'):
        sec, nanosec = stamp.sec, stamp.nanosec
        if isinstance(sec, bool) or isinstance(nanosec, bool) or not (
                isinstance(sec, int) and isinstance(nanosec, int)):
            raise ValueError('A time stamp needs whole-number sec and nanosec fields, got '
                             '%r and %r.' % (sec, nanosec))
        if not 0 <= nanosec < 1_000_000_000:
            raise ValueError('The nanosec field of a time stamp must be in [0, 999999999], '
                             'got %d.' % nanosec)
        return sec + nanosec * 1e-9
    nanoseconds = getattr(stamp, 'nanoseconds', None)
    if isinstance(nanoseconds, int) and not isinstance(nanoseconds, bool):
        return nanoseconds * 1e-9
    raise ValueError('Expected a time stamp with sec and nanosec fields (builtin_interfaces/Time),'
                     ' got %s.' % type(stamp).__name__)


class ApproximateTimePairer:
    """
    Pair messages of two inputs whose stamps differ by at most ``slop`` seconds.

    Thread-safe.  See the module documentation for the exact rules.
    """

    NUM_INPUTS = 2

    def __init__(self, callback: Optional[PairCallback] = None, queue_size: int = 10,
                 slop: float = 0.05, in_order: bool = True) -> None:
        """
        Create a pairer.

        :param callback: called as ``callback(msg0, msg1)`` for every pair (may be None; the
            pair is also returned by :meth:`add`).
        :param queue_size: most messages kept per input while waiting for a partner (>= 1).
        :param slop: largest stamp difference of a pair, in seconds (>= 0).
        :param in_order: drop messages that would make output stamps go backwards.
        :raises ValueError: when ``queue_size`` or ``slop`` is out of range.
        """
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise ValueError('The sync queue size must be a whole number of at least 1, not %r.'
                             % (queue_size,))
        if isinstance(slop, bool) or not isinstance(slop, (int, float)) or not (
                math.isfinite(slop) and slop >= 0):
            raise ValueError('The sync slop must be a finite number of seconds >= 0, not %r.'
                             % (slop,))
        if callback is not None and not callable(callback):
            raise ValueError('The sync callback must be callable.')
        self._callback = callback
        self.queue_size = queue_size
        self.slop = float(slop)
        self.in_order = bool(in_order)
        self._lock = threading.Lock()
        self._queues: List[Dict[float, Any]] = [{} for _ in range(self.NUM_INPUTS)]
        self._last_paired: List[Optional[float]] = [None] * self.NUM_INPUTS
        self._dropped = [0] * self.NUM_INPUTS
        self._paired = 0
        self._time_jumps = 0

    @property
    def dropped(self) -> int:
        """Return how many messages were discarded without being paired (all inputs)."""
        with self._lock:
            return sum(self._dropped)

    @property
    def dropped_per_input(self) -> Tuple[int, ...]:
        """Return the discarded-message count of each input."""
        with self._lock:
            return tuple(self._dropped)

    @property
    def paired(self) -> int:
        """Return how many pairs were emitted."""
        with self._lock:
            return self._paired

    @property
    def time_jumps(self) -> int:
        """Return how many times an input's stamps jumped back and pairing restarted."""
        with self._lock:
            return self._time_jumps

    @property
    def pending(self) -> Tuple[int, ...]:
        """Return how many messages of each input wait for a partner."""
        with self._lock:
            return tuple(len(q) for q in self._queues)

    def clear(self) -> None:
        """Drop every queued message (counted in :attr:`dropped`) and forget the last pair."""
        with self._lock:
            for index, queue in enumerate(self._queues):
                self._dropped[index] += len(queue)
                queue.clear()
            self._last_paired = [None] * self.NUM_INPUTS

    def add(self, index: int, stamp_sec: float, msg: Any) -> Optional[Tuple[Any, Any]]:
        """
        Offer ``msg`` with stamp ``stamp_sec`` on input ``index`` (0 or 1).

        Return the pair ``(msg0, msg1)`` it completed (after calling the callback with it), or
        None when it waits for a partner or was dropped.

        :raises ValueError: when the index is not 0 or 1 or the stamp is not a finite number.
        """
        if isinstance(index, bool) or index not in range(self.NUM_INPUTS):
            raise ValueError('The sync input index must be 0 or 1, not %r.' % (index,))
        if isinstance(stamp_sec, bool) or not isinstance(stamp_sec, (int, float)) or \
                not math.isfinite(stamp_sec):
            raise ValueError('A message stamp must be a finite number of seconds, not %r.'
                             % (stamp_sec,))
        stamp = float(stamp_sec)
        with self._lock:
            pair = self._add_locked(index, stamp, msg)
        if pair is not None and self._callback is not None:
            self._callback(*pair)
        return pair

    def _add_locked(self, index: int, stamp: float, msg: Any) -> Optional[Tuple[Any, Any]]:
        limit = self.slop + STAMP_TOLERANCE_S
        queue = self._queues[index]
        last = self._last_paired[index]
        if last is not None and stamp < last - limit:
            # Time jumped back on this input: start a new stretch of time from this message.
            self._time_jumps += 1
            self._last_paired[index] = None
            last = None
        if self.in_order and last is not None and stamp < last:
            self._dropped[index] += 1  # too late: a newer one was already paired
            return None
        if stamp in queue:
            self._dropped[index] += 1  # same stamp again: the newer message replaces it
            del queue[stamp]
        queue[stamp] = msg  # dicts keep arrival order: the first key arrived first
        while len(queue) > self.queue_size:
            del queue[next(iter(queue))]
            self._dropped[index] += 1
        other_index = 1 - index
        other = self._queues[other_index]
        best: Optional[float] = None
        best_delta = math.inf
        for candidate in other:
            delta = abs(candidate - stamp)
            if delta <= limit and (delta < best_delta or (
                    delta == best_delta and best is not None and candidate < best)):
                best, best_delta = candidate, delta
        if best is None:
            return None
        partner = other.pop(best)
        del queue[stamp]
        self._paired += 1
        stamps = [0.0] * self.NUM_INPUTS
        stamps[index], stamps[other_index] = stamp, best
        if self.in_order:
            for i, paired_stamp in enumerate(stamps):
                self._last_paired[i] = paired_stamp
                stale = [s for s in self._queues[i] if s < paired_stamp]
                for s in stale:
                    del self._queues[i][s]
                self._dropped[i] += len(stale)
        if index == 0:
            return msg, partner
        return partner, msg


def prune_newer(queue: Dict[Any, Any], newest_kept: Any) -> int:
    """
    Remove the entries of ``queue`` (stamp -> message) stamped after ``newest_kept``.

    Return how many were removed.  The node applies this to the queues of
    ``message_filters.ApproximateTimeSynchronizer`` when a message arrives: that synchronizer
    drops the message with the oldest stamp from a full queue, so messages from before a jump
    back in time (or stamped in the future) would stay forever and, once they fill the queue,
    every new message would be dropped on arrival.
    """
    newer = [stamp for stamp in queue if stamp > newest_kept]
    for stamp in newer:
        del queue[stamp]
    return len(newer)
