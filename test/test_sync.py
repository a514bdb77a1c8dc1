"""Tests for the approximate-time pairing used when message_filters is not installed."""

from __future__ import annotations

import threading
from typing import Any, List, Tuple

from av_privacy_ros.sync import ApproximateTimePairer, prune_newer, stamp_to_sec
from builtin_interfaces.msg import Time
import numpy as np
import pytest
from sensor_msgs.msg import Image

COLOUR, DEPTH = 0, 1
EPOCH = 1_700_000_000.0  # stamps near the current epoch, as real cameras send them


class Recorder:
    """Collect the pairs a pairer emits."""

    def __init__(self) -> None:
        self.pairs: List[Tuple[Any, Any]] = []

    def __call__(self, colour: Any, depth: Any) -> None:
        self.pairs.append((colour, depth))


def _pairer(queue_size: int = 10, slop: float = 0.02, in_order: bool = True
            ) -> Tuple[ApproximateTimePairer, Recorder]:
    recorder = Recorder()
    return ApproximateTimePairer(recorder, queue_size=queue_size, slop=slop,
                                 in_order=in_order), recorder


def test_exact_stamps_pair_with_colour_first_whatever_the_arrival_order() -> None:
    """Equal stamps pair at once; the callback always gets (colour, depth)."""
    pairer, rec = _pairer()
    assert pairer.add(DEPTH, EPOCH, 'd0') is None
    assert pairer.add(COLOUR, EPOCH, 'c0') == ('c0', 'd0')
    pairer.add(COLOUR, EPOCH + 1, 'c1')
    pairer.add(DEPTH, EPOCH + 1, 'd1')
    assert rec.pairs == [('c0', 'd0'), ('c1', 'd1')]
    assert pairer.paired == 2 and pairer.pending == (0, 0) and pairer.dropped == 0


def test_stamps_within_slop_pair_and_the_slop_is_inclusive() -> None:
    """A difference below or equal to slop pairs, even with float rounding of epoch stamps."""
    pairer, rec = _pairer(slop=0.05)
    pairer.add(COLOUR, EPOCH + 0.100, 'c0')
    pairer.add(DEPTH, EPOCH + 0.130, 'd0')
    pairer.add(COLOUR, EPOCH + 1.000, 'c1')
    pairer.add(DEPTH, EPOCH + 1.050, 'd1')  # exactly slop apart
    assert rec.pairs == [('c0', 'd0'), ('c1', 'd1')]


def test_stamps_beyond_slop_do_not_pair() -> None:
    """Messages farther apart than slop wait in their queues instead of pairing."""
    pairer, rec = _pairer(slop=0.02)
    pairer.add(COLOUR, EPOCH, 'c0')
    assert pairer.add(DEPTH, EPOCH + 0.021, 'd0') is None
    assert rec.pairs == [] and pairer.pending == (1, 1)


def test_late_depth_pairs_with_the_closest_colour_and_older_colours_are_dropped() -> None:
    """A depth frame that arrives after several colour frames pairs with the nearest one."""
    pairer, rec = _pairer(slop=0.05)
    for k in range(4):
        pairer.add(COLOUR, EPOCH + k / 30, 'c%d' % k)
    assert pairer.add(DEPTH, EPOCH + 2 / 30 + 0.004, 'd2') == ('c2', 'd2')
    assert rec.pairs == [('c2', 'd2')]
    # c0 and c1 are older than the pair: they can never be published in order.
    assert pairer.dropped == 2 and pairer.dropped_per_input == (2, 0)
    assert pairer.pending == (1, 0)
    assert pairer.add(DEPTH, EPOCH + 3 / 30, 'd3') == ('c3', 'd3')


def test_queue_overflow_drops_the_oldest_and_counts_it() -> None:
    """A full queue forgets its oldest message; the newest ones can still pair."""
    pairer, rec = _pairer(queue_size=3, slop=0.005)
    for k in range(5):
        pairer.add(COLOUR, EPOCH + k, 'c%d' % k)
    assert pairer.pending == (3, 0)
    assert pairer.dropped == 2
    assert pairer.add(DEPTH, EPOCH + 0, 'd0') is None  # its colour was dropped
    assert pairer.add(DEPTH, EPOCH + 2, 'd2') == ('c2', 'd2')
    assert pairer.dropped_per_input == (2, 1)  # d0 became stale once c2/d2 were paired
    assert rec.pairs == [('c2', 'd2')]


def test_a_full_queue_forgets_the_message_that_arrived_first() -> None:
    """Eviction follows arrival, so messages stamped in the future cannot hog a full queue."""
    pairer, _ = _pairer(queue_size=2, slop=0.005, in_order=False)
    pairer.add(COLOUR, EPOCH + 5, 'c5')
    pairer.add(COLOUR, EPOCH + 6, 'c6')
    pairer.add(DEPTH, EPOCH + 1, 'd1')
    assert pairer.add(COLOUR, EPOCH + 1, 'c1') == ('c1', 'd1')
    assert pairer.pending == (1, 0) and pairer.dropped == 1  # c5 left, c6 still waits


def test_each_message_is_used_at_most_once() -> None:
    """A colour frame already paired is not paired again with a second close depth frame."""
    pairer, rec = _pairer(slop=0.05)
    pairer.add(COLOUR, EPOCH, 'c0')
    pairer.add(DEPTH, EPOCH, 'd0')
    assert pairer.add(DEPTH, EPOCH + 0.01, 'd0b') is None
    assert rec.pairs == [('c0', 'd0')]
    assert pairer.pending == (0, 1)


def test_same_stamp_twice_on_one_input_keeps_the_newer_message() -> None:
    """A repeated stamp replaces the queued message (as message_filters does) and counts it."""
    pairer, rec = _pairer()
    pairer.add(COLOUR, EPOCH, 'old')
    pairer.add(COLOUR, EPOCH, 'new')
    pairer.add(DEPTH, EPOCH, 'd')
    assert rec.pairs == [('new', 'd')] and pairer.dropped == 1


def test_out_of_order_arrivals_pair_correctly_and_output_never_goes_back() -> None:
    """Reordered arrivals still pair by stamp; a message older than an emitted pair is dropped."""
    pairer, rec = _pairer(slop=0.01)
    pairer.add(COLOUR, EPOCH + 2 / 30, 'c2')
    pairer.add(COLOUR, EPOCH + 1 / 30, 'c1')
    pairer.add(DEPTH, EPOCH + 1 / 30, 'd1')
    pairer.add(DEPTH, EPOCH + 2 / 30, 'd2')
    assert rec.pairs == [('c1', 'd1'), ('c2', 'd2')]
    # A colour/depth pair from just before the last emitted pair (within the slop) arrives
    # late: both are dropped.
    assert pairer.add(DEPTH, EPOCH + 2 / 30 - 0.008, 'late_d') is None
    assert pairer.add(COLOUR, EPOCH + 2 / 30 - 0.008, 'late_c') is None
    assert pairer.dropped_per_input == (1, 1) and pairer.pending == (0, 0)
    assert len(rec.pairs) == 2


def test_without_in_order_late_messages_still_pair_like_message_filters() -> None:
    """With in_order=False an older pair may follow a newer one, as in message_filters."""
    pairer, rec = _pairer(slop=0.01, in_order=False)
    pairer.add(COLOUR, EPOCH + 1 / 30, 'c1')
    pairer.add(COLOUR, EPOCH + 2 / 30, 'c2')
    pairer.add(DEPTH, EPOCH + 2 / 30, 'd2')
    pairer.add(DEPTH, EPOCH + 1 / 30, 'd1')
    assert rec.pairs == [('c2', 'd2'), ('c1', 'd1')]
    assert pairer.dropped == 0


def _simulate_stream(slop: float, frames: int = 300, depth_loss: float = 0.01,
                     seed: int = 3
                     ) -> Tuple[List[Tuple[Any, Any]], int, int, ApproximateTimePairer]:
    """Feed a jittery 30 Hz colour + depth stream to a pairer, in arrival order."""
    rng = np.random.default_rng(seed)
    events = []
    both = 0
    arrived = [0.0, 0.0]  # one publisher per topic: DDS delivers each topic in order
    for k in range(frames):
        base = EPOCH + k / 30
        colour_stamp = base + rng.normal(0, 0.002)
        arrived[COLOUR] = max(arrived[COLOUR], colour_stamp + rng.uniform(0.005, 0.015))
        events.append((arrived[COLOUR], COLOUR, colour_stamp, k))
        if rng.uniform() >= depth_loss:
            both += 1
            depth_stamp = base + rng.normal(0, 0.002)
            # Depth is often delivered after the next colour frame.
            arrived[DEPTH] = max(arrived[DEPTH], depth_stamp + rng.uniform(0, 0.045))
            events.append((arrived[DEPTH], DEPTH, depth_stamp, k))
    events.sort()
    pairer, rec = _pairer(queue_size=10, slop=slop)
    for _, index, stamp, k in events:
        pairer.add(index, stamp, (k, stamp))
    return rec.pairs, both, len(events), pairer


@pytest.mark.parametrize('slop', [0.01, 0.05])
def test_30hz_stream_with_jitter_pairs_at_least_95_percent(slop: float) -> None:
    """A jittery 30 Hz RGB-D stream pairs >= 95 % of frames, each pair within slop."""
    pairs, both, sent, pairer = _simulate_stream(slop)
    assert len(pairs) >= 0.95 * both, '%d of %d frames paired' % (len(pairs), both)
    for (_, colour_stamp), (_, depth_stamp) in pairs:
        assert abs(colour_stamp - depth_stamp) <= slop + 1e-6
    colour_stamps = [c[1] for c, _ in pairs]
    assert colour_stamps == sorted(colour_stamps), 'pairs must come out in stamp order'
    if slop < 1 / 60:
        # Slop under half a frame period cannot pair neighbouring frames.
        assert all(c[0] == d[0] for c, d in pairs)
    # Every message sent is paired, dropped (and counted) or still waiting.
    assert 2 * len(pairs) + pairer.dropped + sum(pairer.pending) == sent


@pytest.mark.timeout(20)
def test_concurrent_adds_from_several_threads_lose_or_reuse_nothing() -> None:
    """Adds from a multi-threaded executor keep every message accounted for exactly once."""
    pairer, rec = _pairer(queue_size=50, slop=0.001)
    per_thread = 500

    def feed(index: int, offset: int) -> None:
        for k in range(offset, per_thread * 2, 2):
            pairer.add(index, EPOCH + k * 0.01, (index, k))

    threads = [threading.Thread(target=feed, args=(index, offset))
               for index in (COLOUR, DEPTH) for offset in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = 4 * per_thread
    used = [m for pair in rec.pairs for m in pair]
    assert len(used) == len(set(used)), 'a message was used twice'
    assert all(c[1] == d[1] for c, d in rec.pairs), 'only equal stamps are within slop'
    assert pairer.paired == len(rec.pairs)
    assert 2 * pairer.paired + pairer.dropped + sum(pairer.pending) == total


@pytest.mark.timeout(10)
def test_callback_runs_outside_the_lock_and_may_use_the_pairer() -> None:
    """A callback that reads the pairer's counters (or adds more) does not deadlock."""
    seen = []
    holder: List[ApproximateTimePairer] = []

    def callback(colour: Any, depth: Any) -> None:
        pairer = holder[0]
        seen.append((colour, depth, pairer.paired, pairer.pending))
        if colour == 'c0':
            pairer.add(COLOUR, EPOCH + 1, 'c1')

    pairer = ApproximateTimePairer(callback, queue_size=5, slop=0.01)
    holder.append(pairer)
    pairer.add(COLOUR, EPOCH, 'c0')
    pairer.add(DEPTH, EPOCH, 'd0')
    assert seen == [('c0', 'd0', 1, (0, 0))]
    assert pairer.pending == (1, 0)


def test_clear_counts_waiting_messages_as_dropped() -> None:
    """Clearing (e.g. after a stamp jump back when a bag loops) drops and counts the queues."""
    pairer, rec = _pairer()
    pairer.add(COLOUR, EPOCH + 5, 'c5')
    pairer.add(DEPTH, EPOCH + 5, 'd5')
    pairer.add(COLOUR, EPOCH + 6, 'c6')
    pairer.clear()
    assert pairer.dropped == 1 and pairer.pending == (0, 0)
    pairer.add(COLOUR, EPOCH, 'c0')  # older than the last pair, accepted after clear()
    pairer.add(DEPTH, EPOCH, 'd0')
    assert rec.pairs[-1] == ('c0', 'd0')


def test_stamp_to_sec_reads_ros_time_messages() -> None:
    """Header stamps (builtin_interfaces/Time) and rclpy Time convert to float seconds."""
    from rclpy.time import Time as RclpyTime

    msg = Image()
    msg.header.stamp = Time(sec=1_700_000_000, nanosec=500_000_000)
    assert stamp_to_sec(msg.header.stamp) == pytest.approx(EPOCH + 0.5, abs=1e-6)
    assert stamp_to_sec(Time(sec=3, nanosec=250)) == pytest.approx(3.00000025, abs=1e-12)
    assert stamp_to_sec(RclpyTime(seconds=2, nanoseconds=5)) == pytest.approx(2.000000005)


@pytest.mark.parametrize('bad, match', [
    (None, 'sec and nanosec'),
    (12.5, 'sec and nanosec'),
    (type('T', (), {'sec': 1, 'nanosec': 1_000_000_000})(), 'nanosec'),
    (type('T', (), {'sec': 1.5, 'nanosec': 0})(), 'whole-number'),
])
def test_stamp_to_sec_refuses_non_stamps(bad: Any, match: str) -> None:
    """Something that is not a valid stamp gives a ValueError that says so."""
    with pytest.raises(ValueError, match=match):
        stamp_to_sec(bad)


@pytest.mark.parametrize('kwargs, match', [
    ({'queue_size': 0}, 'queue size'),
    ({'queue_size': 2.5}, 'queue size'),
    ({'slop': -0.1}, 'slop'),
    ({'slop': float('nan')}, 'slop'),
    ({'callback': 'not callable'}, 'callable'),
])
def test_bad_settings_are_refused(kwargs: Any, match: str) -> None:
    """Out-of-range queue size, slop or callback gives a ValueError at construction."""
    with pytest.raises(ValueError, match=match):
        ApproximateTimePairer(**kwargs)


@pytest.mark.parametrize('index, stamp, match', [
    (2, EPOCH, 'index'),
    (True, EPOCH, 'index'),
    (COLOUR, float('nan'), 'finite'),
    (COLOUR, None, 'finite'),
])
def test_bad_add_arguments_are_refused(index: Any, stamp: Any, match: str) -> None:
    """A wrong input index or a non-finite stamp is refused and changes nothing."""
    pairer, _ = _pairer()
    with pytest.raises(ValueError, match=match):
        pairer.add(index, stamp, 'msg')
    assert pairer.pending == (0, 0) and pairer.dropped == 0


def test_lost_depth_frames_never_mix_frames_when_slop_is_under_half_a_period() -> None:
    """With 10 % of depth frames lost, a slop under half the frame period pairs no neighbours."""
    pairs, both, _, _ = _simulate_stream(0.015, depth_loss=0.1, seed=0)
    assert len(pairs) >= 0.95 * both
    assert all(c[0] == d[0] for c, d in pairs)


def _feed_frames(pairer: ApproximateTimePairer, stamps: List[float], tag: str) -> None:
    """Feed one colour and one depth message per stamp, colour first."""
    for k, stamp in enumerate(stamps):
        pairer.add(COLOUR, stamp, 'c_%s%d' % (tag, k))
        pairer.add(DEPTH, stamp, 'd_%s%d' % (tag, k))


@pytest.mark.parametrize('jump_back_s', [0.05, 10.0, EPOCH])
def test_pairing_resumes_at_once_after_a_jump_back_in_time(jump_back_s: float) -> None:
    """A bag played with --loop or a simulator reset: the first frame after the jump pairs."""
    pairer, rec = _pairer(slop=0.015)
    before = [EPOCH + k / 30 for k in range(30)]
    _feed_frames(pairer, before, 'a')
    start = before[-1] - jump_back_s
    _feed_frames(pairer, [start + k / 30 for k in range(30)], 'b')
    assert len(rec.pairs) == 60, 'every frame after the jump must pair'
    assert rec.pairs[30] == ('c_b0', 'd_b0')
    assert pairer.time_jumps == 2  # one restart per input


def test_one_pair_stamped_far_in_the_future_blocks_nothing() -> None:
    """An outlier pair (a camera clock glitch, a hostile publisher) does not stop later pairs."""
    pairer, rec = _pairer(slop=0.015)
    _feed_frames(pairer, [EPOCH + k / 30 for k in range(5)], 'a')
    _feed_frames(pairer, [EPOCH + 1e6], 'future')
    _feed_frames(pairer, [EPOCH + (5 + k) / 30 for k in range(5)], 'b')
    expected = ['c_future0'] + ['c_b%d' % k for k in range(5)]
    assert [pair[0] for pair in rec.pairs[-6:]] == expected


@pytest.mark.parametrize('in_order', [True, False])
def test_a_full_queue_of_future_stamps_blocks_nothing(in_order: bool) -> None:
    """Colour messages stamped in the future, without depth, are evicted by newer arrivals."""
    pairer, rec = _pairer(queue_size=3, slop=0.015, in_order=in_order)
    for k in range(3):
        pairer.add(COLOUR, EPOCH + 1e6 + k, 'future%d' % k)
    _feed_frames(pairer, [EPOCH + k / 30 for k in range(6)], 'a')
    assert [pair[0] for pair in rec.pairs] == ['c_a%d' % k for k in range(6)]


def test_repeated_zero_stamps_and_duplicate_stamps_keep_pairing() -> None:
    """A driver that leaves every stamp at zero, or sends one stamp twice, still gets output."""
    pairer, rec = _pairer(slop=0.015)
    _feed_frames(pairer, [0.0] * 5, 'zero')
    assert [pair[0] for pair in rec.pairs] == ['c_zero%d' % k for k in range(5)]
    _feed_frames(pairer, [EPOCH, EPOCH], 'dup')
    assert [pair[0] for pair in rec.pairs[5:]] == ['c_dup0', 'c_dup1']
    assert pairer.dropped == 0


def test_prune_newer_removes_only_entries_after_the_limit() -> None:
    """The helper that keeps message_filters' queues free of stale future stamps."""
    queue = {1: 'a', 5: 'b', 9: 'c'}
    assert prune_newer(queue, 5) == 1 and list(queue) == [1, 5]
