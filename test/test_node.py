"""
The anonymizer node over real DDS: the node runs in its own process, this test feeds it.

Uses SCRFD when its weights are found (test/weights.py; about 6-20 ms a frame on a 2-core CPU)
and the bundled CenterFace otherwise (about 80-450 ms a frame). The RGB-D tests run once per
colour/depth pairer: the package's own (``sync.pairer: builtin``) and message_filters'
ApproximateTimeSynchronizer when it is installed.
"""

from __future__ import annotations

import importlib.util
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from anonymizer_harness import (
    AnonymizerClient, backend, decode_outputs, face_change, have_scrfd, key, NAMESPACE_PREFIX,
    NodeProcess, SampleFrames, wait_until)
import numpy as np
import pytest
from sensor_msgs.msg import Image
from weights import HOW_TO_GET_SCRFD

pytestmark = pytest.mark.timeout(240)

SEED = 7
DIAG_PERIOD = 0.2
OVERLOAD_SECONDS = 20.0
FLOOD_RATE = 200.0


@pytest.fixture(scope='module')
def frames() -> SampleFrames:
    """Return the sample camera images (t1 photo, synthetic depth)."""
    return SampleFrames()


@pytest.fixture(scope='module', params=['builtin', 'message_filters'])
def rgbd(request: Any) -> Iterator[Tuple[NodeProcess, AnonymizerClient]]:
    """Start one RGB-D anonymizer process (depth noise on) and a client connected to it."""
    pairer = request.param
    if pairer == 'message_filters' and importlib.util.find_spec('message_filters') is None:
        pytest.skip('message_filters is not installed: it comes with a ROS 2 installation; '
                    'without one, install the wheels built from its Humble branch '
                    '(pip install --no-deps message_filters-*.whl, see docs/platforms.md)')
    namespace = NAMESPACE_PREFIX + '/rgbd_' + pairer
    node = NodeProcess(namespace, {
        'sync.pairer': pairer,
        'detector.backend': backend(),
        'depth.enable_noise': True,
        'seed': SEED,
        'diagnostics_period': DIAG_PERIOD,
    })
    client = AnonymizerClient(namespace)
    try:
        client.wait_connected(depth=True)
        client.wait_ready()
        yield node, client
    finally:
        client.close()
        status = node.stop()
        print(node.log()[-3000:])
        assert status == 0, 'the node did not exit cleanly (%s)' % status


def _stream(client: AnonymizerClient, frames: SampleFrames, count: int, rate: float,
            start_index: int = 0) -> Dict[Tuple[int, int], int]:
    """Publish ``count`` frames at ``rate`` Hz; return stamp -> frame index."""
    sent: Dict[Tuple[int, int], int] = {}
    prepared = [client.prepare(*frames.frame(start_index + offset)) for offset in range(count)]
    start = time.monotonic()
    for offset, (image, depth) in enumerate(prepared):
        sent[client.send_prepared(image, depth)] = start_index + offset
        delay = start + (offset + 1) / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # the camera's frame period, not a wait for a result
    return sent


def _check_anonymized(frames: SampleFrames, client: AnonymizerClient, stamp: Tuple[int, int],
                      index: int, depth_noise: bool = True) -> float:
    """Assert one output is a correct anonymization of frame ``index``; return mask share."""
    bgr_in, depth_in = frames.frame(index)
    bgr_out, mask, depth_out = decode_outputs(client, stamp)
    assert bgr_out.shape == bgr_in.shape and mask.shape == bgr_in.shape[:2]
    changed = np.any(bgr_out != bgr_in, axis=2)
    assert not changed[~mask].any(), 'pixels outside the mask must be identical to the input'
    boxes = frames.boxes(index)
    for fraction in face_change(bgr_in, bgr_out, boxes):
        assert fraction > 0.6, 'a face region is not anonymized (%.2f changed)' % fraction
    for x1, y1, x2, y2 in boxes:
        cx, cy = int((x1 + x2) / 2), int((y1 + y2) / 2)
        assert mask[cy - 5:cy + 5, cx - 5:cx + 5].all(), 'the mask must cover every face'
    share = float(mask.mean())
    assert 0.02 < share < 0.35, 'mask covers %.0f %% of the frame' % (100 * share)
    if depth_out is not None:
        assert depth_out.dtype == depth_in.dtype
        depth_changed = depth_out != depth_in
        assert not depth_changed[~mask].any(), 'depth changed outside the mask'
        if depth_noise:
            valid = mask & (depth_in > 0)
            assert depth_changed[valid].mean() > 0.5, 'depth noise missing under the mask'
        assert not (depth_out[depth_in == 0] != 0).any(), 'invalid depth must stay invalid'
    return share


def test_stream_at_30hz_keeps_every_frame_and_header(
        rgbd: Tuple[NodeProcess, AnonymizerClient], frames: SampleFrames) -> None:
    """
    At 30 Hz every frame the node receives is published or counted as dropped, in order.

    Each output keeps the input's stamp and frame_id and is anonymized. How many frames come
    out depends on the detector and on the machine's load (a benchmark figure: make bench),
    so the test asserts only that some do, and that none is lost unaccounted for.
    """
    if not have_scrfd():
        pytest.skip('a 30 Hz stream needs SCRFD: CenterFace takes 80-450 ms a frame on a 2-core '
                    'CPU. ' + HOW_TO_GET_SCRFD)
    node, client = rgbd
    before = client.last_diagnostics()
    sent = _stream(client, frames, 60, 30.0)

    def delta(values: Dict[str, Any], name: str) -> int:
        return int(values[name]) - int(before[name])

    # Wait until the node received all 60 and its worker accounted for each of them.
    after = client.wait_diag(lambda v: delta(v, 'frames_in') >= 60 and delta(v, 'frames_out')
                             + delta(v, 'frames_dropped') == delta(v, 'frames_in'))
    counts = {name: delta(after, name)
              for name in ('frames_in', 'frames_out', 'frames_dropped', 'input_errors')}
    assert counts['frames_in'] == 60 and counts['input_errors'] == 0, counts

    def published() -> List[Tuple[int, int]]:
        with client.received.lock:
            return [s for s in client.received.images if s in sent]
    wait_until(lambda: len(published()) >= counts['frames_out'], 10.0)
    got = published()
    with client.received.lock:
        arrivals = [s for s, _ in client.received.arrivals if s in sent]
    assert len(got) == counts['frames_out'], 'published frames were lost on the way'
    assert got, 'no frame came out: %s' % after
    assert arrivals == sorted(arrivals), 'outputs must keep the input order'
    for stamp in got:
        with client.received.lock:
            image = client.received.images[stamp]
            mask = client.received.masks[stamp]
            depth = client.received.depths[stamp]
        for msg in (image, mask, depth):
            assert key(msg.header.stamp) == stamp
            assert msg.header.frame_id == 'camera_color_optical_frame'
        assert image.encoding == 'bgr8' and mask.encoding == 'mono8'
        assert depth.encoding == '16UC1'
    for stamp in got[::6]:
        _check_anonymized(frames, client, stamp, sent[stamp])
    assert node.alive()


def test_outputs_anonymize_faces_and_nothing_else(
        rgbd: Tuple[NodeProcess, AnonymizerClient], frames: SampleFrames) -> None:
    """Faces change, pixels outside the mask are identical, depth changes only under it."""
    node, client = rgbd
    for index in range(3, 11):  # one after the other: every frame must come out
        stamp = client.send(*frames.frame(index))
        assert client.wait_outputs([stamp], timeout=10.0)
        _check_anonymized(frames, client, stamp, index)
    assert node.alive()


def _mask_shares(client: AnonymizerClient, frames: SampleFrames, count: int = 4) -> List[float]:
    """Send ``count`` frames one after the other; return the share of each under the mask."""
    shares = []
    for index in range(count):
        stamp = client.send(*frames.frame(index))
        assert client.wait_outputs([stamp], timeout=10.0)
        shares.append(float(decode_outputs(client, stamp)[1].mean()))
    return shares


def test_live_parameter_change_applies_and_invalid_is_rejected(
        rgbd: Tuple[NodeProcess, AnonymizerClient], frames: SampleFrames) -> None:
    """``ros2 param set`` equivalents: valid changes apply at once, invalid ones are refused."""
    _, client = rgbd
    base = float(np.mean(_mask_shares(client, frames)))
    try:
        result = client.set_parameters(mask__pad_ratio=0.8)[0]
        assert result.successful, result.reason
        assert client.get_parameter('mask.pad_ratio') == pytest.approx(0.8)
        wider = float(np.mean(_mask_shares(client, frames)))
        assert wider > 1.5 * base, 'pad_ratio 0.8 must widen the masks (%.3f -> %.3f)' % (
            base, wider)
        # A threshold above the privacy floor would mask no face: it is refused with a reason.
        floor = client.set_parameters(detector__conf_thresh=0.95)[0]
        assert not floor.successful and 'privacy floor' in floor.reason
        refused = {
            'anonymizer__noise_mode': 'mosaic',  # not a choice
            'mask__pad_ratio': 5.0,  # out of range
            'anonymizer__block': 0,  # out of range
            'detector__backend': 'centerface',  # read-only
            'use_depth': False,  # read-only
            'mask__dilate_kernel': 'big',  # wrong type
        }
        for name, value in refused.items():
            result = client.set_parameters(**{name: value})[0]
            assert not result.successful, '%s=%r must be rejected' % (name, value)
            assert result.reason, 'a rejection must say why'
        assert client.get_parameter('mask.pad_ratio') == pytest.approx(0.8)
    finally:
        results = client.set_parameters(mask__pad_ratio=0.25, detector__conf_thresh=0.3)
    assert all(r.successful for r in results)
    assert np.mean(_mask_shares(client, frames)) == pytest.approx(base, rel=0.2)


Case = Tuple[str, Callable[[], Tuple[Image, Image]], bool]


def _malformed_cases(frames: SampleFrames, header_factory: Callable[[], Any]) -> List[Case]:
    """
    Return (name, build, is_valid) cases; invalid ones must be dropped.

    ``build()`` makes the (colour, depth) messages with a fresh stamp, so that every case is
    newer than the frame sent before it (the pairing drops frames that go back in time).
    """
    from av_privacy_ros.sample_camera import depth_message, image_message
    bgr, depth = frames.frame(0)
    cases: List[Case] = []

    def pair(name: str, valid: bool = False, colour_enc: str = 'bgr8',
             depth_enc: str = '16UC1', depth_array: Optional[np.ndarray] = None,
             colour_edit: Any = None, depth_edit: Any = None,
             bad_stamp: bool = False) -> None:
        def build() -> Tuple[Image, Image]:
            header = header_factory()
            if bad_stamp:
                header.stamp.nanosec = 1_500_000_000  # more than a second of nanoseconds
            image = image_message(bgr, colour_enc, header)
            dmsg = depth_message(depth if depth_array is None else depth_array, depth_enc,
                                 header)
            if colour_edit:
                colour_edit(image)
            if depth_edit:
                depth_edit(dmsg)
            return image, dmsg
        cases.append((name, build, valid))

    def set_fields(**fields: Any) -> Any:
        def edit(msg: Image) -> None:
            for field, value in fields.items():
                setattr(msg, field, value)
        return edit

    def truncate(msg: Image) -> None:
        msg.data = msg.data[:len(msg.data) // 2]

    def pad_rows(extra: int) -> Any:
        def edit(msg: Image) -> None:
            rows = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.step)
            padded = np.zeros((msg.height, msg.step + extra), np.uint8)
            padded[:, :msg.step] = rows
            msg.step = msg.step + extra
            msg.data = padded.tobytes()
        return edit

    def big_endian(msg: Image) -> None:
        values = np.frombuffer(msg.data, '<u2').astype('>u2')
        msg.is_bigendian = 1
        msg.data = values.tobytes()

    pair('unknown colour encoding', colour_edit=set_fields(encoding='yuv422'))
    pair('empty colour encoding', colour_edit=set_fields(encoding=''))
    pair('colour step too small', colour_edit=set_fields(step=640 * 3 - 3))
    pair('colour data shorter than step x height', colour_edit=truncate)
    pair('zero-size colour image', colour_edit=set_fields(width=0, height=0, step=0, data=b''))
    pair('depth encoding on the colour topic', colour_edit=set_fields(encoding='mono16'))
    pair('colour and depth sizes differ', depth_array=depth[:240, :320].copy())
    pair('unsupported depth encoding', depth_edit=set_fields(encoding='8UC1'))
    pair('colour encoding on the depth topic', depth_edit=set_fields(encoding='bgr8'))
    pair('depth data shorter than step x height', depth_edit=truncate)
    pair('odd depth stride (half a pixel of padding)', depth_edit=pad_rows(1))
    pair('height larger than the data', colour_edit=set_fields(height=960))
    pair('stamp with nanosec out of range', bad_stamp=True)
    pair('zero-size depth image', depth_edit=set_fields(width=0, height=0, step=0, data=b''))
    # Unusual but legal input: must be processed and anonymized, never passed through.
    pair('odd colour stride (7 bytes of row padding)', valid=True, colour_edit=pad_rows(7))
    pair('all-invalid depth (zeros)', valid=True, depth_array=np.zeros_like(depth))
    pair('all-invalid float depth (NaN)', valid=True, depth_enc='32FC1',
         depth_array=np.zeros_like(depth))
    pair('big-endian depth', valid=True, depth_edit=big_endian)
    return cases


def test_malformed_inputs_are_dropped_and_the_node_keeps_running(
        rgbd: Tuple[NodeProcess, AnonymizerClient], frames: SampleFrames) -> None:
    """Each malformed pair is counted, nothing of it is published, the next frame is fine."""
    node, client = rgbd
    bgr, depth = frames.frame(0)
    cases = _malformed_cases(frames, client.now_header)
    invalid = [case for case in cases if not case[2]]
    assert len(invalid) >= 10
    for name, build, valid in cases:
        image, depth_msg = build()
        stamp = key(image.header.stamp)
        errors_before = int(client.last_diagnostics()['input_errors'])
        client.send_raw(image, depth_msg)
        if valid:
            assert client.wait_outputs([stamp], timeout=10.0), '%s: no output' % name
            out, mask, depth_out = decode_outputs(client, stamp)
            changed = np.any(out != bgr, axis=2)
            assert not changed[~mask].any(), name
            assert min(face_change(bgr, out, frames.boxes(0))) > 0.6, '%s: face shown' % name
        else:
            client.wait_diag(lambda v: int(v['input_errors']) > errors_before, timeout=10.0)
            probe = client.send(bgr, depth)  # the node is alive and still anonymizes
            assert client.wait_outputs([probe], timeout=10.0), 'node stuck after: ' + name
            with client.received.lock:
                published = [stamp in table for table in (
                    client.received.images, client.received.masks, client.received.depths)]
            assert not any(published), '%s: something was published' % name
        assert node.alive(), 'the node died on: ' + name
    final = client.wait_diag(lambda v: True)
    assert int(final['input_errors']) >= len(invalid)
    assert 'malformed input dropped' in node.log()


def test_colour_only_mode_publishes_no_depth(frames: SampleFrames) -> None:
    """``use_depth: false`` subscribes to colour only and keeps the rgb8 encoding."""
    namespace = NAMESPACE_PREFIX + '/colour'
    node = NodeProcess(namespace, {'detector.backend': backend(), 'use_depth': False,
                                   'diagnostics_period': DIAG_PERIOD})
    client = AnonymizerClient(namespace)
    try:
        client.wait_connected(depth=False)
        client.wait_ready()
        sent = {}
        for index in range(5):
            bgr, _ = frames.frame(index)
            sent[client.send(bgr, None, encoding='rgb8')] = index
            assert client.wait_outputs([next(reversed(sent))], timeout=10.0, depth=False)
        assert client.pub_depth.get_subscription_count() == 0
        assert client.node.count_publishers(namespace + '/depth_anonymized') == 0
        for stamp, index in sent.items():
            with client.received.lock:
                assert client.received.images[stamp].encoding == 'rgb8'
            _check_anonymized(frames, client, stamp, index)
    finally:
        client.close()
        assert node.stop() == 0
    assert not client.received.depths


def test_invalid_startup_parameters_exit_with_a_reason() -> None:
    """A combination that cannot work stops the node at start with a clear message."""
    node = NodeProcess(NAMESPACE_PREFIX + '/bad', {'use_depth': False, 'mask.mode': 'depth'})
    assert wait_until(lambda: not node.alive(), 30.0)
    assert node.stop() == 2
    assert 'mask.mode depth needs use_depth' in node.log()


def test_overload_keeps_no_backlog_bounded_memory_and_anonymizes_every_output(
        rgbd: Tuple[NodeProcess, AnonymizerClient], frames: SampleFrames) -> None:
    """
    Input much faster than processing for 20 s: the newest frame wins, drops are counted.

    Behaviour, not speed (speed is measured by scripts/bench_node.py): every output comes from
    one of the newest inputs, counted in frames and scaled by how many inputs the node gets per
    output in this run (a backlog would grow over the 20 s, thousands of frames), the resident
    memory stays flat, and every output is anonymized.
    """
    node, client = rgbd
    client.keep_messages = True
    start_diag = client.wait_diag(lambda v: True)
    prepared = [client.prepare(*frames.frame(i)) for i in range(8)]
    inputs = [frames.frame(i)[0] for i in range(8)]
    boxes = [frames.boxes(i) for i in range(8)]
    sent_stamps: List[int] = []
    sent_index: Dict[Tuple[int, int], int] = {}
    arrivals: List[Tuple[int, int]] = []  # (output stamp ns, inputs sent before it arrived)
    checked = 0
    rss: List[Tuple[float, float]] = [(0.0, float(start_diag['rss_mb']))]
    seen = client.diag_count()
    start = time.monotonic()
    while time.monotonic() - start < OVERLOAD_SECONDS:
        stamp = client.send_prepared(*prepared[len(sent_stamps) % len(prepared)])
        sent_index[stamp] = len(sent_stamps) % len(prepared)
        sent_stamps.append(stamp[0] * 1_000_000_000 + stamp[1])
        with client.received.lock:
            fresh = client.received.diagnostics[seen:]
            seen += len(fresh)
            outputs = [s for s in client.received.images if s in sent_index
                       and s in client.received.masks and s in client.received.depths]
        for values in fresh:
            rss.append((time.monotonic() - start, float(values['rss_mb'])))
        for out_stamp in outputs:
            # Every output: pixels outside the mask untouched, every face core changed.
            index = sent_index[out_stamp]
            bgr_out, mask, _ = decode_outputs(client, out_stamp)
            assert not np.any(bgr_out != inputs[index], axis=2)[~mask].any()
            assert min(face_change(inputs[index], bgr_out, boxes[index])) > 0.6, (
                'a face is shown in the output of %s' % (out_stamp,))
            arrivals.append((out_stamp[0] * 1_000_000_000 + out_stamp[1], len(sent_stamps)))
            checked += 1
            with client.received.lock:
                for table in (client.received.images, client.received.masks,
                              client.received.depths):
                    table.pop(out_stamp, None)
        delay = start + len(sent_stamps) / FLOOD_RATE - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # the flood's frame period
    last = client.wait_diag(lambda v: True)
    client.keep_messages = True
    sent = len(sent_stamps)
    out = len(arrivals)
    assert out >= 10, 'too few outputs to judge (%d of %d inputs)' % (out, sent)
    inputs_per_output = sent / out
    # How many inputs newer than an output were already sent when it arrived, in outputs.
    newer = np.array([sent_before - (np.searchsorted(sent_stamps, stamp, side='right'))
                      for stamp, sent_before in arrivals], np.float64)
    lag = newer / inputs_per_output
    third = max(len(lag) // 3, 1)
    rss_settled = max(m for t, m in rss if t <= OVERLOAD_SECONDS / 3)
    rss_end = max(m for t, m in rss)
    report = ('sent %d, %d out (%.1f inputs per output), %d outputs checked; newer inputs '
              'already sent when an output arrived, in outputs: median %.1f first third, '
              '%.1f last third, max %.1f; dropped %s; rss %.0f MB at start, %.0f MB after a '
              'third, %.0f MB at most' % (
                  sent, out, inputs_per_output, checked, np.median(lag[:third]),
                  np.median(lag[-third:]), lag.max(), last['frames_dropped'], rss[0][1],
                  rss_settled, rss_end))
    print(report)
    assert node.alive()
    assert inputs_per_output > 2, 'the test did not overload the node: ' + report
    assert int(last['frames_dropped']) > int(start_diag['frames_dropped']), report
    # No backlog: the node works on one of the newest pairs (the one waiting, one in the input
    # queue), so an output is about one output interval old whatever the machine's speed.
    assert np.median(lag[-third:]) <= 3, 'outputs lag behind the input: ' + report
    assert np.median(lag[-third:]) <= np.median(lag[:third]) + 2, 'lag grows: ' + report
    # Bounded memory: a leak of one frame per input would be gigabytes; allow 64 MB of noise.
    assert rss_end - rss_settled < 64, 'memory grows: ' + report
