"""
Offline anonymization of recorded bags: ``anonymize_bag INPUT OUTPUT``.

Reads a rosbag2 bag (sqlite3 or mcap) or a ROS 1 ``.bag`` with the ``rosbags`` library, runs the
same pipeline and parameters as the node over every image message (``sensor_msgs/Image`` and
``sensor_msgs/CompressedImage``), and writes a rosbag2 bag in which

* every image message is classified by its own type and encoding (:func:`route_message`), never
  by its topic's first message or connection: whatever can show a face is anonymized or not
  written; only a depth image (16UC1, 32FC1, mono16, compressedDepth) on a depth topic (a
  ``depth`` name or ``--depth-topic``) takes the depth path; ``--copy-topic`` is the only way to
  keep an image topic as it is;
* every other message is copied unchanged: same serialized bytes, receive timestamp, topic
  type, message definition, serialization format and offered QoS profiles (a ROS 1 input is
  converted to the ROS 2 definitions; a definition that cannot be parsed is kept as it is);
* anonymized messages keep their header stamps, frame ids, receive timestamps, row step and
  byte order; compressed images stay compressed in the same format (JPEG quality configurable);
* depth images get noise under the mask when ``depth.enable_noise`` is set (else they are copied
  unchanged); ``--write-masks`` adds a ``mono8`` mask topic ``<colour topic>/mask`` per camera.

Privacy first: a frame that cannot be processed is written anonymized over its whole area and
counted; a message that cannot even be decoded is not written at all and counted; the original
pixels are never written on an error path.  The output is written in a hidden staging folder
beside its final name and moved there only when the whole bag was written; an output that is,
holds or lies in the input is refused, and ``--force`` replaces nothing but a rosbag2 folder.

A backward pass keeps the last ``backward_frames`` processed frames of each colour topic before
writing them: when a face appears that had no overlapping detection in the frame before, its
padded box (grown a little per frame for motion) is also masked in those buffered frames, so a
face the detector picks up late is hidden just before it was first found too.
"""

from __future__ import annotations

import argparse
import bisect
from collections import deque
import dataclasses
from dataclasses import dataclass, field
import os
from pathlib import Path
import re
import shutil
import sys
import time
from typing import (Any, Callable, Deque, Dict, Iterator, List, Mapping, Optional, Sequence,
                    Set, Tuple)

import cv2
import numpy as np

from . import params as params_mod
from .anonymize import anonymize_depth
from .image_msgs import (bgr_to_image_fields, depth_to_image_fields, image_to_bgr,
                         image_to_depth, mask_to_mono8_fields)
from .masker import AVPrivacyMasker, FrameResult

IMAGE_TYPE = 'sensor_msgs/msg/Image'
COMPRESSED_TYPE = 'sensor_msgs/msg/CompressedImage'
MASK_SUFFIX = '/mask'
DEFAULT_JPEG_QUALITY = 90
DEFAULT_BACKWARD_FRAMES = 6
PNG_COMPRESSION = 3
NEW_FACE_IOU = 0.3
"""A face whose best IoU with the previous frame's faces is below this is a new face."""
BACKWARD_GROWTH = 0.05
"""Each buffered frame further back grows a new face's box by this fraction per side."""
BACKWARD_MAX_AGE_NS = 1_000_000_000
"""Buffered frames older than this (receive time) are written: it bounds the memory held."""

# Topic-name words that say what an image is, not which camera it comes from.
_KIND_TOKENS = frozenset((
    'image', 'images', 'img', 'raw', 'rect', 'color', 'colour', 'rgb', 'bgr', 'depth',
    'aligned', 'to', 'registered', 'compressed', 'compresseddepth', 'theora', 'ffmpeg',
    'zstd', 'mono', 'data'))

ProgressCallback = Callable[[int, int], None]
LogCallback = Callable[[str], None]


class BagError(Exception):
    """A problem the user can fix or must know about; the message says what and where."""


# -- per-message classification ----------------------------------------------------------------
COPY = 'copy'
"""Not an image: copied byte for byte."""
COLOUR = 'colour'
"""Pixels that can show a face: anonymized, or not written when that fails."""
DEPTH = 'depth'
"""A genuine depth image on a depth topic: the depth path (copied, or noise under the mask)."""
DROP = 'drop'
"""Pixels that can show a face and cannot be anonymized here: not written, counted."""
SKIP = 'skip'
"""A type that cannot be written with a valid schema (reported per topic): not written."""

GENUINE_DEPTH_ENCODINGS = frozenset(('16UC1', '32FC1', 'mono16'))
"""Image encodings that go the depth path, spelled exactly as ROS spells them, on depth topics.

Elsewhere a depth encoding is not trusted: its bytes could be a colour frame under a depth label,
and mono16 is what infrared cameras send, faces included."""

VIDEO_TYPES = frozenset((
    'theora_image_transport/msg/Packet', 'ffmpeg_image_transport_msgs/msg/FFMPEGPacket',
    'foxglove_msgs/msg/CompressedVideo', 'foxglove_msgs/msg/CompressedImage',
    'foxglove_msgs/msg/RawImage'))
"""Message types that carry camera pictures this tool cannot anonymize: never copied."""

COMPRESSED_DEPTH_HEADER = 12
"""compressed_depth_image_transport prefixes its PNG with a 12-byte configuration header."""


def classify_message(msgtype: str, encoding: Any, depth_topic: bool) -> str:
    """
    Return what happens to one message, from its own type and encoding (or format).

    ``encoding`` is an Image's ``encoding`` or a CompressedImage's ``format``; ``depth_topic``
    says whether the message's topic is a depth topic (a ``depth`` name or ``--depth-topic``).
    The answer is :data:`COPY` (not an image), :data:`COLOUR` (anonymize), :data:`DEPTH` (the
    depth path) or :data:`DROP` (do not write).  Only an Image whose encoding is exactly a
    depth encoding (16UC1, 32FC1, mono16), or a CompressedImage in the compressedDepth format,
    on a depth topic, is depth; the same messages on any other topic are dropped.  Every
    other image is colour, whatever its encoding claims: one that cannot be decoded as colour
    (bayer, yuv, 16-bit colour, an unknown encoding) is dropped when it is decoded.
    """
    if msgtype == IMAGE_TYPE:
        if isinstance(encoding, str) and encoding in GENUINE_DEPTH_ENCODINGS:
            return DEPTH if depth_topic else DROP
        return COLOUR
    if msgtype == COMPRESSED_TYPE:
        if 'compresseddepth' in str(encoding).lower():
            return DEPTH if depth_topic else DROP
        return COLOUR
    if msgtype in VIDEO_TYPES:
        return DROP
    return COPY


def is_compressed_depth(data: Any) -> bool:
    """Return True when ``data`` is a compressedDepth payload: a header, then a 16-bit grey PNG."""
    buf = np.asarray(data, np.uint8).reshape(-1)
    png = buf[COMPRESSED_DEPTH_HEADER:]
    if png.size == 0 or _sniff_codec(png) != 'png':
        return False
    return _is_grey16_png(png)


def _is_grey16_png(png: np.ndarray) -> bool:
    try:
        pixels = cv2.imdecode(np.ascontiguousarray(png), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return False
    return pixels is not None and pixels.ndim == 2 and pixels.dtype == np.uint16


def check_depth_message(msg: Any) -> None:
    """
    Raise ValueError unless ``msg`` is a well-formed depth Image with no bytes beyond its rows.

    A depth message is written unchanged when no noise is asked for, so its data must hold
    exactly ``step * height`` bytes: nothing else can travel along.
    """
    image_to_depth(msg)
    size = len(msg.data)
    if size != int(msg.step) * int(msg.height):
        raise ValueError('the depth image holds %d bytes, not step x height = %d'
                         % (size, int(msg.step) * int(msg.height)))


def route_message(msgtype: str, msg: Any, depth_topic: bool) -> Tuple[str, str]:
    """
    Return ``(kind, reason)`` for a decoded image message: :func:`classify_message`, checked.

    A depth message is checked against its data (a well-formed depth Image, a real
    compressedDepth payload, or a 16-bit grey PNG on a depth topic); anything else with a
    depth label is dropped.  ``reason`` says why a message is dropped.
    """
    attr = 'encoding' if msgtype == IMAGE_TYPE else 'format'
    label = getattr(msg, attr, '')
    kind = classify_message(msgtype, label, depth_topic)
    if kind == DROP:
        if depth_topic or msgtype not in (IMAGE_TYPE, COMPRESSED_TYPE):
            return DROP, 'a %s that cannot be anonymized' % msgtype
        return DROP, ('%s %r on a topic that is not a depth topic (name it with --depth-topic '
                      'if it is one)' % (attr, label))
    if kind == DEPTH:
        try:
            if msgtype == IMAGE_TYPE:
                check_depth_message(msg)
            elif not is_compressed_depth(msg.data):
                raise ValueError('its data is not a compressedDepth PNG')
        except Exception as exc:  # noqa: BLE001 - a depth label on other data is not trusted
            return DROP, 'depth-labelled message not written: %s' % exc
        return DEPTH, ''
    if kind == COLOUR and msgtype == COMPRESSED_TYPE and depth_topic:
        data = np.asarray(getattr(msg, 'data', b''), np.uint8).reshape(-1)
        if data.size and _sniff_codec(data) == 'png' and _is_grey16_png(data):
            return DEPTH, ''  # a 16-bit grey PNG of a depth camera
    return kind, ''


# -- topic selection ---------------------------------------------------------------------------
@dataclass
class CameraPlan:
    """One colour topic to anonymize, its depth topic (if any) and its mask topic (if any)."""

    topic: str
    msgtype: str
    depth_topic: Optional[str] = None
    mask_topic: Optional[str] = None
    note: str = ''

    @property
    def compressed(self) -> bool:
        """Return True for a sensor_msgs/CompressedImage topic."""
        return self.msgtype == COMPRESSED_TYPE

    def describe(self) -> str:
        """Return one line for the user: topic, kind, depth and mask topics."""
        text = '%s (%s)' % (self.topic, 'CompressedImage' if self.compressed else 'Image')
        if self.depth_topic:
            text += ' + depth %s' % self.depth_topic
        if self.mask_topic:
            text += ' -> mask %s' % self.mask_topic
        if self.note:
            text += ' [%s]' % self.note
        return text


def camera_tokens(topic: str) -> Tuple[str, ...]:
    """
    Return the words of a topic name that identify its camera.

    Words that describe the image kind (image, raw, color, rgb, depth, aligned, compressed, ...)
    are dropped, so ``/camera/color/image_raw`` and ``/camera/aligned_depth_to_color/image_raw``
    both give ``('camera',)``, and ``/carla/ego/rgb_front/image`` and
    ``/carla/ego/depth_front/image`` both give ``('carla', 'ego', 'front')``.
    """
    words = topic.lower().replace('-', '_').replace('/', '_').split('_')
    return tuple(word for word in words if word and word not in _KIND_TOKENS)


def is_depth_name(topic: str) -> bool:
    """Return True when a topic name says it carries depth (a ``depth`` word)."""
    words = topic.lower().replace('/', '_').split('_')
    return 'depth' in words or 'compresseddepth' in words


def _common_prefix(a: Sequence[str], b: Sequence[str]) -> int:
    count = 0
    for x, y in zip(a, b):
        if x != y:
            break
        count += 1
    return count


def _depth_preference(topic: str) -> Tuple[int, int, str]:
    words = set(topic.lower().replace('/', '_').split('_'))
    aligned = bool(words & {'aligned', 'registered'})
    return (0 if aligned else 1, len(topic), topic)


def pair_depth_topics(colour_topics: Sequence[str], depth_topics: Sequence[str]
                      ) -> Dict[str, str]:
    """
    Pair colour topics with depth topics of the same camera; return colour -> depth.

    A depth topic pairs with the colour topic whose camera words (see :func:`camera_tokens`)
    are equal; when several depth topics match, one aligned or registered to colour is
    preferred, then the shortest name.  Colour topics are served in the given order (put raw
    topics before compressed ones), and each depth topic pairs at most once.  A colour topic
    with no exact match takes the depth topic with the longest common leading camera words,
    when there is exactly one such topic.
    """
    pairs: Dict[str, str] = {}
    taken: Set[str] = set()
    for colour in colour_topics:
        key = camera_tokens(colour)
        exact = [d for d in depth_topics if d not in taken and camera_tokens(d) == key]
        if exact:
            best = min(exact, key=_depth_preference)
            pairs[colour] = best
            taken.add(best)
    for colour in colour_topics:
        if colour in pairs:
            continue
        key = camera_tokens(colour)
        scored = [(_common_prefix(key, camera_tokens(d)), d) for d in depth_topics
                  if d not in taken]
        scored = [(score, d) for score, d in scored if score > 0]
        if not scored:
            continue
        top = max(score for score, _ in scored)
        best_list = [d for score, d in scored if score == top]
        if len(best_list) == 1:
            pairs[colour] = best_list[0]
            taken.add(best_list[0])
    return pairs


# -- summary -----------------------------------------------------------------------------------
@dataclass
class BagSummary:
    """Counts of one run; :meth:`lines` renders them for the user."""

    output: str = ''
    cameras: List[CameraPlan] = field(default_factory=list)
    messages_read: int = 0
    messages_copied: int = 0
    frames_anonymized: int = 0
    faces_found: int = 0
    frames_failed_closed: int = 0
    frames_masked_backward: int = 0
    depth_anonymized: int = 0
    depth_failed_closed: int = 0
    masks_written: int = 0
    messages_dropped: int = 0
    errors: Dict[str, int] = field(default_factory=dict)
    copied_topics: List[str] = field(default_factory=list)
    weakened: List[str] = field(default_factory=list)
    topic_notes: Dict[str, List[str]] = field(default_factory=dict)
    topics_not_written: Set[str] = field(default_factory=set)
    not_written_by_topic: Dict[str, int] = field(default_factory=dict)
    kinds_by_topic: Dict[str, Dict[str, int]] = field(default_factory=dict)
    wall_time_s: float = 0.0
    processing_time_s: float = 0.0
    pipeline_time_s: float = 0.0
    detector: str = ''

    def note_error(self, text: str) -> None:
        """Count one error message (the summary shows the most frequent ones)."""
        self.errors[text] = self.errors.get(text, 0) + 1

    def note_topic(self, topic: str, text: str) -> None:
        """Record one remark about a whole topic (shown in the summary)."""
        self.topic_notes.setdefault(topic, [])
        if text not in self.topic_notes[topic]:
            self.topic_notes[topic].append(text)

    def dropped(self, topic: Optional[str]) -> None:
        """Count one message of ``topic`` that is not written."""
        self.messages_dropped += 1
        if topic:
            self.not_written_by_topic[topic] = self.not_written_by_topic.get(topic, 0) + 1

    def not_written(self, topic: str, reason: str) -> None:
        """Count one message that is not written, by topic and reason."""
        self.dropped(topic)
        self.note_error('%s: message not written: %s' % (topic, reason))

    def count_kind(self, topic: str, kind: str) -> None:
        """Count one image message of ``topic`` by its kind (colour, depth or drop)."""
        kinds = self.kinds_by_topic.setdefault(topic, {})
        kinds[kind] = kinds.get(kind, 0) + 1

    def kind_changes(self) -> Dict[str, Dict[str, int]]:
        """Return the topics whose image messages are of more than one kind."""
        return {topic: kinds for topic, kinds in self.kinds_by_topic.items() if len(kinds) > 1}

    @property
    def frames_per_second(self) -> float:
        """Return colour frames per second of reading, anonymizing and writing the bag."""
        seconds = self.processing_time_s or self.wall_time_s
        return self.frames_anonymized / seconds if seconds > 0 else 0.0

    def lines(self) -> List[str]:
        """Return the end-of-run summary as text lines."""
        rows = [
            'output: %s' % self.output,
            'messages copied unchanged: %d' % self.messages_copied,
            'frames anonymized: %d (%.1f frames/s)'
            % (self.frames_anonymized, self.frames_per_second),
            'faces found: %d' % self.faces_found,
            'frames failed closed (anonymized over the whole frame): %d'
            % self.frames_failed_closed,
            'frames also masked by the backward pass: %d' % self.frames_masked_backward,
            'depth frames with noise under the mask: %d (whole frame: %d)'
            % (self.depth_anonymized, self.depth_failed_closed),
            'mask messages written: %d' % self.masks_written,
            'messages not written (could not be decoded): %d' % self.messages_dropped,
            'wall time: %.1f s (%.1f s reading, anonymizing and writing)'
            % (self.wall_time_s, self.processing_time_s),
        ]
        for text, count in sorted(self.errors.items(), key=lambda kv: -kv[1])[:5]:
            rows.append('  %dx %s' % (count, text))
        for topic, count in sorted(self.not_written_by_topic.items()):
            rows.append('messages NOT written on %s: %d' % (topic, count))
        for topic, kinds in sorted(self.kind_changes().items()):
            rows.append('topic %s changes kind: %s' % (topic, ', '.join(
                '%d %s' % (count, kind) for kind, count in sorted(kinds.items()))))
        if self.copied_topics:
            rows.append('image topics copied WITHOUT anonymization (--copy-topic): %s'
                        % ', '.join(self.copied_topics))
        for text in self.weakened:
            rows.append('WARNING: settings weaken privacy: %s' % text)
        for topic, notes in sorted(self.topic_notes.items()):
            for text in notes:
                rows.append('topic %s: %s' % (topic, text))
        if not self.cameras:
            rows.append('WARNING: no image topics; every message was copied unchanged')
        return rows


# -- image codecs over rosbags messages ---------------------------------------------------------
def _sniff_codec(data: np.ndarray) -> Optional[str]:
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
    codec = _sniff_codec(data)
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


def _as_bytes(data: np.ndarray) -> np.ndarray:
    """Return image data as the flat uint8 array a rosbags message's ``data`` field holds."""
    return np.ascontiguousarray(data).view(np.uint8).reshape(-1)


def header_stamp_ns(msg: Any) -> Optional[int]:
    """Return the header stamp of a message in nanoseconds, or None without one."""
    stamp = getattr(getattr(msg, 'header', None), 'stamp', None)
    sec, nanosec = getattr(stamp, 'sec', None), getattr(stamp, 'nanosec', None)
    if not isinstance(sec, int) or not isinstance(nanosec, int):
        return None
    return int(sec) * 1_000_000_000 + int(nanosec)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return the len(a) x len(b) IoU matrix of two N x 4 (x1, y1, x2, y2) box arrays."""
    a = np.asarray(a, np.float32).reshape(-1, 4)
    b = np.asarray(b, np.float32).reshape(-1, 4)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0).astype(np.float32)


def grow_boxes(boxes: np.ndarray, fraction: float) -> np.ndarray:
    """Return boxes grown by ``fraction`` of their width/height on every side."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    size = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], axis=1)
    boxes[:, 0:2] -= size * fraction
    boxes[:, 2:4] += size * fraction
    return boxes


def pair_stamps(colour: Sequence[Optional[int]], depth: Sequence[Optional[int]],
                slop_ns: int) -> Tuple[Dict[int, int], Dict[int, Optional[int]]]:
    """
    Pair colour and depth messages by header stamp; return (colour -> depth, depth -> source).

    Pairs are the closest stamps within ``slop_ns`` (inclusive), each message used at most once
    (closest pairs first).  ``source`` maps every depth message to the colour message whose mask
    it uses: its pair, or else the colour message nearest in stamp (None when there is none).
    Messages with an unknown stamp (None) are never paired.
    """
    order = sorted((s, i) for i, s in enumerate(colour) if s is not None)
    c_stamps = [s for s, _ in order]
    candidates: List[Tuple[int, int, int]] = []
    for j, stamp in enumerate(depth):
        if stamp is None:
            continue
        lo = bisect.bisect_left(c_stamps, stamp - slop_ns)
        hi = bisect.bisect_right(c_stamps, stamp + slop_ns)
        for k in range(lo, hi):
            candidates.append((abs(c_stamps[k] - stamp), order[k][1], j))
    candidates.sort()
    c_to_d: Dict[int, int] = {}
    d_to_c: Dict[int, Optional[int]] = {}
    for _, i, j in candidates:
        if i in c_to_d or j in d_to_c:
            continue
        c_to_d[i] = j
        d_to_c[j] = i
    for j, stamp in enumerate(depth):
        if j in d_to_c:
            continue
        if stamp is None or not c_stamps:
            d_to_c[j] = None
            continue
        k = bisect.bisect_left(c_stamps, stamp)
        near = [x for x in (k - 1, k) if 0 <= x < len(c_stamps)]
        best = min(near, key=lambda x: abs(c_stamps[x] - stamp))
        d_to_c[j] = order[best][1]
    return c_to_d, d_to_c


# -- output queue ------------------------------------------------------------------------------
class _Slot:
    """One output message in input order: pending until its bytes are known (or dropped)."""

    __slots__ = ('conn', 'timestamp', 'data', 'state')

    PENDING, READY, DROPPED = 0, 1, 2

    def __init__(self, conn: Any, timestamp: int) -> None:
        self.conn = conn
        self.timestamp = timestamp
        self.data: Any = None
        self.state = self.PENDING

    def ready(self, data: Any) -> None:
        self.data = data
        self.state = self.READY

    def drop(self) -> None:
        self.data = None
        self.state = self.DROPPED


class _OutputQueue:
    """Write messages in input order as soon as every message before them is final."""

    def __init__(self, writer: Any) -> None:
        self.writer = writer
        self.queue: Deque[_Slot] = deque()

    def add(self, conn: Any, timestamp: int) -> _Slot:
        slot = _Slot(conn, timestamp)
        self.queue.append(slot)
        return slot

    def flush(self) -> None:
        queue = self.queue
        while queue and queue[0].state != _Slot.PENDING:
            slot = queue.popleft()
            if slot.state == _Slot.READY:
                self.writer.write(slot.conn, slot.timestamp, slot.data)


# -- per-camera processing ---------------------------------------------------------------------
@dataclass
class _Frame:
    """A colour frame between reading and writing."""

    key: Tuple[int, int]
    slot: _Slot
    mask_slot: Optional[_Slot]
    msgtype: str = IMAGE_TYPE
    msg: Any = None
    cdr: Any = None
    bgr: Optional[np.ndarray] = None
    codec: Any = None
    depth: Optional[np.ndarray] = None
    depth_rec: Optional['_DepthRecord'] = None
    wants_depth: bool = False
    result: Optional[FrameResult] = None
    extra_boxes: List[np.ndarray] = field(default_factory=list)


@dataclass
class _DepthRecord:
    """A depth message whose output waits for the mask of its colour frame."""

    key: Tuple[int, int]
    slot: _Slot
    msg: Any
    cdr: Any
    depth: Optional[np.ndarray]


class _Camera:
    """State of one colour topic (and its depth topic) during the run."""

    def __init__(self, plan: CameraPlan, masker: AVPrivacyMasker, run: '_Run') -> None:
        self.plan = plan
        self.masker = masker
        self.run = run
        self.pending: Deque[_Frame] = deque()  # read, not processed (waiting for depth)
        self.buffer: Deque[_Frame] = deque()  # processed, not written (backward pass)
        self.prev_boxes = np.zeros((0, 4), np.float32)
        self.colour_seen: Dict[int, int] = {}
        self.depth_seen: Dict[int, int] = {}
        # Pairing from the first pass, by (receive timestamp, duplicate number) keys.
        self.colour_to_depth: Dict[Tuple[int, int], Tuple[int, int]] = {}
        self.paired_depth: Set[Tuple[int, int]] = set()
        self.depth_to_colour: Dict[Tuple[int, int], Optional[Tuple[int, int]]] = {}
        self.mask_users: Dict[Tuple[int, int], int] = {}
        self.depth_arrived: Dict[Tuple[int, int], _DepthRecord] = {}
        self.final_masks: Dict[Tuple[int, int], Optional[np.ndarray]] = {}
        self.waiting_depth: Dict[Tuple[int, int], List[_DepthRecord]] = {}

    @staticmethod
    def _key(seen: Dict[int, int], timestamp: int) -> Tuple[int, int]:
        count = seen.get(timestamp, 0)
        seen[timestamp] = count + 1
        return (timestamp, count)

    # colour -----------------------------------------------------------------------------
    def add_colour(self, out_conn: Any, mask_conn: Any, timestamp: int, cdr: Any, msg: Any,
                   msgtype: str) -> None:
        """Queue one colour message (decoded from ``cdr``) of this topic for anonymization."""
        run = self.run
        key = self._key(self.colour_seen, timestamp)
        frame = _Frame(key, run.out.add(out_conn, timestamp),
                       run.out.add(mask_conn, timestamp) if mask_conn is not None else None,
                       msgtype)
        frame.cdr = cdr
        try:
            frame.msg = msg
            if msgtype == COMPRESSED_TYPE:
                frame.bgr, frame.codec = decode_compressed(frame.msg)
            else:
                frame.bgr, frame.codec = image_to_bgr(frame.msg)
        except Exception as exc:  # noqa: BLE001 - undecodable: write nothing, never raw
            run.summary.dropped(self.plan.topic)
            run.summary.note_error('%s: frame not written: %s' % (self.plan.topic, exc))
            frame.slot.drop()
            if frame.mask_slot is not None:
                frame.mask_slot.drop()
            frame.bgr = None
        frame.wants_depth = run.need_depth_input and key in self.colour_to_depth
        self.pending.append(frame)
        self.advance()

    def advance(self, at_end: bool = False) -> None:
        """Process the pending frames in order, as long as their depth has arrived."""
        while self.pending:
            frame = self.pending[0]
            if frame.wants_depth:
                depth_key = self.colour_to_depth[frame.key]
                record = self.depth_arrived.pop(depth_key, None)
                if record is None and not at_end:
                    return
                frame.depth_rec = record
                frame.depth = record.depth if record is not None else None
            self.pending.popleft()
            self._process(frame)

    def _process(self, frame: _Frame) -> None:
        run = self.run
        summary = run.summary
        if frame.bgr is None:
            # Dropped at decoding: nothing to write; depth that needs its mask goes whole-frame.
            self.prev_boxes = np.zeros((0, 4), np.float32)
            if frame.depth_rec is not None:
                self._write_depth(frame.depth_rec, None)
            self._set_final_mask(frame.key, None)
            run.frame_done()
            return
        depth = frame.depth
        if depth is not None and depth.shape[:2] != frame.bgr.shape[:2]:
            summary.note_error('%s: depth %dx%d does not match colour %dx%d; depth not used'
                               % (self.plan.topic, depth.shape[1], depth.shape[0],
                                  frame.bgr.shape[1], frame.bgr.shape[0]))
            depth = None
            frame.depth = None
        kwargs = dict(run.process_kwargs)
        if depth is None:
            kwargs['use_depth_for_mask'] = False
        start = time.perf_counter()
        try:
            result = self.masker.process(frame.bgr, depth, **kwargs)
        except Exception as exc:  # noqa: BLE001 - fail closed on anything
            result = self._whole_frame(frame, '%s: %s' % (type(exc).__name__, exc))
        summary.pipeline_time_s += time.perf_counter() - start
        if result is None:
            frame.slot.drop()
            if frame.mask_slot is not None:
                frame.mask_slot.drop()
            summary.dropped(self.plan.topic)
            frame.bgr = None
            if frame.depth_rec is not None:
                self._write_depth(frame.depth_rec, None)
                frame.depth_rec = None
            self._set_final_mask(frame.key, None)
            self.prev_boxes = np.zeros((0, 4), np.float32)
            run.frame_done()
            return
        frame.result = result
        if result.failed_closed:
            summary.frames_failed_closed += 1
            summary.note_error('%s: frame failed closed: %s' % (self.plan.topic, result.error))
            boxes = np.zeros((0, 4), np.float32)
        else:
            boxes = np.asarray(result.detections.boxes, np.float32).reshape(-1, 4)
            summary.faces_found += len(boxes)
        if run.backward_frames > 0 and len(boxes):
            # New faces: detected now, not masked (detected or held) in the frame before.
            iou = box_iou(boxes, self.prev_boxes)
            best = iou.max(axis=1) if iou.shape[1] else np.zeros(len(boxes), np.float32)
            new = boxes[best < NEW_FACE_IOU]
            if len(new):
                for back, older in enumerate(reversed(self.buffer), start=1):
                    older.extra_boxes.append(grow_boxes(new, BACKWARD_GROWTH * back))
        masked = getattr(result, 'mask_boxes', None)
        self.prev_boxes = (np.asarray(masked, np.float32).reshape(-1, 4)
                           if masked is not None and not result.failed_closed else boxes)
        self.buffer.append(frame)
        while len(self.buffer) > run.backward_frames:
            self._finalize(self.buffer.popleft())
        run.frame_done()

    def _whole_frame(self, frame: _Frame, error: str) -> Optional[FrameResult]:
        try:
            result = self.masker.anonymize_whole_frame(frame.bgr, frame.depth, error=error)
        except Exception as exc:  # noqa: BLE001 - nothing left to write safely
            self.run.summary.note_error('%s: frame not written: %s' % (self.plan.topic, exc))
            return None
        return result

    def _finalize(self, frame: _Frame) -> None:
        """Write a processed frame (its image, mask and paired depth)."""
        run = self.run
        summary = run.summary
        result = frame.result
        assert result is not None and frame.bgr is not None
        image, mask, depth_out = result.image, result.mask, result.depth
        if frame.extra_boxes and not result.failed_closed:
            try:
                extra = np.concatenate(frame.extra_boxes)
                extra_mask = self.masker.build_mask_from_boxes(
                    frame.bgr.shape[:2], extra, run.process_kwargs['pad_ratio'],
                    run.process_kwargs['oval_boxes'])
                adds_area = bool(np.any(extra_mask & ~mask))
            except Exception:  # noqa: BLE001 - cannot tell: mask them anyway
                adds_area = True
            again: Optional[FrameResult] = None
            if adds_area:
                try:
                    again = self.masker.mask_extra_boxes(
                        frame.bgr, result, extra, frame.depth,
                        run.process_kwargs['pad_ratio'], run.process_kwargs['oval_boxes'])
                except Exception as exc:  # noqa: BLE001 - nothing safe left to write
                    summary.note_error('%s: frame not written: %s' % (self.plan.topic, exc))
                    image = None
            if again is not None:
                image, mask, depth_out = again.image, again.mask, again.depth
                if again.failed_closed:
                    summary.frames_failed_closed += 1
                    summary.note_error('%s: frame failed closed: %s'
                                       % (self.plan.topic, again.error))
                else:
                    summary.frames_masked_backward += 1
        data = None
        if image is not None:
            try:
                data = self._encode_colour(frame, image, mask, result.failed_closed)
            except Exception as exc:  # noqa: BLE001 - never fall back to raw
                summary.note_error('%s: frame not written: %s' % (self.plan.topic, exc))
        if data is None:
            frame.slot.drop()
            if frame.mask_slot is not None:
                frame.mask_slot.drop()
            summary.dropped(self.plan.topic)
            mask = None
        else:
            frame.slot.ready(data)
            summary.frames_anonymized += 1
            if frame.mask_slot is not None:
                frame.mask_slot.ready(self._encode_mask(frame.msg, mask))
                summary.masks_written += 1
        if frame.depth_rec is not None:
            self._write_depth(frame.depth_rec, mask, depth_out if mask is not None else None)
        self._set_final_mask(frame.key, mask)
        frame.bgr = frame.depth = frame.msg = frame.cdr = frame.result = None

    def _encode_colour(self, frame: _Frame, image: np.ndarray, mask: np.ndarray,
                       failed: bool) -> Any:
        run = self.run
        if not failed and not mask.any():
            return frame.cdr  # nothing masked: the input bytes are the anonymized frame
        msg = frame.msg
        if frame.msgtype == COMPRESSED_TYPE:
            codec, grey = frame.codec
            data = encode_compressed(image, codec, grey, run.jpeg_quality)
            out = dataclasses.replace(msg, data=data)
        else:
            # The input's row step (zero padding) is kept; image_to_bgr checked it on reading.
            _, step, data = bgr_to_image_fields(image, frame.codec, step=int(msg.step))
            out = dataclasses.replace(msg, step=step, data=_as_bytes(data))
        return run.dst_ts.serialize_cdr(out, frame.msgtype)

    def _encode_mask(self, msg: Any, mask: np.ndarray) -> Any:
        run = self.run
        encoding, step, raw = mask_to_mono8_fields(mask)
        image_cls = run.dst_ts.types[IMAGE_TYPE]
        out = image_cls(header=msg.header, height=mask.shape[0], width=mask.shape[1],
                        encoding=encoding, is_bigendian=0, step=step,
                        data=np.frombuffer(raw, np.uint8))
        return run.dst_ts.serialize_cdr(out, IMAGE_TYPE)

    def _set_final_mask(self, key: Tuple[int, int], mask: Optional[np.ndarray]) -> None:
        users = self.mask_users.get(key, 0)
        for record in self.waiting_depth.pop(key, []):
            self._write_depth(record, mask)
            users -= 1
        if users > 0:
            self.final_masks[key] = mask
            self.mask_users[key] = users
        else:
            self.mask_users.pop(key, None)

    def expire(self, now_ns: int) -> None:
        """Write buffered frames received more than BACKWARD_MAX_AGE_NS before ``now_ns``."""
        while self.buffer and self.buffer[0].slot.timestamp < now_ns - BACKWARD_MAX_AGE_NS:
            self._finalize(self.buffer.popleft())

    def finish(self) -> None:
        """Write everything still buffered (end of the bag)."""
        self.advance(at_end=True)
        while self.buffer:
            self._finalize(self.buffer.popleft())
        for key in list(self.waiting_depth):
            for record in self.waiting_depth.pop(key):
                self._write_depth(record, None)

    # depth ------------------------------------------------------------------------------
    def add_depth(self, out_conn: Any, timestamp: int, cdr: Any, msg: Any) -> None:
        """Queue one depth Image (decoded from ``cdr``, checked) of this camera's depth topic."""
        run = self.run
        key = self._key(self.depth_seen, timestamp)
        slot = run.out.add(out_conn, timestamp)
        if not run.depth_noise:
            slot.ready(cdr)  # depth is only read for the mask, never changed
            run.summary.messages_copied += 1
        if not run.need_depth_input:
            return
        depth = None
        try:
            depth = image_to_depth(msg)
        except Exception as exc:  # noqa: BLE001 - undecodable depth
            run.summary.note_error('%s: depth not usable: %s' % (self.plan.depth_topic, exc))
            if run.depth_noise:
                slot.drop()
                run.summary.dropped(self.plan.depth_topic)
        record = _DepthRecord(key, slot, msg, cdr, depth)
        source = self.depth_to_colour.get(key)
        if key in self.paired_depth:
            self.depth_arrived[key] = record
            self.advance()
            return
        # Unpaired: it uses the mask of the nearest colour frame.
        if source is None:
            self._write_depth(record, None)
        elif source in self.final_masks:
            self._write_depth(record, self.final_masks[source])
            left = self.mask_users.get(source, 1) - 1
            if left <= 0:
                self.final_masks.pop(source, None)
                self.mask_users.pop(source, None)
            else:
                self.mask_users[source] = left
        else:
            self.waiting_depth.setdefault(source, []).append(record)

    def _write_depth(self, record: _DepthRecord, mask: Optional[np.ndarray],
                     depth_out: Optional[np.ndarray] = None) -> None:
        """Write a depth message with noise under ``mask`` (whole frame when None)."""
        run = self.run
        if not run.depth_noise or record.slot.state != _Slot.PENDING:
            return
        depth = record.depth
        if depth is None:
            record.slot.drop()
            return
        summary = run.summary
        try:
            if mask is None or mask.shape != depth.shape[:2]:
                whole = np.ones(depth.shape[:2], np.bool_)
                depth_out = anonymize_depth(depth, whole, max(run.depth_std, 0.05),
                                            self.masker.rng)
                summary.depth_failed_closed += 1
            elif not mask.any():
                record.slot.ready(record.cdr)
                summary.messages_copied += 1
                return
            elif depth_out is None or depth_out.shape != depth.shape:
                depth_out = anonymize_depth(depth, mask, run.depth_std, self.masker.rng)
            # The input's row step (zero padding) and byte order are kept.
            _, step, data = depth_to_image_fields(
                depth_out, record.msg.encoding, step=int(record.msg.step),
                big_endian=int(record.msg.is_bigendian) == 1)
            out = dataclasses.replace(record.msg, step=step, data=_as_bytes(data))
            record.slot.ready(run.dst_ts.serialize_cdr(out, IMAGE_TYPE))
            summary.depth_anonymized += 1
        except Exception as exc:  # noqa: BLE001 - never write raw depth on an error path
            summary.note_error('%s: depth not written: %s' % (self.plan.depth_topic, exc))
            summary.dropped(self.plan.depth_topic)
            record.slot.drop()


# -- the run -----------------------------------------------------------------------------------
@dataclass
class _Run:
    """Shared state of one anonymize_bag call."""

    out: _OutputQueue
    dst_ts: Any
    summary: BagSummary
    process_kwargs: Dict[str, Any]
    need_depth_input: bool
    depth_noise: bool
    depth_std: float
    jpeg_quality: int
    backward_frames: int
    total_frames: int
    progress: Optional[ProgressCallback] = None
    bar: Any = None
    done: int = 0

    def frame_done(self) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
        if self.progress is not None:
            self.progress(self.done, self.total_frames)


def _reader_errors() -> Tuple[type, ...]:
    from rosbags.highlevel import AnyReaderError
    from rosbags.rosbag1 import ReaderError as Reader1Error
    from rosbags.rosbag2 import ReaderError as Reader2Error
    return (AnyReaderError, Reader1Error, Reader2Error)


def _input_path(path: Path) -> Path:
    """Return the path rosbags should open (a bag folder, .mcap/.db3 file or ROS 1 .bag)."""
    if not path.exists():
        raise BagError('input bag %s does not exist' % path)
    if path.is_file() and path.suffix in ('.mcap', '.db3') \
            and (path.parent / 'metadata.yaml').is_file():
        return path.parent
    if path.is_file() and path.name == 'metadata.yaml':
        return path.parent
    if path.is_dir() and not (path / 'metadata.yaml').is_file():
        raise BagError('%s is a folder without metadata.yaml, not a rosbag2 bag' % path)
    if path.is_file() and path.suffix not in ('.bag', '.mcap', '.db3'):
        raise BagError('%s is not a bag: expected a rosbag2 folder, a .mcap or .db3 file, or '
                       'a ROS 1 .bag file' % path)
    return path


def _input_storage(path: Path) -> str:
    files = [path] if path.is_file() else list(path.iterdir())
    if any(p.suffix == '.db3' for p in files):
        return 'sqlite3'
    return 'mcap'


def _tolerant_reader(path: Path, default_typestore: Any) -> Any:
    """
    Return an AnyReader that keeps going past message definitions it cannot parse.

    rosbags' AnyReader stops the whole bag at one definition it cannot parse (for example the
    ``.../srv/..._Event`` service-event topics that ``ros2 bag record`` writes on Jazzy).  This
    one parses each connection's definition on its own and lists those that fail in
    ``unparsed`` (type -> reason); their messages are still read, as bytes.
    """
    from rosbags.highlevel import AnyReader
    from rosbags.highlevel.anyreader import AnyReaderError
    from rosbags.interfaces import MessageDefinitionFormat
    from rosbags.typesys import get_types_from_idl, get_types_from_msg, get_typestore, Stores

    def parse(connection: Any) -> Dict[str, Any]:
        if connection.msgdef.format == MessageDefinitionFormat.MSG:
            return dict(get_types_from_msg(connection.msgdef.data, connection.msgtype))
        found: Dict[str, Any] = {}
        sep = '=' * 80 + '\n'
        if connection.msgdef.data.startswith(sep + 'IDL: '):
            for msgdef in connection.msgdef.data.split(sep)[1:]:
                found.update(get_types_from_idl(msgdef.split('\n', 1)[1]))
        else:
            found.update(get_types_from_idl(connection.msgdef.data))
        return found

    class TolerantReader(AnyReader):  # type: ignore[misc]
        unparsed: Dict[str, str]

        def _open(self) -> None:
            assert self.stack
            for sub in self.readers:
                self.stack.enter_context(sub)
            self.unparsed = {}
            typs: Dict[str, Any] = {}
            digests: Dict[str, str] = {}
            connections = [c for sub in self.readers for c in sub.connections]
            defined = [c for c in connections if c.msgdef.format != MessageDefinitionFormat.NONE]
            for connection in defined:
                try:
                    typs.update(parse(connection))
                except Exception as exc:  # noqa: BLE001 - this type only is copied as bytes
                    self.unparsed[connection.msgtype] = _one_line(exc)
                    continue
                if connection.digest:
                    digests[connection.msgtype] = connection.digest
            if connections and not defined:
                if self.default_typestore is None:
                    raise AnyReaderError('Bag contains no type definitions.')
                typs.update(self.default_typestore.fielddefs)
            typestore = get_typestore(Stores.EMPTY)
            typestore.register(typs)
            for msgtype, digest in digests.items():
                try:
                    have = (typestore.hash_rihs01(msgtype) if self.is2
                            else typestore.generate_msgdef(msgtype)[1])
                except Exception as exc:  # noqa: BLE001 - cannot be checked
                    self.unparsed[msgtype] = _one_line(exc)
                    continue
                if have != digest:
                    self.unparsed[msgtype] = 'its definition does not match its hash'
            self.connections = connections
            self.typestore = typestore

    return TolerantReader([path], default_typestore=default_typestore)


def _open_reader(path: Path) -> Any:
    from rosbags.typesys import get_typestore, Stores
    try:
        reader = _tolerant_reader(path, get_typestore(Stores.LATEST))
        reader.open()
    except _reader_errors() as exc:
        raise BagError('cannot read input bag %s: %s (is it corrupt or truncated?)'
                       % (path, exc)) from exc
    except Exception as exc:  # noqa: BLE001 - storage libraries raise many kinds
        raise BagError('cannot read input bag %s: %s: %s (is it corrupt or truncated?)'
                       % (path, type(exc).__name__, exc)) from exc
    return reader


def _read(reader: Any, path: Path, connections: Sequence[Any] = ()
          ) -> Iterator[Tuple[Any, int, Any]]:
    """Yield (connection, timestamp, raw) and turn reading failures into a BagError."""
    iterator = reader.messages(connections=connections)
    count = 0
    while True:
        try:
            item = next(iterator)
        except StopIteration:
            return
        except Exception as exc:  # noqa: BLE001 - corrupt storage, bad chunk, ...
            raise BagError('reading input bag %s failed after %d messages: %s: %s (is it '
                           'corrupt or truncated?)' % (path, count, type(exc).__name__, exc)
                           ) from exc
        count += 1
        yield item


ROS2_FIELD_NAME = re.compile(r'^[a-z][a-z0-9]*(_[a-z0-9]+)*$')
"""ROS 2 field names: lower case, digits and single inner underscores (rosidl's rule)."""


def ros2_definition_problem(store: Any, msgtype: str) -> str:
    """Return why ``msgtype`` (and the types it uses) is not a valid ROS 2 message, or ''."""
    try:
        used = _type_closure(store, msgtype, set())
    except KeyError as exc:
        return 'its definition uses the unknown type %s' % exc
    for name in used:
        for field_name, _ in store.fielddefs[name][1]:
            if not ROS2_FIELD_NAME.match(field_name):
                return '%r in %s is not a valid ROS 2 field name' % (field_name, name)
    return ''


def _dst_typestore(reader: Any) -> Tuple[Any, Dict[str, str], Dict[str, Callable[[Any], Any]],
                                         Dict[str, str]]:
    """
    Return the output typestore, type renames, per-type converters to CDR and skipped types.

    rosbag2 input: the bag's own types, messages copied byte for byte.  ROS 1 input: the ROS 2
    definitions of the latest distribution (field names, types and hashes: CameraInfo's
    ``D K R P`` become ``d k r p``), messages migrated by rosbags' converter; a type the
    distribution does not have keeps its own definition when that is valid ROS 2, else it is
    skipped (``skipped`` maps it to the reason).  sensor_msgs/Image is added for mask topics.
    """
    from rosbags.typesys import get_types_from_msg, get_typestore, Stores
    latest = get_typestore(Stores.LATEST)
    src = reader.typestore
    renames: Dict[str, str] = {}
    converters: Dict[str, Callable[[Any], Any]] = {}
    skipped: Dict[str, str] = {}
    if reader.is2:
        dst = get_typestore(Stores.EMPTY)
        dst.register(dict(src.fielddefs))
    else:
        from rosbags.convert.converter import generate_message_converter, STATIC_MSGTYPE_RENAMES
        dst = get_typestore(Stores.LATEST)
        cache: Dict[str, object] = {}
        for conn in reader.connections:
            if conn.msgtype in converters or conn.msgtype in skipped:
                continue
            target = STATIC_MSGTYPE_RENAMES.get(conn.msgtype, conn.msgtype)
            try:
                if target not in dst.fielddefs:
                    typs = get_types_from_msg(
                        src.generate_msgdef(conn.msgtype, ros_version=2)[0], target)
                    typs.pop('std_msgs/msg/Header', None)
                    candidate = get_typestore(Stores.LATEST)
                    candidate.register({k: v for k, v in typs.items()
                                        if k not in candidate.fielddefs})
                    problem = ros2_definition_problem(candidate, target)
                    if problem:
                        skipped[conn.msgtype] = 'no ROS 2 equivalent: %s' % problem
                        continue
                    dst.register({k: v for k, v in typs.items() if k not in dst.fielddefs})
                converters[conn.msgtype] = generate_message_converter(
                    src, dst, conn.msgtype, target, cache, src_is2=False, dst_is2=True)
            except Exception as exc:  # noqa: BLE001 - reported and skipped, never broken
                skipped[conn.msgtype] = 'cannot be converted to ROS 2: %s' % _one_line(exc)
                continue
            renames[conn.msgtype] = target
    missing = _type_closure(latest, IMAGE_TYPE, set(dst.fielddefs))
    if missing:
        dst.register({name: latest.fielddefs[name] for name in missing})
    return dst, renames, converters, skipped


def _type_closure(store: Any, name: str, have: Set[str]) -> List[str]:
    """Return ``name`` and the types it uses that are not in ``have``."""
    from rosbags.interfaces import Nodetype
    found: List[str] = []
    todo = [name]
    while todo:
        current = todo.pop()
        if current in have or current in found:
            continue
        found.append(current)
        for _, desc in store.fielddefs[current][1]:
            kind, detail = desc
            sub = detail[0] if kind in (Nodetype.ARRAY, Nodetype.SEQUENCE) else desc
            if sub[0] == Nodetype.NAME:
                todo.append(sub[1])
    return found


@dataclass
class TopicPlan:
    """What happens to each topic: cameras (with their depth), depth topics, copied topics."""

    cameras: List[CameraPlan]
    depth_topics: Set[str]
    copy_topics: Set[str]
    image_topics: Set[str]


def choose_cameras(reader: Any, path: Path, image_topics: Sequence[str],
                   depth_topics: Sequence[str], use_depth: bool, write_masks: bool,
                   log: LogCallback, copy_topics: Sequence[str] = ()) -> TopicPlan:
    """
    Decide the role of every image topic; raise BagError if the options cannot be met.

    Every topic with a sensor_msgs/Image or CompressedImage connection gets a camera (its face
    capable messages are anonymized), except the ``copy_topics`` the user named, which are
    copied unchanged.  Depth topics are the ``depth_topics`` given and topics with a ``depth``
    word in their name (unless named with ``image_topics``): never the messages' own labels,
    which could put a depth label on a colour frame.  A depth topic pairs with the colour
    camera of the same name; its depth messages feed that camera's mask and depth noise, and
    any colour message on it is anonymized by a camera of its own.  ``image_topics`` does not
    limit what is anonymized: it only makes sure a topic is treated as colour.
    """
    topics: Dict[str, List[Any]] = {}
    for conn in reader.connections:
        topics.setdefault(conn.topic, []).append(conn)
    image_like = [t for t, conns in topics.items()
                  if any(c.msgtype in (IMAGE_TYPE, COMPRESSED_TYPE) for c in conns)]

    def check(topic: str, what: str) -> None:
        if topic not in topics:
            raise BagError('topic %s is not in %s (image topics in the bag: %s)'
                           % (topic, path, ', '.join(sorted(image_like)) or 'none'))
        if topic not in image_like:
            raise BagError('topic %s is a %s, not a %s'
                           % (topic, topics[topic][0].msgtype, what))

    for topic in image_topics:
        check(topic, 'sensor_msgs/Image or CompressedImage')
    for topic in depth_topics:
        check(topic, 'sensor_msgs/Image depth topic')
    for topic in copy_topics:
        if topic not in topics:
            raise BagError('--copy-topic %s is not in %s' % (topic, path))
    both = set(image_topics) & set(depth_topics)
    if both:
        raise BagError('topic %s is given both as --image-topic and --depth-topic'
                       % sorted(both)[0])
    copied = set(copy_topics)
    depth_role: Set[str] = set()
    for topic in image_like:
        if topic in copied or topic in image_topics:
            continue
        if topic in depth_topics or is_depth_name(topic):
            depth_role.add(topic)
    colour = [t for t in image_like if t not in copied and t not in depth_role]
    colour.sort(key=lambda t: (topics[t][0].msgtype != IMAGE_TYPE, t))
    if image_topics:
        extra = [t for t in colour if t not in image_topics]
        if extra:
            log('image topics anonymized although not named with --image-topic (to copy one '
                'unchanged, name it with --copy-topic): %s' % ', '.join(sorted(extra)))
    if copied & set(image_like):
        log('warning: image topics copied WITHOUT anonymization (--copy-topic): %s'
            % ', '.join(sorted(copied & set(image_like))))
    if depth_role:
        log('depth topics (faces are not searched in their depth images; any colour image on '
            'them is anonymized): %s' % ', '.join(sorted(depth_role)))
    plans = [CameraPlan(t, topics[t][0].msgtype) for t in colour]
    if use_depth:
        depth_images = [t for t in depth_role
                        if any(c.msgtype == IMAGE_TYPE for c in topics[t])]
        if depth_topics and len(depth_topics) == len(image_topics):
            pairs = dict(zip(image_topics, depth_topics))
        else:
            candidates = list(depth_topics) or sorted(depth_images)
            pairs = pair_depth_topics(colour, candidates)
            unpaired = [d for d in depth_topics if d not in pairs.values()]
            if unpaired:
                raise BagError('cannot tell which colour topic the depth topic %s belongs to; '
                               'give one --depth-topic per --image-topic, in the same order'
                               % unpaired[0])
        for plan in plans:
            plan.depth_topic = pairs.get(plan.topic)
    elif depth_topics:
        log('warning: use_depth is false; --depth-topic is ignored')
    if write_masks:
        for plan in plans:
            plan.mask_topic = plan.topic.rstrip('/') + MASK_SUFFIX
            if plan.mask_topic in topics:
                raise BagError('the mask topic %s already exists in %s; run without '
                               '--write-masks' % (plan.mask_topic, path))
    # Colour messages on depth topics are anonymized by a camera of their own, without depth.
    plans.extend(CameraPlan(t, topics[t][0].msgtype, note='depth topic') for t in
                 sorted(depth_role))
    return TopicPlan(plans, depth_role, copied, set(image_like))


def _make_maskers(plans: Sequence[CameraPlan], values: Mapping[str, Any],
                  detector: Any) -> List[AVPrivacyMasker]:
    kwargs = params_mod.masker_kwargs(values)
    seed = kwargs.pop('seed')
    maskers: List[AVPrivacyMasker] = []
    for index, _ in enumerate(plans):
        topic_seed = None if seed is None else seed + index
        if detector is None and not maskers:
            masker = AVPrivacyMasker(seed=topic_seed, **kwargs)
        else:
            shared = detector if detector is not None else maskers[0].detector
            masker = AVPrivacyMasker(seed=topic_seed, detector=shared, **kwargs)
        maskers.append(masker)
    return maskers


def decode_and_route(dst_ts: Any, msgtype: str, cdr: Any, depth_topic: bool
                     ) -> Tuple[str, str, Any]:
    """Return ``(kind, reason, message)`` for one image message's CDR bytes (see route_message)."""
    try:
        msg = dst_ts.deserialize_cdr(cdr, msgtype)
    except Exception as exc:  # noqa: BLE001 - undecodable: never written
        return DROP, 'cannot be decoded: %s: %s' % (type(exc).__name__, exc), None
    kind, reason = route_message(msgtype, msg, depth_topic)
    return kind, reason, msg


def _first_pass(reader: Any, path: Path, cameras: Sequence[_Camera], dst_ts: Any,
                renames: Mapping[str, str], converters: Mapping[str, Callable[[Any], Any]],
                depth_role: Set[str], slop_ns: int) -> None:
    """Read the header stamps of paired colour and depth messages and pair them."""
    wanted: Dict[str, Tuple[_Camera, bool]] = {}
    for cam in cameras:
        if cam.plan.depth_topic:
            wanted[cam.plan.topic] = (cam, True)
            wanted[cam.plan.depth_topic] = (cam, False)
    if not wanted:
        return
    stamps: Dict[str, List[Tuple[Tuple[int, int], Optional[int]]]] = {t: [] for t in wanted}
    seen: Dict[str, Dict[int, int]] = {t: {} for t in wanted}
    conns = [c for c in reader.connections if c.topic in wanted
             and c.msgtype in (IMAGE_TYPE, COMPRESSED_TYPE)]
    for conn, timestamp, raw in _read(reader, path, conns):
        cam, is_colour = wanted[conn.topic]
        msgtype = renames.get(conn.msgtype, conn.msgtype)
        try:
            cdr = converters[conn.msgtype](raw) if conn.msgtype in converters else raw
        except Exception:  # noqa: BLE001 - dropped in the main pass too
            continue
        kind, _, msg = decode_and_route(dst_ts, msgtype, cdr, conn.topic in depth_role)
        # Exactly the messages the main pass hands to add_colour / add_depth get a key.
        if is_colour and kind != COLOUR:
            continue
        if not is_colour and (kind != DEPTH or msgtype != IMAGE_TYPE):
            continue
        key = _Camera._key(seen[conn.topic], timestamp)
        stamps[conn.topic].append((key, header_stamp_ns(msg)))
    for cam in cameras:
        if not cam.plan.depth_topic:
            continue
        colour = stamps[cam.plan.topic]
        depth = stamps[cam.plan.depth_topic]
        c_to_d, d_to_c = pair_stamps([s for _, s in colour], [s for _, s in depth], slop_ns)
        cam.colour_to_depth = {colour[i][0]: depth[j][0] for i, j in c_to_d.items()}
        cam.depth_to_colour = {depth[j][0]: (colour[i][0] if i is not None else None)
                               for j, i in d_to_c.items()}
        cam.paired_depth = set(cam.colour_to_depth.values())
        for dkey, ckey in cam.depth_to_colour.items():
            if ckey is not None and dkey not in cam.paired_depth:
                cam.mask_users[ckey] = cam.mask_users.get(ckey, 0) + 1


def embeds_image(store: Any, msgtype: str) -> bool:
    """Return True when ``msgtype`` has an Image or CompressedImage field, at any depth."""
    if msgtype not in store.fielddefs:
        return False
    try:
        used = _type_closure(store, msgtype, set())
    except KeyError:
        return False
    return IMAGE_TYPE in used or COMPRESSED_TYPE in used


def _mentions_images(msgdef: str) -> bool:
    """Return True when a message definition text uses an Image or CompressedImage."""
    return bool(re.search(r'\b(Image|CompressedImage)\b', msgdef or ''))


def _raw_schema_problem(rconn: Any, unparsed: Mapping[str, str]) -> str:
    """Return why a connection whose definition cannot be parsed cannot be copied, or ''."""
    if rconn.msgtype not in unparsed:
        return ''
    if not rconn.msgdef.data or not rconn.digest:
        return ('its definition cannot be parsed (%s) and the bag has no definition and hash '
                'to copy' % unparsed[rconn.msgtype])
    return ''


def _add_connection(writer: Any, rconn: Any, topic: str, msgtype: str, dst_ts: Any,
                    is2: bool, added: Dict[Tuple[Any, ...], Any],
                    raw_schema: bool = False) -> Any:
    from rosbags.interfaces import ConnectionExtRosbag2, MessageDefinitionFormat
    if is2 and isinstance(rconn.ext, ConnectionExtRosbag2):
        ext_format = rconn.ext.serialization_format
        qos = list(rconn.ext.offered_qos_profiles)
    else:
        from rosbags.convert.converter import LATCH
        ext_format = 'cdr'
        qos = list(LATCH) if getattr(rconn.ext, 'latching', 0) else []
    key = (topic, msgtype, ext_format, repr(qos))
    if key in added:
        return added[key]
    if raw_schema or is2 and rconn.msgtype == msgtype and rconn.digest \
            and rconn.msgdef.format != MessageDefinitionFormat.NONE and rconn.msgdef.data:
        conn = writer.add_connection(topic, msgtype, msgdef=rconn.msgdef.data,
                                     rihs01=rconn.digest, serialization_format=ext_format,
                                     offered_qos_profiles=qos)
    else:
        conn = writer.add_connection(topic, msgtype, typestore=dst_ts,
                                     serialization_format=ext_format, offered_qos_profiles=qos)
    added[key] = conn
    return conn


ROSBAG2_FILE_SUFFIXES = ('.mcap', '.db3', '.db3-shm', '.db3-wal', '.db3-journal', '.zstd')
"""Files a rosbag2 output folder holds beside metadata.yaml; --force replaces nothing else."""


def _input_files(src: Path) -> List[Path]:
    """Return the input bag and, for a folder, every file in it, with symlinks resolved."""
    found = [src.resolve()]
    if src.is_dir():
        found.extend(child.resolve() for child in src.iterdir())
    return found


def check_output(src: Path, dst: Path, force: bool) -> None:
    """
    Refuse an output that could touch the input or anything the user did not name as output.

    Checked with symlinks resolved, before anything is read or written: the output must not be
    the input, contain the input (or any input file), or lie inside the input.  An existing
    output is replaced only with ``force``, and only when it is a rosbag2 folder (a
    metadata.yaml beside storage files) holding nothing else.

    :raises BagError: saying which rule the output breaks.
    """
    target = dst.resolve()
    for item in _input_files(src):
        if target == item:
            raise BagError('the output %s is the input bag %s' % (dst, src))
        if target in item.parents:
            raise BagError('the output %s contains the input %s; replacing or writing it could '
                           'destroy the input' % (dst, item))
        if item in target.parents:
            raise BagError('the output %s lies inside the input %s' % (dst, item))
    if not os.path.lexists(dst):
        return
    if not force:
        raise BagError('output %s exists already; use --force to replace it' % dst)
    if dst.is_symlink():
        raise BagError('output %s is a symbolic link; --force does not replace links' % dst)
    if not dst.is_dir():
        raise BagError('output %s is not a folder; --force only replaces a rosbag2 output '
                       'folder' % dst)
    if not (dst / 'metadata.yaml').is_file():
        raise BagError('output %s has no metadata.yaml; --force only replaces a rosbag2 output '
                       'folder' % dst)
    foreign = sorted(child.name for child in dst.iterdir()
                     if child.name != 'metadata.yaml'
                     and not (child.is_file() and not child.is_symlink()
                              and child.name.endswith(ROSBAG2_FILE_SUFFIXES)))
    if foreign:
        raise BagError('output %s holds files that are not part of a rosbag2 bag (%s); '
                       '--force does not replace it' % (dst, ', '.join(foreign[:5])))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, OSError):
        return False
    return True


def clean_stale_staging(dst: Path, say: LogCallback) -> List[Path]:
    """
    Remove ``.NAME.partial-PID`` staging folders left beside ``dst`` by killed runs.

    A folder whose process is still running is left alone (and reported).  Returns the folders
    removed.
    """
    prefix = '.%s.partial-' % dst.name
    removed: List[Path] = []
    parent = dst.parent
    if not parent.is_dir():
        return removed
    for child in sorted(parent.iterdir()):
        pid_text = child.name[len(prefix):] if child.name.startswith(prefix) else ''
        if not pid_text.isdigit() or child.is_symlink() or not child.is_dir():
            continue
        pid = int(pid_text)
        if pid != os.getpid() and _pid_alive(pid):
            say('note: %s belongs to a running anonymize_bag (process %d); left alone'
                % (child, pid))
            continue
        shutil.rmtree(child)
        say('removed %s, the unfinished output of an interrupted run (process %d)'
            % (child, pid))
        removed.append(child)
    return removed


def weakened_settings(values: Mapping[str, Any], backward_frames: int) -> List[str]:
    """Return one sentence per setting weaker for privacy than the defaults (as the node's)."""
    found = params_mod.privacy_weakenings(values)
    if backward_frames == 0:
        found.append('--backward-frames 0 (a face found late shows before it is found)')
    return found


def _one_line(exc: BaseException) -> str:
    return ' '.join(('%s' % exc).split()) or type(exc).__name__


def _model_description(values: Mapping[str, Any]) -> str:
    path = values.get('detector.model_path') or ''
    if path:
        return str(path)
    if values.get('detector.backend') in ('scrfd', 'auto'):
        try:
            from .detection import find_scrfd_model
            found = find_scrfd_model(None, allow_download=False)
        except Exception:  # noqa: BLE001 - only for the message
            found = None
        if found is not None:
            return str(found)
    return 'of backend %s' % values.get('detector.backend')


def anonymize_bag(input_path: Any, output_path: Any, *,
                  image_topics: Sequence[str] = (), depth_topics: Sequence[str] = (),
                  copy_topics: Sequence[str] = (),
                  params: Optional[Mapping[str, Any]] = None, storage: Optional[str] = None,
                  force: bool = False, write_masks: bool = False,
                  jpeg_quality: int = DEFAULT_JPEG_QUALITY,
                  backward_frames: int = DEFAULT_BACKWARD_FRAMES, detector: Any = None,
                  progress: Optional[ProgressCallback] = None, show_progress: bool = False,
                  log: Optional[LogCallback] = None) -> BagSummary:
    """
    Anonymize every image topic of a bag into a new rosbag2 bag; return the counts.

    Every image message is classified by its own type and encoding (:func:`route_message`):
    a message that can show a face is anonymized or not written.  ``copy_topics`` are copied
    unchanged, image topics included: the only way to keep an image topic as it is.
    ``params`` holds parameter overrides by dotted name (see :mod:`av_privacy_ros.params`; a
    node params YAML read with ``params.load_params_file``).  ``storage`` is ``mcap`` or
    ``sqlite3`` (default: the input's, mcap for ROS 1).  ``detector`` injects a face detector
    (otherwise one is built from the parameters).  ``progress(done, total)`` is called after
    each colour frame; an exception it raises aborts the run.  Whatever stops the run, no
    output bag is left behind: it is written in a hidden folder beside ``output_path`` and
    renamed only at the end.

    :raises BagError: for a missing, corrupt or truncated input, an unknown topic, an output
        that is, holds or lies in the input, an existing output without ``force`` (or one that
        is not a rosbag2 folder), an unwritable output, a model that cannot be loaded, or bad
        parameters.
    """
    started = time.perf_counter()
    say: LogCallback = log or (lambda text: None)
    src = _input_path(Path(input_path))
    dst = Path(output_path)
    check_output(src, dst, force)
    if storage is None:
        storage = _input_storage(src) if src.suffix != '.bag' else 'mcap'
    if storage not in ('mcap', 'sqlite3'):
        raise BagError('storage must be mcap or sqlite3, got %r' % storage)
    if not 1 <= int(jpeg_quality) <= 100:
        raise BagError('JPEG quality must be within 1..100, got %r' % jpeg_quality)
    if int(backward_frames) < 0:
        raise BagError('backward frames must be >= 0, got %r' % backward_frames)
    try:
        values = params_mod.resolve(params or {})
    except ValueError as exc:
        raise BagError('bad parameter: %s' % exc) from exc

    reader = _open_reader(src)
    try:
        topic_plan = choose_cameras(reader, src, list(image_topics), list(depth_topics),
                                    bool(values['use_depth']), write_masks, say,
                                    copy_topics=list(copy_topics))
        plans = topic_plan.cameras
        summary = BagSummary(output=str(dst), cameras=plans)
        if not plans:
            # A fleet pipeline runs the tool over every bag: one without images is copied.
            say('warning: no image topics (sensor_msgs/Image or CompressedImage) to anonymize '
                'in %s; every message is copied unchanged' % src)
            maskers: List[AVPrivacyMasker] = []
            summary.detector = 'none (no image topics)'
        else:
            try:
                maskers = _make_maskers(plans, values, detector)
            except Exception as exc:  # noqa: BLE001 - any model loading failure is one line
                raise BagError('cannot load the face detector model %s: %s'
                               % (_model_description(values), _one_line(exc))) from exc
            summary.detector = '%s on %s' % (maskers[0].backend, maskers[0].provider)
            summary.weakened = weakened_settings(values, int(backward_frames))
            for text in summary.weakened:
                say('warning: settings weaken privacy: %s' % text)
        summary.copied_topics = sorted(topic_plan.copy_topics & topic_plan.image_topics)
        say('input: %s (%s)' % (src, 'ROS 1' if not reader.is2 else 'rosbag2'))
        say('anonymizing %d image topic(s) with %s:' % (len(plans), summary.detector))
        for plan in plans:
            say('  ' + plan.describe())
        created = _make_parent(dst)
        try:
            clean_stale_staging(dst, say)
            return _write(reader, src, dst, storage, force, values, topic_plan, maskers,
                          summary, int(jpeg_quality), int(backward_frames), progress,
                          show_progress, say, started)
        except BaseException:
            for folder in reversed(created):
                try:
                    folder.rmdir()
                except OSError:
                    break
            raise
    except OSError as exc:
        raise BagError('cannot write the output %s: %s' % (dst, _one_line(exc))) from exc
    finally:
        reader.close()


def _make_parent(dst: Path) -> List[Path]:
    """Create the output's missing parent folders; return them (outermost first)."""
    missing: List[Path] = []
    parent = dst.parent
    while not parent.exists() and not parent.is_symlink() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    created: List[Path] = []
    for folder in reversed(missing):
        folder.mkdir()
        created.append(folder)
    if not dst.parent.is_dir():
        raise NotADirectoryError('%s is not a folder' % dst.parent)
    return created


def _write(reader: Any, src: Path, dst: Path, storage: str, force: bool,
           values: Mapping[str, Any], topic_plan: TopicPlan,
           maskers: Sequence[AVPrivacyMasker], summary: BagSummary, jpeg_quality: int,
           backward_frames: int, progress: Optional[ProgressCallback], show_progress: bool,
           say: LogCallback, started: float) -> BagSummary:
    from rosbags.rosbag2 import StoragePlugin, Writer, WriterError
    plans = topic_plan.cameras
    dst_ts, renames, converters, skipped = _dst_typestore(reader)
    unparsed: Dict[str, str] = dict(getattr(reader, 'unparsed', {}))
    depth_noise = bool(values['depth.enable_noise'])
    process_kwargs = params_mod.process_kwargs(values)
    need_depth_input = any(p.depth_topic for p in plans) and (
        depth_noise or bool(process_kwargs['use_depth_for_mask']))
    if any(p.depth_topic for p in plans) and not need_depth_input:
        say('  (depth images are copied unchanged: depth.enable_noise is false and mask.mode '
            'is not depth)')
    colour_topics = {p.topic for p in plans if p.topic not in topic_plan.depth_topics}
    total_frames = sum(c.msgcount for c in reader.connections
                       if c.topic in colour_topics and c.msgtype in (IMAGE_TYPE, COMPRESSED_TYPE))

    staging = dst.parent / ('.%s.partial-%d' % (dst.name, os.getpid()))
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    bar = None
    try:
        plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
        writer = Writer(staging / dst.name, version=Writer.VERSION_LATEST,
                        storage_plugin=plugin)
        with writer:
            run = _Run(_OutputQueue(writer), dst_ts, summary, process_kwargs, need_depth_input,
                       depth_noise, float(values['depth.noise_std']), jpeg_quality,
                       backward_frames, total_frames, progress)
            cameras = [_Camera(plan, masker, run) for plan, masker in zip(plans, maskers)]
            colour_of = {cam.plan.topic: cam for cam in cameras}
            depth_of = {cam.plan.depth_topic: cam for cam in cameras if cam.plan.depth_topic}
            depth_role = topic_plan.depth_topics
            loop_start = time.perf_counter()
            if need_depth_input:
                slop_ns = int(round(float(values['sync.slop']) * 1e9))
                _first_pass(reader, src, cameras, dst_ts, renames, converters, depth_role,
                            slop_ns)
            added: Dict[Tuple[Any, ...], Any] = {}
            out_conns: Dict[int, Any] = {}
            routes: Dict[int, str] = {}
            mask_conns: Dict[str, Any] = {}
            for rconn in reader.connections:
                msgtype = renames.get(rconn.msgtype, rconn.msgtype)
                reason = skipped.get(rconn.msgtype) or _raw_schema_problem(rconn, unparsed)
                if reason:
                    routes[id(rconn)] = SKIP
                    summary.note_topic(rconn.topic, 'skipped (%s): %s' % (rconn.msgtype, reason))
                    say('warning: %s (%s) is NOT written: %s' % (rconn.topic, rconn.msgtype,
                                                                 reason))
                    continue
                out_conns[id(rconn)] = _add_connection(writer, rconn, rconn.topic, msgtype,
                                                       dst_ts, reader.is2, added,
                                                       raw_schema=rconn.msgtype in unparsed)
                if rconn.msgtype in unparsed:
                    carries_images = msgtype in (IMAGE_TYPE, COMPRESSED_TYPE) \
                        or msgtype in VIDEO_TYPES or _mentions_images(rconn.msgdef.data)
                    if rconn.topic in topic_plan.copy_topics or not carries_images:
                        routes[id(rconn)] = COPY
                        summary.note_topic(rconn.topic, 'copied as bytes with its own schema '
                                           '(%s cannot be parsed: %s)'
                                           % (rconn.msgtype, unparsed[rconn.msgtype]))
                    else:
                        routes[id(rconn)] = DROP
                        summary.topics_not_written.add(rconn.topic)
                        say('warning: %s (%s) cannot be parsed and carries images; its '
                            'messages will NOT be written' % (rconn.topic, rconn.msgtype))
                elif rconn.topic in topic_plan.copy_topics:
                    routes[id(rconn)] = COPY
                elif msgtype in (IMAGE_TYPE, COMPRESSED_TYPE):
                    routes[id(rconn)] = 'image'
                elif msgtype in VIDEO_TYPES or embeds_image(dst_ts, msgtype):
                    routes[id(rconn)] = DROP
                    summary.topics_not_written.add(rconn.topic)
                    say('warning: %s (%s) carries images this tool cannot anonymize; its '
                        'messages will NOT be written (name it with --copy-topic to keep it)'
                        % (rconn.topic, msgtype))
                else:
                    routes[id(rconn)] = COPY
                cam = colour_of.get(rconn.topic)
                if cam is not None and cam.plan.mask_topic and cam.plan.topic not in mask_conns:
                    mask_conns[cam.plan.topic] = _add_connection(
                        writer, rconn, cam.plan.mask_topic, IMAGE_TYPE, dst_ts, reader.is2,
                        added)
            if show_progress:
                from tqdm import tqdm
                bar = tqdm(total=total_frames, unit='frame', desc='anonymizing',
                           file=sys.stderr, dynamic_ncols=True)
                run.bar = bar
            out = run.out
            for rconn, timestamp, raw in _read(reader, src):
                summary.messages_read += 1
                route = routes[id(rconn)]
                out_conn = out_conns.get(id(rconn))
                topic = rconn.topic
                if route == SKIP:
                    summary.dropped(topic)
                    continue
                if route == DROP:
                    summary.not_written(topic, 'a %s carries images' % rconn.msgtype)
                    continue
                convert = converters.get(rconn.msgtype)
                try:
                    cdr = convert(raw) if convert is not None else raw
                except Exception as exc:  # noqa: BLE001 - a ROS 1 message that cannot convert
                    summary.not_written(topic, 'cannot be converted: %s' % _one_line(exc))
                    continue
                if route == COPY:
                    kind, reason, msg = COPY, '', None
                else:
                    msgtype = renames.get(rconn.msgtype, rconn.msgtype)
                    kind, reason, msg = decode_and_route(dst_ts, msgtype, cdr,
                                                         topic in depth_role)
                    summary.count_kind(topic, kind)
                if kind == COPY:
                    out.add(out_conn, timestamp).ready(cdr)
                    summary.messages_copied += 1
                elif kind == COLOUR:
                    colour_of[topic].add_colour(out_conn, mask_conns.get(topic), timestamp,
                                                cdr, msg, msgtype)
                elif kind == DEPTH:
                    cam = depth_of.get(topic)
                    if cam is not None and msgtype == IMAGE_TYPE:
                        cam.add_depth(out_conn, timestamp, cdr, msg)
                    else:  # a checked depth image no camera uses: copied
                        out.add(out_conn, timestamp).ready(cdr)
                        summary.messages_copied += 1
                else:
                    summary.not_written(topic, reason)
                if out.queue and out.queue[0].state == _Slot.PENDING:
                    for other in cameras:
                        other.expire(timestamp)
                out.flush()
            for cam in cameras:
                cam.finish()
            out.flush()
            if out.queue:
                raise RuntimeError('internal error: %d messages were never finalized'
                                   % len(out.queue))
        if bar is not None:
            bar.close()
            bar = None
        summary.processing_time_s = time.perf_counter() - loop_start
        if os.path.lexists(dst):
            # Checked again: the folder may have appeared while the bag was written.
            check_output(src, dst, force)
            old = dst.parent / ('.%s.old-%d' % (dst.name, os.getpid()))
            dst.rename(old)
            (staging / dst.name).rename(dst)
            _remove(old)
        else:
            (staging / dst.name).rename(dst)
    except WriterError as exc:
        raise OSError(_one_line(exc)) from exc
    finally:
        if bar is not None:
            bar.close()
        _remove(staging)
    summary.wall_time_s = time.perf_counter() - started
    return summary


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


# -- command line ------------------------------------------------------------------------------
def parse_param(text: str) -> Tuple[str, Any]:
    """Parse a command-line ``NAME=VALUE`` parameter, the value read as YAML."""
    import yaml
    name, sep, value = text.partition('=')
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError('expected NAME=VALUE, got %r' % text)
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        parsed = value
    return name.strip(), parsed


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser of anonymize_bag."""
    parser = argparse.ArgumentParser(
        prog='anonymize_bag',
        description='Anonymize faces in the image topics of a recorded bag (rosbag2 sqlite3 '
                    'or mcap, or ROS 1 .bag) and write a new rosbag2 bag; every other message '
                    'is copied unchanged.')
    parser.add_argument('input', help='input bag: rosbag2 folder, .mcap/.db3 file or ROS 1 '
                        '.bag file')
    parser.add_argument('output', help='output rosbag2 folder (must not exist unless --force)')
    parser.add_argument('--image-topic', action='append', default=[], metavar='TOPIC',
                        help='colour topic (repeatable), treated as colour even with a depth '
                             'name; every other image topic is anonymized too')
    parser.add_argument('--depth-topic', action='append', default=[], metavar='TOPIC',
                        help='depth topic (repeatable); one per --image-topic pairs by order, '
                             'otherwise by camera name')
    parser.add_argument('--params-file', metavar='YAML',
                        help='node parameters file (/**: ros__parameters: ...)')
    parser.add_argument('--param', '-p', action='append', default=[], type=parse_param,
                        metavar='NAME=VALUE',
                        help='one parameter, e.g. -p detector.conf_thresh:=0.3 is written '
                             'detector.conf_thresh=0.3 (repeatable, after --params-file)')
    parser.add_argument('--storage', choices=('mcap', 'sqlite3'),
                        help="output storage (default: the input's; mcap for ROS 1 input)")
    parser.add_argument('--copy-topic', action='append', default=[], metavar='TOPIC',
                        help='copy this topic unchanged, WITHOUT anonymization, even when it '
                             'holds images (repeatable; the summary lists it)')
    parser.add_argument('--force', action='store_true',
                        help='replace an existing output (only a rosbag2 output folder)')
    parser.add_argument('--write-masks', action='store_true',
                        help='add a mono8 mask topic <colour topic>/mask per colour topic')
    parser.add_argument('--jpeg-quality', type=int, default=DEFAULT_JPEG_QUALITY, metavar='Q',
                        help='JPEG quality of re-encoded compressed images (default %(default)s)')
    parser.add_argument('--backward-frames', type=int, default=DEFAULT_BACKWARD_FRAMES,
                        metavar='N',
                        help='also mask a newly found face in the N frames before it '
                             '(default %(default)s, 0 disables)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    return parser


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # unwinds like Ctrl-C: the partial output is removed


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the anonymize_bag command line; return the exit status."""
    args = build_parser().parse_args(argv)
    if argv is None:
        import signal
        signal.signal(signal.SIGTERM, _terminate)

    def say(text: str) -> None:
        print(text, flush=True)

    try:
        overrides: Dict[str, Any] = {}
        if args.params_file:
            try:
                overrides.update(params_mod.load_params_file(args.params_file))
            except ValueError as exc:
                raise BagError(str(exc)) from exc
        overrides.update(dict(args.param))
        summary = anonymize_bag(
            args.input, args.output, image_topics=args.image_topic,
            depth_topics=args.depth_topic, copy_topics=args.copy_topic, params=overrides,
            storage=args.storage,
            force=args.force, write_masks=args.write_masks, jpeg_quality=args.jpeg_quality,
            backward_frames=args.backward_frames, show_progress=not args.no_progress, log=say)
    except BagError as exc:
        print('anonymize_bag: error: %s' % exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('anonymize_bag: interrupted; no output was written', file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback; nothing was written
        print('anonymize_bag: error: %s: %s; no output was written'
              % (type(exc).__name__, _one_line(exc)), file=sys.stderr)
        return 1
    for line in summary.lines():
        say(line)
    return 0


if __name__ == '__main__':
    sys.exit(main())
