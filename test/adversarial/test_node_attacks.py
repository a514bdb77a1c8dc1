"""
The anonymizer node attacked over real DDS by a plain publisher of the test's own.

One node process per pairer (``sync.pairer`` builtin, and message_filters when it is installed)
takes every attack in turn: malformed messages of every field, odd but valid layouts, stamps in
the future, zero, repeated, out of order and jumping back, inputs that cannot be paired,
parameter attacks, and finally a signal while frames stream in.  Every output image is compared
with the input of the same stamp: pixels left identical to the input inside the core of a face
box are raw face pixels, and there must be none.  The node must never stop publishing for good.
"""

from __future__ import annotations

import importlib.util
import signal
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from anonymizer_harness import (
    AnonymizerClient, backend, key, NAMESPACE_PREFIX, NodeProcess, SampleFrames, wait_until)
from av_privacy_ros.image_msgs import image_to_bgr
from av_privacy_ros.sample_camera import depth_message, image_message
import numpy as np
import pytest
from sensor_msgs.msg import Image
from std_msgs.msg import Header

pytestmark = pytest.mark.timeout(300)

QUEUE_SIZE = 3
HAVE_MESSAGE_FILTERS = importlib.util.find_spec('message_filters') is not None
NO_MESSAGE_FILTERS = (
    'message_filters is not installed (pip install --no-deps ../shared/ros_wheels/*.whl '
    'lark osrf-pycommon)')


def raw_face_pixels(source: np.ndarray, output: np.ndarray, boxes: np.ndarray) -> int:
    """
    Return how many pixels in the core (inner half) of each face box are left as they were.

    A pixel counts when it and its right, lower and lower-right neighbours are all identical to
    the input: a single mosaic cell value plus noise can equal an original pixel by chance
    (about 1 in 3000), a 2 x 2 block of them does not.
    """
    if output.shape != source.shape:
        return 0
    same = np.all(output == source, axis=2) if source.ndim == 3 else output == source
    block = same[:-1, :-1] & same[1:, :-1] & same[:-1, 1:] & same[1:, 1:]
    total = 0
    for x1, y1, x2, y2 in boxes:
        w, h = x2 - x1, y2 - y1
        total += int(block[int(y1 + h / 4):int(y2 - h / 4),
                           int(x1 + w / 4):int(x2 - w / 4)].sum())
    return total


class Attacker:
    """Sends frames to the node and checks every output against the input of its stamp."""

    def __init__(self, client: AnonymizerClient, frames: SampleFrames, pairer: str) -> None:
        """Remember what was sent, by stamp."""
        self.client = client
        self.frames = frames
        self.pairer = pairer
        self.sent: Dict[Tuple[int, int], List[Tuple[np.ndarray, np.ndarray]]] = {}

    def header(self, offset_s: float = 0.0, stamp: Optional[Tuple[int, int]] = None) -> Header:
        """Return a header stamped now (+ offset) or with the given (sec, nanosec)."""
        header = AnonymizerClient.now_header()
        if stamp is None:
            total = header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
            total += int(round(offset_s * 1e9))
            stamp = (total // 1_000_000_000, total % 1_000_000_000)
        header.stamp.sec, header.stamp.nanosec = stamp
        return header

    def send(self, header: Header, index: int = 0, depth: bool = True,
             colour: bool = True) -> Tuple[int, int]:
        """Publish frame ``index`` (colour and/or depth) with ``header``; return its stamp."""
        bgr, depth_mm = self.frames.frame(index)
        stamp = key(header.stamp)
        self.sent.setdefault(stamp, []).append((bgr, self.frames.boxes(index)))
        self.client.send_raw(image_message(bgr, 'bgr8', header) if colour else None,
                             depth_message(depth_mm, '16UC1', header) if depth else None)
        return stamp

    def outputs(self) -> int:
        """Return how many anonymized images arrived so far."""
        with self.client.received.lock:
            return self.client.received.image_count

    def send_and_expect(self, header: Header, index: int = 0, timeout: float = 15.0) -> None:
        """Send one frame and wait until one more output image arrives."""
        count = self.outputs()
        stamp = self.send(header, index)
        assert wait_until(lambda: self.outputs() > count, timeout), (
            '[%s] no output for the frame stamped %s: the node stopped publishing'
            % (self.pairer, stamp))

    def raw_pixels(self) -> int:
        """Return the raw face pixels in every output received, against its input(s)."""
        with self.client.received.lock:
            images = dict(self.client.received.images)
        total = 0
        for stamp, msg in images.items():
            output, _ = image_to_bgr(msg)
            for source, boxes in self.sent.get(stamp, []):
                total += raw_face_pixels(source, output, boxes)
        return total


@pytest.fixture(scope='module')
def frames() -> SampleFrames:
    """Return the sample camera images (t1 group photo, synthetic depth)."""
    return SampleFrames()


@pytest.fixture(scope='module', params=['builtin', 'message_filters'])
def attacked(request: Any, frames: SampleFrames
             ) -> Iterator[Tuple[NodeProcess, AnonymizerClient, Attacker]]:
    """Start one node with the given pairer, a client connected to it, and the attacker."""
    pairer = request.param
    if pairer == 'message_filters' and not HAVE_MESSAGE_FILTERS:
        pytest.skip(NO_MESSAGE_FILTERS)
    namespace = '%s/attacked_%s' % (NAMESPACE_PREFIX, pairer)
    node = NodeProcess(namespace, {
        'detector.backend': backend(), 'sync.pairer': pairer, 'seed': 5,
        'sync.queue_size': QUEUE_SIZE, 'diagnostics_period': 0.25,
        'qos.input_reliability': 'reliable', 'qos.input_depth': 20})
    client = AnonymizerClient(namespace)
    try:
        client.wait_connected(depth=True)
        client.wait_ready()
        yield node, client, Attacker(client, frames, pairer)
    finally:
        client.close()
        node.stop()
        print(node.log()[-3000:])


def _modify(msg: Image, **fields: Any) -> Image:
    for name, value in fields.items():
        setattr(msg, name, value)
    return msg


def _malformed(frames: SampleFrames) -> Dict[str, Callable[[Header], Tuple[Image, Image]]]:
    """Return named builders of (colour, depth) pairs that the node must refuse."""
    bgr, depth_mm = frames.frame(0)
    small = np.ascontiguousarray(depth_mm[::2, ::2])

    def pair(colour_edit: Optional[Callable[[Image], Any]] = None,
             depth_edit: Optional[Callable[[Image], Any]] = None, colour_enc: str = 'bgr8',
             depth_array: np.ndarray = depth_mm) -> Callable[[Header], Tuple[Image, Image]]:
        def build(header: Header) -> Tuple[Image, Image]:
            image = image_message(bgr, colour_enc, header)
            depth = depth_message(depth_array, '16UC1', header)
            if colour_edit:
                colour_edit(image)
            if depth_edit:
                depth_edit(depth)
            return image, depth
        return build

    raw_bytes = bgr.tobytes()
    return {
        'colour claims 16UC1': pair(lambda m: _modify(m, encoding='16UC1')),
        'colour claims bayer_rggb8': pair(lambda m: _modify(
            m, encoding='bayer_rggb8', step=640, data=raw_bytes[:640 * 480])),
        'colour claims yuv422': pair(lambda m: _modify(
            m, encoding='yuv422', step=1280, data=raw_bytes[:1280 * 480])),
        'colour claims nv21': pair(lambda m: _modify(m, encoding='nv21')),
        'colour without encoding': pair(lambda m: _modify(m, encoding='')),
        'colour step too small': pair(lambda m: _modify(m, step=640)),
        'colour step huge': pair(lambda m: _modify(m, step=2 ** 32 - 1)),
        'colour data truncated': pair(lambda m: _modify(m, data=m.data[:len(m.data) // 2])),
        'colour width x height overflow': pair(lambda m: _modify(
            m, width=2 ** 32 - 1, height=2 ** 32 - 1)),
        'colour zero width': pair(lambda m: _modify(m, width=0)),
        'colour empty data': pair(lambda m: _modify(m, data=b'')),
        'depth claims rgb8': pair(depth_edit=lambda m: _modify(m, encoding='rgb8')),
        'depth is_bigendian 2': pair(depth_edit=lambda m: _modify(m, is_bigendian=2)),
        'depth step not a pixel multiple': pair(depth_edit=lambda m: _modify(
            m, step=1281, data=bytes(1281 * 480))),
        'depth of another size': pair(depth_array=small),
        'stamp nanosec over one second': pair(
            lambda m: setattr(m.header.stamp, 'nanosec', 1_500_000_000),
            lambda m: setattr(m.header.stamp, 'nanosec', 1_500_000_000)),
    }


def test_malformed_messages_publish_nothing_raw_and_the_node_goes_on(
        attacked: Tuple[NodeProcess, AnonymizerClient, Attacker], frames: SampleFrames,
        adversarial: Any) -> None:
    """Every malformed field is refused; a valid frame after each one is still anonymized."""
    node, client, attacker = attacked
    for name, build in _malformed(frames).items():
        header = attacker.header()
        image, depth = build(header)
        attacker.sent.setdefault(key(header.stamp), []).append((frames.frame(0)[0],
                                                                frames.boxes(0)))
        client.send_raw(image, depth)
        attacker.send_and_expect(attacker.header(), index=1)
        raw = attacker.raw_pixels()
        adversarial.record('node[%s]: %s' % (attacker.pairer, name), raw_face_pixels=raw)
        assert raw == 0, name
        with client.received.lock:
            assert key(header.stamp) not in client.received.images, (
                '%s: a malformed frame was published' % name)
    assert node.alive()


def test_padded_rows_and_big_endian_depth_are_kept_in_the_output(
        attacked: Tuple[NodeProcess, AnonymizerClient, Attacker], frames: SampleFrames,
        adversarial: Any) -> None:
    """Row padding (step) and byte order of the inputs come back unchanged, anonymized."""
    from av_privacy_ros.image_msgs import (
        bgr_to_image_fields, depth_to_image_fields, fill_image_msg, image_to_depth)
    _, client, attacker = attacked
    bgr, depth_mm = frames.frame(2)
    header = attacker.header()
    image = fill_image_msg(Image(), header, 480, 640,
                           *bgr_to_image_fields(bgr, 'rgb8', step=640 * 3 + 64))
    depth = fill_image_msg(Image(), header, 480, 640,
                           *depth_to_image_fields(depth_mm, '16UC1', step=640 * 2 + 32,
                                                  big_endian=True), is_bigendian=1)
    stamp = key(header.stamp)
    attacker.sent[stamp] = [(bgr, frames.boxes(2))]
    client.send_raw(image, depth)
    assert client.wait_outputs([stamp], timeout=15.0)
    with client.received.lock:
        out_image = client.received.images[stamp]
        out_depth = client.received.depths[stamp]
    assert (out_image.encoding, out_image.step) == ('rgb8', 640 * 3 + 64)
    assert (out_depth.step, out_depth.is_bigendian) == (640 * 2 + 32, 1)
    depth_out = image_to_depth(out_depth)
    outside = depth_mm > 0
    assert np.mean(depth_out[outside] == depth_mm[outside]) > 0.5, (
        'the depth was misread: its byte order or step was not kept')
    raw = attacker.raw_pixels()
    adversarial.record('node[%s]: padded rgb8 + big-endian padded 16UC1' % attacker.pairer,
                       raw_face_pixels=raw)
    assert raw == 0


def test_stamp_attacks_never_stop_the_output(
        attacked: Tuple[NodeProcess, AnonymizerClient, Attacker],
        adversarial: Any) -> None:
    """Future, zero, repeated, out-of-order and backward stamps: every later frame is published."""
    _, client, attacker = attacked
    cases: List[Tuple[str, Callable[[], None]]] = []

    def normal_frames(count: int = 3) -> None:
        for index in range(count):
            attacker.send_and_expect(attacker.header(), index)

    def future_pair() -> None:
        attacker.send_and_expect(attacker.header(offset_s=1e6))
        normal_frames()

    def future_colour_flood() -> None:
        # More colour frames stamped in the future than the queue holds, with no depth.
        for offset in range(QUEUE_SIZE + 2):
            attacker.send(attacker.header(offset_s=5e5 + offset), depth=False)
        normal_frames()

    def jump_back(seconds: float) -> Callable[[], None]:
        def attack() -> None:
            for index in range(3):
                attacker.send_and_expect(attacker.header(offset_s=-seconds + index / 30), index)
            normal_frames()
        return attack

    def zero_stamps() -> None:
        for index in range(3):
            attacker.send_and_expect(attacker.header(stamp=(0, 0)), index)
        normal_frames()

    def duplicate_stamp() -> None:
        header = attacker.header()
        attacker.send_and_expect(header, 0)
        attacker.send_and_expect(header, 0)
        normal_frames()

    def out_of_order() -> None:
        later = attacker.header(offset_s=0.5)
        attacker.send_and_expect(later, 1)
        attacker.send_and_expect(attacker.header(), 2)
        normal_frames()

    cases = [('one pair stamped 11 days ahead', future_pair),
             ('colour flood stamped in the future', future_colour_flood),
             ('jump back 1 s', jump_back(1.0)), ('jump back 1 h (bag --loop)', jump_back(3600)),
             ('zero stamps (simulator reset)', zero_stamps),
             ('duplicate stamp', duplicate_stamp), ('out of order by 0.5 s', out_of_order)]
    for name, attack in cases:
        attack()
        raw = attacker.raw_pixels()
        adversarial.record('node[%s]: %s' % (attacker.pairer, name), raw_face_pixels=raw)
        assert raw == 0, name


def _stream_until(attacker: Attacker, make: Callable[[int], None],
                  predicate: Callable[[Dict[str, str]], bool], timeout: float = 15.0
                  ) -> Dict[str, str]:
    """Send frames at 10 Hz with ``make(i)`` until a diagnostics message matches; return it."""
    client = attacker.client
    start = client.diag_count()
    found: List[Dict[str, str]] = []
    deadline = time.monotonic() + timeout
    index = 0
    while time.monotonic() < deadline and not found:
        make(index)
        index += 1
        time.sleep(0.1)  # the camera's frame period, not a wait for a result
        with client.received.lock:
            found = [v for v in client.received.diagnostics[start:] if predicate(v)]
    assert found, 'no matching diagnostics; last: %s' % client.last_diagnostics()
    return found[0]


def test_diagnostics_warn_when_input_arrives_but_nothing_is_published(
        attacked: Tuple[NodeProcess, AnonymizerClient, Attacker], adversarial: Any) -> None:
    """Colour without depth, or stamps that never pair: WARN within seconds, naming why."""
    _, client, attacker = attacked

    def warn_with(text: str) -> Callable[[Dict[str, str]], bool]:
        return lambda values: values['_level'] == '1' and text in values['_message']

    colour_only = _stream_until(
        attacker, lambda i: attacker.send(attacker.header(), i % 3, depth=False),
        warn_with('no depth image'))
    assert 'nothing published' in colour_only['_message']
    unpaired = _stream_until(
        attacker, lambda i: (attacker.send(attacker.header(), i % 3, depth=False),
                             attacker.send(attacker.header(offset_s=-0.4), i % 3,
                                           colour=False)),
        warn_with('not paired'))
    assert 'sync.slop' in unpaired['_message']
    attacker.send_and_expect(attacker.header())
    _stream_until(attacker, lambda i: attacker.send(attacker.header(), i % 3),
                  lambda values: values['_level'] == '0')
    raw = attacker.raw_pixels()
    adversarial.record('node[%s]: inputs that never pair (diagnostics WARN)' % attacker.pairer,
                       raw_face_pixels=raw)
    assert raw == 0


def test_parameter_attacks_cannot_turn_anonymization_off(
        attacked: Tuple[NodeProcess, AnonymizerClient, Attacker], adversarial: Any) -> None:
    """conf_thresh above the privacy floor is refused; weaker valid settings make WARN."""
    _, client, attacker = attacked
    for value in (0.95, 0.51, 1.0):
        result = client.set_parameters(detector__conf_thresh=value)[0]
        assert not result.successful and 'privacy floor' in result.reason, value
    assert client.get_parameter('detector.conf_thresh') == pytest.approx(0.3)
    try:
        results = client.set_parameters(detector__conf_thresh=0.5, tracking__hold_frames=0,
                                        anonymizer__noise=0)
        assert all(result.successful for result in results)
        weakened = _stream_until(
            attacker, lambda i: attacker.send(attacker.header(), i % 3),
            lambda values: values['_level'] == '1' and 'privacy weakened' in values['_message'])
        for name in ('detector.conf_thresh', 'tracking.hold_frames', 'anonymizer.noise'):
            assert name in weakened['_message']
        assert weakened['privacy_weakened'] == '3'
        normal = attacker.outputs()
        for index in range(3):
            attacker.send_and_expect(attacker.header(), index)
        assert attacker.outputs() >= normal + 3
    finally:
        results = client.set_parameters(detector__conf_thresh=0.3, tracking__hold_frames=6,
                                        anonymizer__noise=20)
    assert all(result.successful for result in results)
    _stream_until(attacker, lambda i: attacker.send(attacker.header(), i % 3),
                  lambda values: values['_level'] == '0')
    raw = attacker.raw_pixels()
    adversarial.record('node[%s]: conf_thresh above the floor, weakened settings'
                       % attacker.pairer, raw_face_pixels=raw)
    assert raw == 0


@pytest.mark.parametrize('signal_number', [signal.SIGTERM])
def test_a_signal_while_frames_stream_ends_the_node_cleanly(
        attacked: Tuple[NodeProcess, AnonymizerClient, Attacker], adversarial: Any,
        signal_number: int) -> None:
    """SIGTERM (or Ctrl-C at teardown) mid-stream: exit 0, no ERROR line, nothing raw."""
    node, client, attacker = attacked
    attacker.send_and_expect(attacker.header())
    node.process.send_signal(signal_number)
    index = 0
    while node.alive() and index < 300:
        attacker.send(attacker.header(), index % 3)  # frames keep coming while it stops
        index += 1
        time.sleep(1 / 60)  # the camera's frame period, not a wait for a result
    status = node.stop()
    log = node.log()
    assert status == 0, log[-2000:]
    errors = [line for line in log.splitlines() if 'ERROR' in line or 'Traceback' in line]
    assert not errors, errors
    raw = attacker.raw_pixels()
    adversarial.record('node[%s]: %s while streaming' % (attacker.pairer,
                                                         signal.Signals(signal_number).name),
                       raw_face_pixels=raw)
    assert raw == 0
