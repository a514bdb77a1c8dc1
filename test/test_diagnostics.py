"""The node's statistics and /diagnostics values, computed from counters without DDS."""

from typing import Optional

from av_privacy_ros.diagnostics import (diagnostic_level, diagnostic_values, ERROR, NodeState,
                                        NodeStats, OK, STALL_S, statistics, WARN)
import pytest

STATE = NodeState(backend='scrfd', provider='CPUExecutionProvider', ready=True,
                  sync='message_filters', fail_mode='anonymize', focal_px=600.0, weakenings=1)


def _stats_after_frames(latencies_s: list, detect_s: list) -> NodeStats:
    """Return counters after frames with these latencies were published (one failed closed)."""
    stats = NodeStats(now=0.0)
    with stats.lock:
        for index, (latency, detect) in enumerate(zip(latencies_s, detect_s)):
            stats.images_received += 1
            stats.frames_in += 1
            stats.input_arrived(now=float(index))
            stats.output_published(float(index) + latency, latency, latency / 2, detect, 2,
                                   [(3, 'detected'), (5, 'held')])
        stats.dropped_busy = 2
    return stats


def test_statistics_count_frames_drops_and_latency_percentiles() -> None:
    """statistics() says what came in and out, what was dropped and the latency in ms."""
    stats = _stats_after_frames([0.010, 0.020, 0.030, 0.040], [0.004, None, 0.006, 0.008])
    stats.count_error('failed_closed', 'RuntimeError: detector failed')
    result = statistics(stats.snapshot(dropped_unpaired=3), ready=True)
    assert result['frames_in'] == result['frames_out'] == 4
    assert result['frames_dropped'] == 5 and result['dropped_busy'] == 2
    assert result['failed_closed'] == 1 and 'detector failed' in result['last_error']
    assert result['latency_p50_ms'] == pytest.approx(25.0)
    assert result['latency_p95_ms'] == pytest.approx(38.5)
    assert result['detect_p50_ms'] == pytest.approx(6.0), 'the failed frame has no detect time'
    assert result['process_p50_ms'] == pytest.approx(12.5)
    assert (result['tracks'], result['tracks_held']) == (2, 1)
    assert result['track_sources'] == '3:detected 5:held'


def test_statistics_before_any_frame_has_no_latency() -> None:
    """A node that published nothing reports no latency rather than zero."""
    result = statistics(NodeStats(now=0.0).snapshot(), ready=False)
    assert result['ready'] is False and result['frames_out'] == 0
    assert result['latency_p50_ms'] is None and result['detect_p50_ms'] is None


def test_diagnostic_values_use_the_period_and_start_a_new_one() -> None:
    """Each status tells the latency of its own period; the next period starts empty."""
    stats = _stats_after_frames([0.010, 0.030], [0.004, 0.006])
    first = dict(diagnostic_values(stats.snapshot(1, 2, new_period=True), STATE, 30.0, 29.5,
                                   rss_mb=123.45))
    assert first['latency_p50_ms'] == '20.0' and first['output_fps'] == '29.5'
    assert first['frames_dropped'] == '3' and first['dropped_unpaired'] == '1'
    assert first['time_jumps'] == '2' and first['privacy_weakened'] == '1'
    assert first['rss_mb'] == '123.5' and first['backend'] == 'scrfd'
    assert 'last_error' not in first
    second = dict(diagnostic_values(stats.snapshot(new_period=True), STATE, 0.0, 0.0))
    assert second['latency_p50_ms'] == 'n/a' and second['detect_p50_ms'] == '5.0'
    assert 'rss_mb' not in second
    assert all(isinstance(value, str) for value in second.values())


def test_diagnostic_level_is_the_worst_finding() -> None:
    """No finding is OK; otherwise the worst level, with every finding's sentence."""
    assert diagnostic_level([]) == (OK, 'anonymizing faces')
    level, message = diagnostic_level([(WARN, 'privacy weakened: x'), (ERROR, 'detector failed')])
    assert level == ERROR and message == 'privacy weakened: x; detector failed'


@pytest.mark.parametrize('images, depths, use_depth, reason', [
    (5, 0, True, 'colour images arrive but no depth image'),
    (0, 5, True, 'depth images arrive but no colour image'),
    (5, 5, True, 'are not paired'),
    (5, 0, False, 'images arrive but none was processed'),
])
def test_stall_reason_names_the_missing_input(images: int, depths: int, use_depth: bool,
                                              reason: str) -> None:
    """Input that arrives without output for STALL_S gets a sentence saying what is wrong."""
    stats = NodeStats(now=0.0)
    with stats.lock:
        stats.images_received, stats.depths_received = images, depths
        stats.input_arrived(now=1.0)
        stats.input_arrived(now=1.0 + STALL_S)
    found: Optional[str] = stats.stall_reason(1.0 + STALL_S, 0.5, 'anonymize', use_depth, 0.02)
    assert found is not None and reason in found
    assert found.startswith('nothing published for %.1f s' % STALL_S)


def test_no_stall_before_stall_s_or_after_the_input_stopped() -> None:
    """Too short a silence, or input that stopped (idle), is not a stall."""
    stats = NodeStats(now=0.0)
    with stats.lock:
        stats.images_received = 3
        stats.input_arrived(now=10.0)
    assert stats.stall_reason(10.0 + STALL_S / 2, 0.5, 'anonymize', False, 0.02) is None
    assert stats.stall_reason(10.0 + 5 * STALL_S, 0.5, 'anonymize', False, 0.02) is None


def test_stall_reason_with_fail_mode_drop_tells_the_error() -> None:
    """Pairs that fail closed with fail_mode drop are a stall that names the error."""
    stats = NodeStats(now=0.0)
    with stats.lock:
        stats.images_received = stats.frames_in = 4
        stats.input_arrived(now=1.0)
    stats.count_error('failed_closed', 'RuntimeError: CUDA error')
    found = stats.stall_reason(1.0 + STALL_S, 0.5, 'drop', False, 0.02)
    assert found is not None and 'fail_mode is drop' in found and 'CUDA error' in found
