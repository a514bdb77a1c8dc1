"""
Property tests (Hypothesis) of the bag tool's per-message classification.

The rule under test: every image message is classified by its own type and encoding; only an
Image whose encoding is exactly 16UC1, 32FC1 or mono16, or a real compressedDepth payload, on a
depth topic goes the depth path; every other image is anonymized or not written; nothing that
can show a face is ever copied.  The last property writes real bags of the real photo with
fuzzed message sequences and runs the tool with the real detector.
"""

from __future__ import annotations

from pathlib import Path
import tempfile
from typing import Any, Dict, List

from av_privacy_ros.bag import (anonymize_bag, classify_message, COLOUR, COMPRESSED_TYPE, COPY,
                                decode_and_route, DEPTH, DROP, GENUINE_DEPTH_ENCODINGS,
                                IMAGE_TYPE, route_message, VIDEO_TYPES)
import cv2
from hypothesis import given, HealthCheck, settings, strategies as st
import numpy as np
import pytest

from .bag_attack import (compressed, frame, FRAME_NS, image, jpeg, Message, raw_face_pixels,
                         read_messages, T0_NS, typestore, write_bag)

FACE_CAPABLE = ['bgr8', 'rgb8', 'bgra8', 'rgba8', 'mono8', 'bgr16', 'rgb16', 'bgra16', 'rgba16',
                'bayer_rggb8', 'bayer_bggr8', 'bayer_gbrg8', 'bayer_grbg8', 'bayer_rggb16',
                'yuv422', 'yuv422_yuy2', 'uyvy', 'yuyv', 'nv21', 'nv24', '8UC1', '8UC3', '8UC4',
                '8SC3', '16UC3', 'BGR8', 'Mono8', '16uc1', '32fc1', ' 16UC1', '16UC1 ', '']
ENCODINGS = st.one_of(st.sampled_from(FACE_CAPABLE + sorted(GENUINE_DEPTH_ENCODINGS)),
                      st.text(max_size=20))
FORMATS = st.one_of(st.sampled_from(['jpeg', 'png', 'rgb8; jpeg compressed bgr8',
                                     '16UC1; compressedDepth', '32FC1; compressedDepth rvl',
                                     'compressedDepth', 'COMPRESSEDDEPTH', 'theora', '']),
                    st.text(max_size=30))
OTHER_TYPES = st.one_of(st.sampled_from(sorted(VIDEO_TYPES) + ['std_msgs/msg/String',
                                                               'tf2_msgs/msg/TFMessage']),
                        st.text(max_size=30))
SETTINGS = settings(max_examples=100, deadline=None)


@SETTINGS
@given(encoding=ENCODINGS, depth_topic=st.booleans())
def test_an_image_is_depth_only_with_a_genuine_encoding_on_a_depth_topic(
        encoding: str, depth_topic: bool) -> None:
    """An Image goes the depth path only when both its encoding and its topic say depth."""
    kind = classify_message(IMAGE_TYPE, encoding, depth_topic)
    assert kind in (COLOUR, DEPTH, DROP)
    if kind == DEPTH:
        assert depth_topic and encoding in GENUINE_DEPTH_ENCODINGS
    if encoding in FACE_CAPABLE:
        assert kind == COLOUR, 'a face-capable encoding %r must be anonymized' % encoding


@SETTINGS
@given(fmt=FORMATS, depth_topic=st.booleans())
def test_a_compressed_image_is_depth_only_in_compressed_depth_format_on_a_depth_topic(
        fmt: str, depth_topic: bool) -> None:
    """A CompressedImage is never copied; depth only as compressedDepth on a depth topic."""
    kind = classify_message(COMPRESSED_TYPE, fmt, depth_topic)
    assert kind in (COLOUR, DEPTH, DROP)
    if kind == DEPTH:
        assert depth_topic and 'compresseddepth' in fmt.lower()
    if kind == DROP:
        assert 'compresseddepth' in fmt.lower() and not depth_topic


@SETTINGS
@given(msgtype=OTHER_TYPES, label=st.text(max_size=10), depth_topic=st.booleans())
def test_only_types_without_pictures_are_copied(msgtype: str, label: str,
                                                depth_topic: bool) -> None:
    """Video packet types are never copied; other non-image types are."""
    kind = classify_message(msgtype, label, depth_topic)
    if msgtype in (IMAGE_TYPE, COMPRESSED_TYPE):
        assert kind != COPY
    elif msgtype in VIDEO_TYPES:
        assert kind == DROP
    else:
        assert kind == COPY


@pytest.fixture(scope='module')
def photo_bytes(t1_vga: np.ndarray) -> np.ndarray:
    """Return the photo's bytes (640x480 BGR), the payload an attacker relabels."""
    return t1_vga.reshape(-1)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(encoding=ENCODINGS, depth_topic=st.booleans(), height=st.integers(1, 480),
       width=st.integers(1, 2000), step=st.integers(0, 8000), extra=st.integers(0, 64),
       bigendian=st.integers(0, 1))
def test_a_depth_labelled_photo_is_copied_only_as_well_formed_depth(
        photo_bytes: np.ndarray, encoding: str, depth_topic: bool, height: int, width: int,
        step: int, extra: int, bigendian: int) -> None:
    """Fuzzed Image fields over the photo's bytes: depth only when the layout is exact."""
    ts = typestore()
    size = min(photo_bytes.size, step * height + extra)
    msg = ts.types[IMAGE_TYPE](
        header=ts.types['std_msgs/msg/Header'](
            stamp=ts.types['builtin_interfaces/msg/Time'](sec=1, nanosec=0), frame_id='x'),
        height=height, width=width, encoding=encoding, is_bigendian=bigendian, step=step,
        data=photo_bytes[:size].copy())
    kind, reason = route_message(IMAGE_TYPE, msg, depth_topic)
    if kind == DEPTH:
        assert depth_topic and encoding in GENUINE_DEPTH_ENCODINGS
        pixel_bytes = 4 if encoding == '32FC1' else 2
        assert len(msg.data) == step * height and step >= width * pixel_bytes
    if kind == DROP:
        assert reason
    if not depth_topic:
        assert kind != DEPTH


@SETTINGS
@given(data=st.binary(max_size=600), msgtype=st.sampled_from([IMAGE_TYPE, COMPRESSED_TYPE]),
       depth_topic=st.booleans())
def test_any_bytes_are_routed_without_an_exception(data: bytes, msgtype: str,
                                                   depth_topic: bool) -> None:
    """Garbage CDR never raises: it is dropped or routed, and depth is always checked."""
    kind, reason, msg = decode_and_route(typestore(), msgtype, data, depth_topic)
    assert kind in (COLOUR, DEPTH, DROP)
    if kind == DROP:
        assert reason
    if kind == DEPTH:
        assert depth_topic and msg is not None


# -- whole bags ----------------------------------------------------------------------------------
MESSAGE_KINDS = ['bgr8', 'rgb8', 'mono8', '16UC1 label', '32FC1 label', 'mono16 label', 'jpeg',
                 'png holding jpeg', 'compressedDepth label', 'bayer_bggr8', 'yuv422']


def _message(ts: Any, kind: str, stamp: int, pixels: np.ndarray) -> Message:
    rx = stamp + 1000
    if kind == 'bgr8':
        return ('', IMAGE_TYPE, rx, image(ts, stamp, pixels, 'bgr8'))
    if kind == 'rgb8':
        return ('', IMAGE_TYPE, rx, image(ts, stamp, cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB),
                                          'rgb8'))
    if kind == 'mono8':
        return ('', IMAGE_TYPE, rx, image(ts, stamp, cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY),
                                          'mono8'))
    if kind.endswith('label'):
        encoding = kind.split()[0]
        width = 640 * 3 // (4 if encoding == '32FC1' else 2)
        return ('', IMAGE_TYPE, rx, image(ts, stamp, pixels, encoding, width=width,
                                          step=640 * 3))
    if kind == 'jpeg':
        return ('', COMPRESSED_TYPE, rx, compressed(ts, stamp, 'jpeg', jpeg(pixels)))
    if kind == 'png holding jpeg':
        return ('', COMPRESSED_TYPE, rx, compressed(ts, stamp, 'png', jpeg(pixels)))
    if kind == 'compressedDepth label':
        data = np.concatenate([np.zeros(12, np.uint8), jpeg(pixels)])
        return ('', COMPRESSED_TYPE, rx, compressed(ts, stamp, '16UC1; compressedDepth', data))
    return ('', IMAGE_TYPE, rx, image(ts, stamp, pixels, kind))


def _original(kind: str, pixels: np.ndarray) -> np.ndarray:
    if kind in ('jpeg', 'png holding jpeg'):
        return cv2.imdecode(jpeg(pixels), cv2.IMREAD_COLOR)
    if kind == 'mono8':
        return cv2.cvtColor(cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    return pixels


@pytest.fixture(scope='module')
def wide_photo(t1_full: np.ndarray) -> np.ndarray:
    """Return the photo at 680x480 (frames are shifted 640x480 windows)."""
    return cv2.resize(t1_full, (680, 480), interpolation=cv2.INTER_AREA)


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(kinds=st.lists(st.sampled_from(MESSAGE_KINDS), min_size=1, max_size=4),
       topic=st.sampled_from(['/cam/image_raw', '/cam/depth/image_raw', '/cam/image_raw/x']))
def test_fuzzed_message_sequences_never_leave_a_raw_face(wide_photo: np.ndarray, scrfd: Any,
                                                         adversarial: Any, kinds: List[str],
                                                         topic: str) -> None:
    """Any sequence of face frames under any label on one topic: 0 raw face pixels written."""
    ts = typestore()
    messages: List[Message] = []
    originals: Dict[int, np.ndarray] = {}
    for index, kind in enumerate(kinds):
        stamp = T0_NS + index * FRAME_NS
        pixels = frame(wide_photo, index)
        _, msgtype, rx, msg = _message(ts, kind, stamp, pixels)
        messages.append((topic, msgtype, rx, msg))
        trusted = 'depth' in topic and kind.endswith('label') and 'compressed' not in kind
        if not trusted:
            originals[stamp] = _original(kind, pixels)
        # else: the documented trust rule - a depth topic's 16UC1/32FC1/mono16 message is
        # depth; it is the one kind of image message that is copied (checked below).
    with tempfile.TemporaryDirectory() as folder:
        src, dst = Path(folder) / 'in', Path(folder) / 'out'
        write_bag(src, messages)
        anonymize_bag(src, dst, params={'seed': 1}, detector=scrfd)
        source, result = read_messages(src), read_messages(dst)
        raw = raw_face_pixels(scrfd, originals, source, result)
    adversarial.record('bag fuzz: %s on %s' % ('+'.join(kinds), topic), raw_face_pixels=raw)
    assert raw == 0, '%s on %s: %d raw face pixels' % (kinds, topic, raw)
    copied = {m[3] for m in result} & {m[3] for m in source}
    for raw_bytes in copied:
        msg = next(m[4] for m in source if m[3] == raw_bytes)
        assert 'depth' in topic and getattr(msg, 'encoding', '') in GENUINE_DEPTH_ENCODINGS
