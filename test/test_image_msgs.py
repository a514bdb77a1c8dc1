"""Tests for sensor_msgs/Image <-> ndarray conversion, on real sensor_msgs.msg.Image messages."""

from __future__ import annotations

import array
from types import SimpleNamespace
from typing import Any, Callable, Dict, Optional

from av_privacy_ros.image_msgs import (
    bgr_to_image_fields, canonical_encoding, COLOR_ENCODINGS, DEPTH_ENCODINGS,
    depth_to_image_fields, fill_image_msg, image_to_bgr, image_to_depth, mask_to_mono8_fields)
import numpy as np
import pytest
from sensor_msgs.msg import Image
from std_msgs.msg import Header

RNG_SEED = 7
H, W = 5, 7


def _header() -> Header:
    header = Header(frame_id='camera_color_optical_frame')
    header.stamp.sec = 1_700_000_000
    header.stamp.nanosec = 123_456_789
    return header


def _raw_msg(encoding: str, pixels: np.ndarray, pad: int = 0, big: bool = False,
             pad_byte: int = 0xEE) -> Image:
    """Build an Image by hand from wire-order pixels (H x W x C or H x W), rows padded."""
    h, w = pixels.shape[:2]
    dtype = pixels.dtype.newbyteorder('>' if big else '<')
    row = np.ascontiguousarray(pixels, dtype=dtype).reshape(h, -1).view(np.uint8)
    rows = np.full((h, row.shape[1] + pad), pad_byte, dtype=np.uint8)
    rows[:, :row.shape[1]] = row
    msg = Image(header=_header(), height=h, width=w, encoding=encoding,
                is_bigendian=1 if big else 0, step=rows.shape[1])
    msg.data = rows.tobytes()
    return msg


def _random_bgr(h: int = H, w: int = W) -> np.ndarray:
    return np.random.default_rng(RNG_SEED).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _wire_pixels(bgr: np.ndarray, encoding: str, alpha: int = 255) -> np.ndarray:
    """Return what the wire should hold for a BGR image, computed without OpenCV."""
    if encoding == 'bgr8':
        return bgr
    if encoding == 'rgb8':
        return bgr[..., ::-1]
    full_alpha = np.full(bgr.shape[:2] + (1,), alpha, dtype=np.uint8)
    if encoding == 'bgra8':
        return np.concatenate([bgr, full_alpha], axis=2)
    if encoding == 'rgba8':
        return np.concatenate([bgr[..., ::-1], full_alpha], axis=2)
    assert encoding == 'mono8'
    return bgr[..., 0]


def _grey_bgr(h: int = H, w: int = W) -> np.ndarray:
    grey = np.random.default_rng(RNG_SEED).integers(0, 256, (h, w), dtype=np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


# --------------------------------------------------------------------------- colour


@pytest.mark.parametrize('encoding', COLOR_ENCODINGS)
def test_colour_round_trip_through_a_real_image_message(encoding: str) -> None:
    """An image written in any colour encoding reads back identical, with the right bytes."""
    bgr = _grey_bgr() if encoding == 'mono8' else _random_bgr()
    name, step, data = bgr_to_image_fields(bgr, encoding)
    assert name == encoding
    channels = {'bgr8': 3, 'rgb8': 3, 'bgra8': 4, 'rgba8': 4, 'mono8': 1}[encoding]
    assert step == W * channels
    assert data.tobytes() == np.ascontiguousarray(_wire_pixels(bgr, encoding)).tobytes()

    header = _header()
    msg = fill_image_msg(Image(), header, H, W, name, step, data)
    assert msg.header == header and msg.is_bigendian == 0
    assert (msg.height, msg.width, msg.encoding, msg.step) == (H, W, encoding, step)

    back, source = image_to_bgr(msg)
    assert source == encoding
    assert back.dtype == np.uint8 and back.shape == (H, W, 3)
    assert back.flags['C_CONTIGUOUS']
    np.testing.assert_array_equal(back, bgr)


@pytest.mark.parametrize('encoding', COLOR_ENCODINGS)
def test_colour_read_from_hand_built_padded_rows(encoding: str) -> None:
    """Rows padded past the pixels (step > width * channels) read correctly; padding ignored."""
    bgr = _grey_bgr() if encoding == 'mono8' else _random_bgr()
    msg = _raw_msg(encoding, _wire_pixels(bgr, encoding, alpha=9), pad=5)
    assert msg.step > W * (bgr.shape[2] if encoding != 'mono8' else 1)
    back, _ = image_to_bgr(msg)
    assert back.flags['C_CONTIGUOUS']
    np.testing.assert_array_equal(back, bgr)


def test_rgb_red_pixel_becomes_bgr_red() -> None:
    """A pure red rgb8 pixel is red in BGR order (channels are not left swapped)."""
    rgb = np.zeros((2, 2, 3), dtype=np.uint8)
    rgb[..., 0] = 255
    back, _ = image_to_bgr(_raw_msg('rgb8', rgb))
    assert back[0, 0].tolist() == [0, 0, 255]


def test_alpha_is_dropped_on_read_and_opaque_on_write() -> None:
    """The input's alpha never reaches the output: written alpha is always 255."""
    bgr = _random_bgr()
    back, encoding = image_to_bgr(_raw_msg('bgra8', _wire_pixels(bgr, 'bgra8', alpha=3)))
    np.testing.assert_array_equal(back, bgr)
    _, _, data = bgr_to_image_fields(back, encoding)
    alpha = np.frombuffer(data, dtype=np.uint8).reshape(H, W, 4)[..., 3]
    assert (alpha == 255).all()


def test_mono8_reads_as_three_equal_channels() -> None:
    """A grey frame becomes a BGR image with equal channels, so the pipeline can run on it."""
    grey = np.arange(H * W, dtype=np.uint8).reshape(H, W)
    back, encoding = image_to_bgr(_raw_msg('mono8', grey))
    assert encoding == 'mono8'
    for channel in range(3):
        np.testing.assert_array_equal(back[..., channel], grey)


def test_bgr8_without_padding_is_zero_copy_view_of_message_data() -> None:
    """A bgr8 frame is not copied: the array shares memory with the rclpy message's data."""
    bgr = _random_bgr(48, 64)
    msg = fill_image_msg(Image(), _header(), 48, 64, *bgr_to_image_fields(bgr, 'bgr8'))
    assert isinstance(msg.data, array.array)
    view, _ = image_to_bgr(msg)
    assert np.shares_memory(view, np.frombuffer(msg.data, dtype=np.uint8))
    assert view.flags['C_CONTIGUOUS'] and view.flags['WRITEABLE']
    np.testing.assert_array_equal(view, bgr)


def test_bgr8_over_bytes_is_read_only_view_and_padded_bgr8_is_a_copy() -> None:
    """Over immutable bytes the view is read-only; padded rows give one contiguous copy."""
    bgr = _random_bgr()
    data = bgr.tobytes()
    duck = SimpleNamespace(header=None, height=H, width=W, encoding='bgr8', is_bigendian=0,
                           step=W * 3, data=data)
    view, _ = image_to_bgr(duck)
    assert np.shares_memory(view, np.frombuffer(data, dtype=np.uint8))
    assert not view.flags['WRITEABLE']

    padded = _raw_msg('bgr8', bgr, pad=3)
    copy, _ = image_to_bgr(padded)
    assert not np.shares_memory(copy, np.frombuffer(padded.data, dtype=np.uint8))
    assert copy.flags['C_CONTIGUOUS']
    np.testing.assert_array_equal(copy, bgr)


def test_encoding_names_are_matched_without_case() -> None:
    """Drivers that write 'BGR8' or '16uc1' are understood; outputs use the canonical name."""
    assert canonical_encoding('BGR8') == 'bgr8'
    assert canonical_encoding('16uc1') == '16UC1'
    bgr = _random_bgr()
    msg = _raw_msg('RGB8', bgr[..., ::-1])
    back, encoding = image_to_bgr(msg)
    assert encoding == 'rgb8'
    np.testing.assert_array_equal(back, bgr)


# --------------------------------------------------------------------------- depth


def _depth_sample(encoding: str) -> np.ndarray:
    rng = np.random.default_rng(RNG_SEED)
    if encoding == '32FC1':
        depth = rng.uniform(0.2, 9.0, (H, W)).astype(np.float32)
        depth[0, 0] = np.nan
        depth[1, 1] = 0.0
        return depth
    depth = rng.integers(0, 65536, (H, W), dtype=np.uint16)
    depth[0, 0] = 0
    return depth


@pytest.mark.parametrize('encoding', DEPTH_ENCODINGS)
def test_depth_round_trip_keeps_values_and_invalid_pixels(encoding: str) -> None:
    """Depth written and read back is identical, including 0 and NaN (invalid) pixels."""
    depth = _depth_sample(encoding)
    name, step, data = depth_to_image_fields(depth, encoding)
    assert name == encoding and step == W * depth.itemsize
    assert data.tobytes() == depth.astype(depth.dtype.newbyteorder('<')).tobytes()
    msg = fill_image_msg(Image(), _header(), H, W, name, step, data)
    back = image_to_depth(msg)
    assert back.dtype == depth.dtype and back.dtype.isnative
    assert back.flags['C_CONTIGUOUS']
    np.testing.assert_array_equal(back, depth)


@pytest.mark.parametrize('encoding', DEPTH_ENCODINGS)
def test_big_endian_depth_is_swapped_to_native(encoding: str) -> None:
    """Big-endian depth (is_bigendian = 1) gives the same metres/millimetres as little-endian."""
    depth = _depth_sample(encoding)
    msg = _raw_msg(encoding, depth, big=True)
    back = image_to_depth(msg)
    assert back.dtype.isnative
    np.testing.assert_array_equal(back, depth)


@pytest.mark.parametrize('encoding', DEPTH_ENCODINGS)
@pytest.mark.parametrize('big', [False, True])
def test_depth_with_padded_rows(encoding: str, big: bool) -> None:
    """Depth rows with padding (step > width * pixel size) read correctly, padding ignored."""
    depth = _depth_sample(encoding)
    msg = _raw_msg(encoding, depth, pad=2 * depth.itemsize, big=big)
    back = image_to_depth(msg)
    assert back.flags['C_CONTIGUOUS']
    np.testing.assert_array_equal(back, depth)


def test_little_endian_depth_is_a_view_of_message_data() -> None:
    """Unpadded little-endian depth is not copied."""
    depth = _depth_sample('16UC1')
    msg = fill_image_msg(Image(), _header(), H, W, *depth_to_image_fields(depth, '16UC1'))
    back = image_to_depth(msg)
    assert np.shares_memory(back, np.frombuffer(msg.data, dtype=np.uint8))


# --------------------------------------------------------------------------- masks, output


def test_mask_is_published_as_mono8_0_and_255() -> None:
    """A bool mask goes on the wire as mono8 with 255 inside and 0 outside."""
    mask = np.zeros((H, W), dtype=bool)
    mask[1:3, 2:5] = True
    name, step, data = mask_to_mono8_fields(mask)
    assert (name, step) == ('mono8', W)
    msg = fill_image_msg(Image(), _header(), H, W, name, step, data)
    wire = np.frombuffer(msg.data, dtype=np.uint8).reshape(H, W)
    np.testing.assert_array_equal(wire, np.where(mask, 255, 0))
    back, _ = image_to_bgr(msg)
    np.testing.assert_array_equal(back[..., 0] == 255, mask)


def test_fill_hands_a_field_checking_message_one_byte_array() -> None:
    """
    Filling a checked (Humble-like) message with a VGA frame sets one byte array.

    An ``array.array('B')`` skips rclpy's per-byte check of a list or bytes (its speed is
    measured by the benchmarks, not asserted here).
    """
    bgr = _random_bgr(480, 640)
    fields = bgr_to_image_fields(bgr, 'bgr8')
    msg = Image(check_fields=True)
    fill_image_msg(msg, _header(), 480, 640, *fields)
    assert isinstance(msg.data, array.array) and msg.data.typecode == 'B'
    assert len(msg.data) == 480 * 640 * 3
    np.testing.assert_array_equal(np.frombuffer(msg.data, np.uint8).reshape(480, 640, 3), bgr)


def test_fill_works_on_a_rosbags_message_and_survives_cdr() -> None:
    """The same helpers fill a rosbags Image (numpy data) that serializes and reads back."""
    from rosbags.typesys import get_typestore, Stores

    store = get_typestore(Stores.ROS2_HUMBLE)
    image_t = store.types['sensor_msgs/msg/Image']
    header_t = store.types['std_msgs/msg/Header']
    time_t = store.types['builtin_interfaces/msg/Time']
    header = header_t(stamp=time_t(sec=5, nanosec=6), frame_id='cam')
    msg = image_t(header=header, height=0, width=0, encoding='', is_bigendian=0, step=0,
                  data=np.zeros(0, dtype=np.uint8))
    bgr = _random_bgr()
    fill_image_msg(msg, header, H, W, *bgr_to_image_fields(bgr, 'rgb8'))
    assert isinstance(msg.data, np.ndarray)
    raw = store.serialize_cdr(msg, image_t.__msgtype__)
    back_msg = store.deserialize_cdr(raw, image_t.__msgtype__)
    back, encoding = image_to_bgr(back_msg)
    assert encoding == 'rgb8' and back_msg.header.stamp.sec == 5
    np.testing.assert_array_equal(back, bgr)


# --------------------------------------------------------------------------- malformed input


def _image(**fields: Any) -> Image:
    values: Dict[str, Any] = {
        'height': H, 'width': W, 'encoding': 'bgr8', 'is_bigendian': 0, 'step': W * 3}
    values.update(fields)
    data = values.pop('data', bytes(values['step'] * values['height']))
    msg = Image(**values)
    msg.data = data
    return msg


def _duck(**fields: Any) -> SimpleNamespace:
    values: Dict[str, Any] = {
        'header': None, 'height': H, 'width': W, 'encoding': 'bgr8', 'is_bigendian': 0,
        'step': W * 3, 'data': bytes(H * W * 3)}
    values.update(fields)
    return SimpleNamespace(**values)


def _depth_msg(encoding: str = '16UC1', **fields: Any) -> Image:
    size = 4 if encoding == '32FC1' else 2
    values: Dict[str, Any] = {'encoding': encoding, 'step': W * size}
    values.update(fields)
    values.setdefault('data', bytes(values['step'] * values.get('height', H)))
    return _image(**values)


MALFORMED = [
    ('unknown encoding', lambda: image_to_bgr(_image(encoding='yuv422')), 'not supported'),
    ('missing encoding', lambda: image_to_bgr(_image(encoding='')), 'no encoding'),
    ('encoding not a string', lambda: image_to_bgr(_duck(encoding=None)), 'must be a string'),
    ('zero width', lambda: image_to_bgr(_image(width=0)), 'width is 0'),
    ('zero height', lambda: image_to_bgr(_image(height=0, data=b'')), 'height is 0'),
    ('negative height', lambda: image_to_bgr(_duck(height=-4)), 'height is -4'),
    ('width is None', lambda: image_to_bgr(_duck(width=None)), 'width must be a whole number'),
    ('step below a row', lambda: image_to_bgr(_image(step=W * 3 - 1)), 'smaller than'),
    ('data truncated', lambda: image_to_bgr(_image(data=bytes(W * 3 * H - 1))), 'truncated'),
    ('data is None', lambda: image_to_bgr(_duck(data=None)), 'no data'),
    ('odd stride 16UC1',
     lambda: image_to_depth(_depth_msg('16UC1', step=W * 2 + 1)), 'not a multiple'),
    ('odd stride 32FC1',
     lambda: image_to_depth(_depth_msg('32FC1', step=W * 4 + 2)), 'not a multiple'),
    ('colour given as depth', lambda: image_to_depth(_image()), 'colour encoding'),
    ('depth given as colour', lambda: image_to_bgr(_depth_msg()), 'depth encoding'),
    ('depth step below a row',
     lambda: image_to_depth(_depth_msg('32FC1', step=W * 2)), 'smaller than'),
    ('bad is_bigendian', lambda: image_to_depth(_duck(encoding='16UC1', step=W * 2,
                                                      is_bigendian=2)), 'is_bigendian'),
    ('float depth as 16UC1',
     lambda: depth_to_image_fields(np.ones((H, W), np.float32), '16UC1'), 'uint16'),
    ('mm depth as 32FC1',
     lambda: depth_to_image_fields(np.ones((H, W), np.uint16), '32FC1'), 'float32'),
    ('depth with channels',
     lambda: depth_to_image_fields(np.ones((H, W, 3), np.uint16), '16UC1'), 'shape'),
    ('grey array as BGR',
     lambda: bgr_to_image_fields(np.zeros((H, W), np.uint8), 'bgr8'), 'BGR uint8'),
    ('float BGR', lambda: bgr_to_image_fields(np.zeros((H, W, 3)), 'bgr8'), 'BGR uint8'),
    ('empty BGR',
     lambda: bgr_to_image_fields(np.zeros((0, W, 3), np.uint8), 'bgr8'), 'empty'),
    ('BGR to depth encoding', lambda: bgr_to_image_fields(_random_bgr(), '32FC1'),
     'depth encoding'),
    ('uint8 mask', lambda: mask_to_mono8_fields(np.zeros((H, W), np.uint8)), 'bool'),
    ('fill with short data',
     lambda: fill_image_msg(Image(), _header(), H, W, 'bgr8', W * 3, bytes(10)), 'need'),
    ('fill with unknown encoding',
     lambda: fill_image_msg(Image(), _header(), H, W, 'jpeg', W * 3, bytes(H * W * 3)),
     'not supported'),
]


@pytest.mark.parametrize('case, call, match', MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_input_raises_a_clear_value_error(
        case: str, call: Callable[[], Optional[Any]], match: str) -> None:
    """Each malformed message or array is refused with a ValueError that says why."""
    with pytest.raises(ValueError, match=match) as info:
        call()
    text = str(info.value)
    assert text.endswith('.') and text[0].isupper(), case
