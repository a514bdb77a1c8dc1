"""Image codecs over rosbags messages: compressed images, row steps, masks, header stamps."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Tuple

import cv2
import numpy as np

from ..image_msgs import bgr_to_image_fields, depth_to_image_fields, mask_to_mono8_fields

IMAGE_TYPE = 'sensor_msgs/msg/Image'
COMPRESSED_TYPE = 'sensor_msgs/msg/CompressedImage'
PNG_COMPRESSION = 3


def sniff_codec(data: np.ndarray) -> Optional[str]:
    """Return the codec (jpeg, png, webp) the bytes start with, or None."""
    head = bytes(data[:12])
    if head.startswith(b'\xff\xd8\xff'):
        return 'jpeg'
    if head.startswith(b'\x89PNG\r\n\x1a\n'):
        return 'png'
    if head[:4] == b'RIFF' and head[8:12] == b'WEBP':
        return 'webp'
    return None


def decode_compressed(msg: Any) -> Tuple[np.ndarray, Tuple[str, bool]]:
    """
    Decode a CompressedImage-like message to BGR uint8; return it and ``(codec, grey)``.

    The codec (jpeg, png, webp) is read from the data itself, not trusted from ``format``.

    :raises ValueError: when the data is not an image this tool can decode and encode again.
    """
    fmt = str(getattr(msg, 'format', ''))
    if 'compresseddepth' in fmt.lower():
        raise ValueError('compressedDepth images are not colour images')
    data = np.ascontiguousarray(np.asarray(getattr(msg, 'data', b''), dtype=np.uint8))
    if data.size == 0:
        raise ValueError('the compressed image has no data')
    codec = sniff_codec(data)
    if codec is None:
        raise ValueError('the compressed image (format %r) is neither JPEG, PNG nor WebP' % fmt)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise ValueError('the compressed %s image (format %r) cannot be decoded' % (codec, fmt))
    if image.dtype != np.uint8:
        raise ValueError('the compressed %s image has %s pixels; only 8-bit colour is '
                         'supported' % (codec, image.dtype))
    grey = image.ndim == 2 or image.shape[2] == 1
    if grey:
        bgr = cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        bgr = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    else:
        bgr = np.ascontiguousarray(image)
    return bgr, (codec, grey)


def encode_compressed(bgr: np.ndarray, codec: str, grey: bool, jpeg_quality: int) -> np.ndarray:
    """Encode a BGR image in ``codec`` (jpeg, png, webp); return the bytes as uint8 array."""
    image = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if grey else bgr
    if codec == 'jpeg':
        ok, buf = cv2.imencode('.jpg', image, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    elif codec == 'png':
        ok, buf = cv2.imencode('.png', image, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    else:
        ok, buf = cv2.imencode('.webp', image, [cv2.IMWRITE_WEBP_QUALITY, int(jpeg_quality)])
    if not ok:
        raise ValueError('encoding the anonymized image as %s failed' % codec)
    return np.asarray(buf, np.uint8).reshape(-1)


def as_bytes(data: np.ndarray) -> np.ndarray:
    """Return image data as the flat uint8 array a rosbags message's ``data`` field holds."""
    return np.ascontiguousarray(data).view(np.uint8).reshape(-1)


def header_stamp_ns(msg: Any) -> Optional[int]:
    """Return the header stamp of a message in nanoseconds, or None without one."""
    stamp = getattr(getattr(msg, 'header', None), 'stamp', None)
    sec, nanosec = getattr(stamp, 'sec', None), getattr(stamp, 'nanosec', None)
    if not isinstance(sec, int) or not isinstance(nanosec, int):
        return None
    return int(sec) * 1_000_000_000 + int(nanosec)


def is_grey16_png(png: np.ndarray) -> bool:
    """Return True when ``png`` decodes to a one-channel 16-bit image (what depth cameras send)."""
    try:
        pixels = cv2.imdecode(np.ascontiguousarray(png), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return False
    return pixels is not None and pixels.ndim == 2 and pixels.dtype == np.uint16


def encode_image_message(dst_ts: Any, msgtype: str, msg: Any, codec: Any, image: np.ndarray,
                         jpeg_quality: int) -> Any:
    """
    Return the CDR bytes of ``msg`` with its pixels replaced by ``image``.

    A CompressedImage keeps its codec (``codec`` is ``(codec, grey)`` from
    :func:`decode_compressed`); an Image keeps its encoding (``codec`` from ``image_to_bgr``),
    row step and header.
    """
    if msgtype == COMPRESSED_TYPE:
        name, grey = codec
        data = encode_compressed(image, name, grey, jpeg_quality)
        out = dataclasses.replace(msg, data=data)
    else:
        # The input's row step (zero padding) is kept; image_to_bgr checked it on reading.
        _, step, data = bgr_to_image_fields(image, codec, step=int(msg.step))
        out = dataclasses.replace(msg, step=step, data=as_bytes(data))
    return dst_ts.serialize_cdr(out, msgtype)


def encode_mask_message(dst_ts: Any, header: Any, mask: np.ndarray) -> Any:
    """Return the CDR bytes of a mono8 sensor_msgs/Image of ``mask`` with ``header``."""
    encoding, step, raw = mask_to_mono8_fields(mask)
    image_cls = dst_ts.types[IMAGE_TYPE]
    out = image_cls(header=header, height=mask.shape[0], width=mask.shape[1],
                    encoding=encoding, is_bigendian=0, step=step,
                    data=as_bytes(raw))
    return dst_ts.serialize_cdr(out, IMAGE_TYPE)


def encode_depth_message(dst_ts: Any, msg: Any, depth: np.ndarray) -> Any:
    """Return the CDR bytes of the depth Image ``msg`` holding ``depth``, in its byte order."""
    # The input's row step (zero padding) and byte order are kept.
    _, step, data = depth_to_image_fields(depth, msg.encoding, step=int(msg.step),
                                          big_endian=int(msg.is_bigendian) == 1)
    out = dataclasses.replace(msg, step=step, data=as_bytes(data))
    return dst_ts.serialize_cdr(out, IMAGE_TYPE)
