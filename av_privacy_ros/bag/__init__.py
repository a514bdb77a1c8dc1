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

The modules: :mod:`.topics` (classification and topic roles), :mod:`.image_codecs`,
:mod:`.pairing`, :mod:`.camera` (with :mod:`.frames`, :mod:`.backward`, :mod:`.depth`,
:mod:`.context`), :mod:`.reader`, :mod:`.schemas`, :mod:`.writer`, :mod:`.staging`,
:mod:`.summary`, :mod:`.run` (the write loop), :mod:`.api` (:func:`anonymize_bag`) and
:mod:`.cli`; :mod:`.errors` holds the error and callback types.
"""

from .api import (anonymize_bag, DEFAULT_BACKWARD_FRAMES, DEFAULT_JPEG_QUALITY, make_maskers,
                  weakened_settings)
from .backward import BACKWARD_GROWTH, BACKWARD_MAX_AGE_NS, NEW_FACE_IOU
from .cli import build_parser, main, parameter_overrides, parse_param
from .errors import BagError, LogCallback, ProgressCallback
from .image_codecs import (COMPRESSED_TYPE, decode_compressed, encode_compressed,
                           header_stamp_ns, IMAGE_TYPE, PNG_COMPRESSION)
from .pairing import camera_tokens, is_depth_name, pair_depth_topics, pair_stamps
from .reader import open_bag, read_messages
from .run import WriteJob
from .schemas import embeds_image, ros2_definition_problem, ROS2_FIELD_NAME
from .staging import check_output, clean_stale_staging, ROSBAG2_FILE_SUFFIXES
from .summary import BagSummary
from .topics import (CameraPlan, check_depth_message, choose_cameras, classify_message, COLOUR,
                     COMPRESSED_DEPTH_HEADER, COPY, decode_and_route, DEPTH, DROP,
                     GENUINE_DEPTH_ENCODINGS, is_compressed_depth, MASK_SUFFIX,
                     route_message, SKIP, TopicPlan, VIDEO_TYPES)
from ..boxes import box_iou, grow_boxes

__all__ = [
    'anonymize_bag', 'BACKWARD_GROWTH', 'BACKWARD_MAX_AGE_NS', 'BagError', 'BagSummary',
    'box_iou', 'build_parser', 'camera_tokens', 'CameraPlan', 'check_depth_message',
    'check_output', 'choose_cameras', 'classify_message', 'clean_stale_staging', 'COLOUR',
    'COMPRESSED_DEPTH_HEADER', 'COMPRESSED_TYPE', 'COPY', 'decode_and_route',
    'decode_compressed', 'DEFAULT_BACKWARD_FRAMES', 'DEFAULT_JPEG_QUALITY', 'DEPTH', 'DROP',
    'embeds_image', 'encode_compressed', 'GENUINE_DEPTH_ENCODINGS', 'grow_boxes',
    'header_stamp_ns', 'IMAGE_TYPE', 'is_compressed_depth', 'is_depth_name', 'LogCallback',
    'main', 'make_maskers', 'MASK_SUFFIX', 'NEW_FACE_IOU', 'open_bag', 'pair_depth_topics',
    'pair_stamps', 'parameter_overrides', 'parse_param', 'PNG_COMPRESSION', 'ProgressCallback',
    'read_messages', 'ROS2_FIELD_NAME', 'ros2_definition_problem', 'ROSBAG2_FILE_SUFFIXES',
    'route_message', 'SKIP', 'TopicPlan', 'VIDEO_TYPES', 'weakened_settings', 'WriteJob',
]
