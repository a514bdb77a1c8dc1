"""
What happens to each message and each topic: per-message classification and topic roles.

Every image message is classified by its own type and encoding (:func:`route_message`), never by
its topic's first message; :func:`choose_cameras` gives each image topic its role (a colour
camera, a depth topic or a topic copied on request).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

from .errors import BagError, LogCallback
from .image_codecs import COMPRESSED_TYPE, IMAGE_TYPE, is_grey16_png, sniff_codec
from .pairing import is_depth_name, pair_depth_topics
from ..image_msgs import image_to_depth

MASK_SUFFIX = '/mask'

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
    if png.size == 0 or sniff_codec(png) != 'png':
        return False
    return is_grey16_png(png)


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
        if data.size and sniff_codec(data) == 'png' and is_grey16_png(data):
            return DEPTH, ''  # a 16-bit grey PNG of a depth camera
    return kind, ''


def decode_and_route(dst_ts: Any, msgtype: str, cdr: Any, depth_topic: bool
                     ) -> Tuple[str, str, Any]:
    """Return ``(kind, reason, message)`` for one image message's CDR bytes (see route_message)."""
    try:
        msg = dst_ts.deserialize_cdr(cdr, msgtype)
    except Exception as exc:  # noqa: BLE001 - undecodable: never written
        return DROP, 'cannot be decoded: %s: %s' % (type(exc).__name__, exc), None
    kind, reason = route_message(msgtype, msg, depth_topic)
    return kind, reason, msg


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
