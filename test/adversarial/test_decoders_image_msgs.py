"""
Property-based attacks on the Image decoders and encoders (no DDS): fields are fuzzed.

Every message a sender can build, however its fields lie (encoding, sizes, step, byte order,
data length), is either decoded into exactly the pixels its fields describe or refused with a
ValueError; and what the node writes back keeps the input's step and byte order, with the
row padding zeroed rather than copied from the input.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from av_privacy_ros.image_msgs import (
    bgr_to_image_fields, COLOR_ENCODINGS, DEPTH_ENCODINGS, depth_to_image_fields,
    fill_image_msg, image_to_bgr, image_to_depth)
from hypothesis import example, given, HealthCheck, settings, strategies as st
import numpy as np
import pytest

# The ledger fixture is one object for the whole run on purpose: every example is a case.
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow,
                                       HealthCheck.function_scoped_fixture])

# Encodings a camera driver, a bag or an attacker may send: supported ones in odd spellings,
# colour formats the decoders do not read (bayer, yuv, 16-bit colour, float colour) and junk.
ENCODINGS = st.sampled_from(
    list(COLOR_ENCODINGS) + list(DEPTH_ENCODINGS)
    + ['BGR8', ' rgb8 ', 'Mono8', '16uc1', 'bayer_rggb8', 'bayer_bggr16', 'yuv422',
       'yuv422_yuy2', 'nv21', 'rgb16', 'bgra16', '32FC3', '8UC3', 'jpeg', '', 'bgr8\x00',
       'bgr8; DROP TABLE'])
SIZES = st.one_of(st.integers(min_value=-3, max_value=12),
                  st.sampled_from([2 ** 31 - 1, 2 ** 31, 2 ** 32 + 1, 2 ** 62]))


def _message(encoding: Any, height: Any, width: Any, step: Any, data: Any,
             is_bigendian: Any = 0) -> SimpleNamespace:
    return SimpleNamespace(encoding=encoding, height=height, width=width, step=step,
                           data=data, is_bigendian=is_bigendian)


@FUZZ
@given(encoding=ENCODINGS, height=SIZES, width=SIZES, step=SIZES,
       data=st.binary(max_size=600), big=st.sampled_from([0, 1, 2, -1, True]))
@example(encoding='bgr8', height=2 ** 31, width=2 ** 31, step=2 ** 32 + 1, data=b'\x00' * 12,
         big=0)
@example(encoding='bgr8', height=2, width=2, step=5, data=b'\x00' * 12, big=0)
def test_any_colour_message_decodes_to_its_own_pixels_or_is_refused(
        adversarial: Any, encoding: Any, height: Any, width: Any, step: Any, data: bytes,
        big: Any) -> None:
    """Decoding never raises anything but ValueError and never invents or drops pixels."""
    msg = _message(encoding, height, width, step, data, big)
    try:
        bgr, name = image_to_bgr(msg)
    except ValueError as exc:
        assert str(exc)
        adversarial.record('decoder: colour message fields fuzzed (refused)')
        return
    channels = {'bgr8': 3, 'rgb8': 3, 'bgra8': 4, 'rgba8': 4, 'mono8': 1}[name]
    assert bgr.shape == (height, width, 3) and bgr.dtype == np.uint8
    assert step >= width * channels and len(data) >= step * height
    rows = np.frombuffer(data, np.uint8)[:step * height].reshape(height, step)
    pixels = rows[:, :width * channels].reshape(height, width, channels)
    if name == 'bgr8':
        assert np.array_equal(bgr, pixels)
    elif name == 'rgb8':
        assert np.array_equal(bgr, pixels[:, :, ::-1])
    elif name == 'mono8':
        assert np.array_equal(bgr, np.repeat(pixels, 3, axis=2))
    adversarial.record('decoder: colour message fields fuzzed (decoded)')


BYTE_ORDER_FLAGS = st.one_of(st.sampled_from([0, 1, 2, -1, True]), st.text(max_size=2))


@FUZZ
@given(encoding=ENCODINGS, height=SIZES, width=SIZES, step=SIZES,
       data=st.binary(max_size=600), big=BYTE_ORDER_FLAGS)
def test_any_depth_message_decodes_to_its_own_values_or_is_refused(
        adversarial: Any, encoding: Any, height: Any, width: Any, step: Any, data: bytes,
        big: Any) -> None:
    """Depth decoding honours is_bigendian and step, or refuses the message."""
    msg = _message(encoding, height, width, step, data, big)
    try:
        depth = image_to_depth(msg)
    except ValueError as exc:
        assert str(exc)
        adversarial.record('decoder: depth message fields fuzzed (refused)')
        return
    kind = 'f4' if depth.dtype == np.float32 else 'u2'
    dtype = np.dtype(('>' if int(big) else '<') + kind)
    assert depth.shape == (height, width) and depth.dtype.isnative
    expected = np.ndarray((height, width), dtype=dtype, buffer=data,
                          strides=(step, dtype.itemsize))
    np.testing.assert_array_equal(depth, expected.astype(dtype.newbyteorder('=')))
    adversarial.record('decoder: depth message fields fuzzed (decoded)')


@FUZZ
@given(encoding=st.sampled_from(COLOR_ENCODINGS), height=st.integers(1, 9),
       width=st.integers(1, 9), padding=st.integers(0, 17), seed=st.integers(0, 2 ** 16),
       big=st.sampled_from([0, 1]))
def test_colour_written_back_keeps_step_and_byte_order_and_zeroes_the_padding(
        adversarial: Any, encoding: str, height: int, width: int, padding: int, seed: int,
        big: int) -> None:
    """The output message has the input's step and is_bigendian; its padding holds zeros."""
    rng = np.random.default_rng(seed)
    bgr = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    name, row_step, data = bgr_to_image_fields(bgr, encoding)
    step = row_step + padding
    # An input whose padding bytes are not zero (they could hold anything).
    raw = np.full((height, step), 0xAB, np.uint8)
    raw[:, :row_step] = np.asarray(data).reshape(height, row_step)
    source = _message(encoding, height, width, step, raw.tobytes(), big)
    decoded, codec = image_to_bgr(source)
    fields = bgr_to_image_fields(decoded, codec, step=source.step)
    out = fill_image_msg(SimpleNamespace(data=None), None, height, width, *fields,
                         is_bigendian=source.is_bigendian)
    assert (out.step, out.is_bigendian, out.encoding) == (step, big, name)
    written = np.frombuffer(out.data, np.uint8).reshape(height, step)
    assert not written[:, row_step:].any(), 'row padding must be zeros, not the input bytes'
    again, _ = image_to_bgr(out)
    assert np.array_equal(again, decoded)
    adversarial.record('encoder: colour step %d padding %d kept' % (row_step, padding))


@FUZZ
@given(encoding=st.sampled_from(DEPTH_ENCODINGS), height=st.integers(1, 9),
       width=st.integers(1, 9), pad_pixels=st.integers(0, 5), seed=st.integers(0, 2 ** 16),
       big=st.booleans())
def test_depth_written_back_keeps_step_and_big_endian(
        adversarial: Any, encoding: str, height: int, width: int, pad_pixels: int, seed: int,
        big: bool) -> None:
    """Big-endian 16UC1 / 32FC1 stays big-endian with the same step and the same values."""
    rng = np.random.default_rng(seed)
    if encoding == '32FC1':
        depth = rng.uniform(0.1, 10.0, (height, width)).astype(np.float32)
    else:
        depth = rng.integers(0, 65536, (height, width), dtype=np.uint16)
    itemsize = depth.dtype.itemsize
    step = (width + pad_pixels) * itemsize
    name, out_step, data = depth_to_image_fields(depth, encoding, step=step, big_endian=big)
    msg = fill_image_msg(SimpleNamespace(data=None), None, height, width, name, out_step, data,
                         is_bigendian=int(big))
    assert (msg.step, msg.is_bigendian) == (step, int(big))
    np.testing.assert_array_equal(image_to_depth(msg), depth)
    rows = np.frombuffer(msg.data, np.uint8).reshape(height, step)
    first = rows[0, :itemsize].tobytes()
    order = '>' if big else '<'
    assert first == depth[:1, :1].astype(depth.dtype.newbyteorder(order)).tobytes()
    adversarial.record('encoder: depth byte order %s kept' % ('big' if big else 'little'))


@pytest.mark.parametrize('step', [0, 5, 7])
def test_an_output_step_shorter_than_a_row_is_refused(step: int) -> None:
    """A step that cannot hold one row of pixels is a ValueError, never a corrupt message."""
    with pytest.raises(ValueError, match='step'):
        bgr_to_image_fields(np.zeros((2, 3, 3), np.uint8), 'bgr8', step=step)
    with pytest.raises(ValueError, match='step'):
        depth_to_image_fields(np.zeros((2, 3), np.uint16), '16UC1', step=step)
