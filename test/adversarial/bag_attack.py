"""
Helpers of the adversarial bag cases: write hostile bags, measure raw face pixels and losses.

Every frame is the real group photo ``t1`` (six faces) at 640x480, shifted a few pixels per
stamp.  Raw face pixels are counted in the core (the central half) of every face box that the
real detector finds in the input frame of the same header stamp: an output pixel there equal to
the input is raw.  An output image whose data bytes equal an input frame's bytes (whatever its
encoding says) counts all its core pixels as raw.  Inputs lost counts input files whose bytes
changed or vanished and non-image messages that are not copied byte for byte.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import cv2
import numpy as np

IMAGE = 'sensor_msgs/msg/Image'
COMPRESSED = 'sensor_msgs/msg/CompressedImage'
STRING = 'std_msgs/msg/String'
T0_NS = 1_700_000_000 * 10**9
FRAME_NS = 100_000_000
LOSSY_SAME = 4.0
"""Mean absolute difference under which a re-encoded face core is the input's face."""


def typestore() -> Any:
    """Return rosbags' typestore of the latest ROS 2 distribution."""
    from rosbags.typesys import get_typestore, Stores
    return get_typestore(Stores.LATEST)


def frame(base: np.ndarray, index: int) -> np.ndarray:
    """Return frame ``index``: 640x480 of the 680x480 photo, shifted 4 px per frame."""
    return np.ascontiguousarray(base[:, 4 * index:4 * index + 640])


def header(ts: Any, stamp_ns: int, frame_id: str = 'cam') -> Any:
    """Return a std_msgs/Header with this stamp."""
    time_cls = ts.types['builtin_interfaces/msg/Time']
    stamp = time_cls(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
    return ts.types['std_msgs/msg/Header'](stamp=stamp, frame_id=frame_id)


def image(ts: Any, stamp_ns: int, pixels: np.ndarray, encoding: str,
          width: Optional[int] = None, step: Optional[int] = None, bigendian: int = 0) -> Any:
    """Return an Image holding ``pixels``' bytes; width and step may lie about them."""
    raw = np.ascontiguousarray(pixels).view(np.uint8).reshape(-1)
    height = pixels.shape[0]
    row = raw.size // height
    return ts.types[IMAGE](header=header(ts, stamp_ns), height=height,
                           width=width if width is not None else pixels.shape[1],
                           encoding=encoding, is_bigendian=bigendian,
                           step=step if step is not None else row, data=raw)


def compressed(ts: Any, stamp_ns: int, fmt: str, data: Any) -> Any:
    """Return a CompressedImage with this format string and data."""
    return ts.types[COMPRESSED](header=header(ts, stamp_ns), format=fmt,
                                data=np.asarray(data, np.uint8).reshape(-1))


def jpeg(pixels: np.ndarray) -> np.ndarray:
    """Return the JPEG bytes (quality 95) of a BGR image."""
    return cv2.imencode('.jpg', pixels, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].reshape(-1)


def string(ts: Any, text: str) -> Any:
    """Return a std_msgs/String."""
    return ts.types[STRING](data=text)


Message = Tuple[str, str, int, Any]
"""(topic, message type, receive time in ns, message object)."""


def write_bag(path: Path, messages: Sequence[Message], storage: str = 'mcap') -> None:
    """Write ``messages`` (in the order given) into a rosbag2 bag, one connection per type."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    ts = typestore()
    plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conns: Dict[Tuple[str, str], Any] = {}
        for topic, msgtype, receive_ns, msg in messages:
            if (topic, msgtype) not in conns:
                conns[(topic, msgtype)] = writer.add_connection(topic, msgtype, typestore=ts)
            writer.write(conns[(topic, msgtype)], receive_ns,
                         bytes(ts.serialize_cdr(msg, msgtype)))


def read_messages(path: Path) -> List[Tuple[str, str, int, bytes, Any]]:
    """Return every message of a bag: (topic, type, receive ns, raw bytes, message or None)."""
    from rosbags.highlevel import AnyReader
    found: List[Tuple[str, str, int, bytes, Any]] = []
    with AnyReader([path], default_typestore=typestore()) as reader:
        for conn, timestamp, raw in reader.messages():
            try:
                msg = reader.deserialize(raw, conn.msgtype)
            except Exception:  # noqa: BLE001 - kept as bytes
                msg = None
            found.append((conn.topic, conn.msgtype, timestamp, bytes(raw), msg))
    return found


def file_hashes(paths: Iterable[Path]) -> Dict[str, str]:
    """Return sha256 of every file under ``paths`` (files or folders)."""
    hashes: Dict[str, str] = {}
    for path in paths:
        files = [path] if path.is_file() else sorted(p for p in path.rglob('*') if p.is_file())
        for item in files:
            hashes[str(item)] = hashlib.sha256(item.read_bytes()).hexdigest()
    return hashes


def files_lost(before: Dict[str, str], after: Dict[str, str]) -> int:
    """Return how many files of ``before`` changed or vanished."""
    return sum(1 for name, digest in before.items() if after.get(name) != digest)


def face_cores(detector: Any, pixels: np.ndarray) -> List[Tuple[int, int, int, int]]:
    """Return the central half of every face the detector finds (score >= 0.5)."""
    boxes = np.asarray(detector.detect(pixels, 0.5).boxes, np.float32).reshape(-1, 4)
    cores = []
    for x1, y1, x2, y2 in boxes:
        w, h = x2 - x1, y2 - y1
        cores.append((int(x1 + w / 4), int(y1 + h / 4), int(x2 - w / 4), int(y2 - h / 4)))
    return cores


def stamp_ns(msg: Any) -> Optional[int]:
    """Return a message's header stamp in ns, or None."""
    stamp = getattr(getattr(msg, 'header', None), 'stamp', None)
    if stamp is None:
        return None
    return int(stamp.sec) * 10**9 + int(stamp.nanosec)


def _decoded(msg: Any) -> Optional[np.ndarray]:
    """Return an output image as BGR when it is a colour image, else None."""
    from av_privacy_ros.image_msgs import image_to_bgr
    try:
        if hasattr(msg, 'format'):
            pixels = cv2.imdecode(np.asarray(msg.data, np.uint8), cv2.IMREAD_COLOR)
            return pixels
        return image_to_bgr(msg)[0]
    except Exception:  # noqa: BLE001 - not a colour image
        return None


def raw_face_pixels(detector: Any, originals: Dict[int, np.ndarray],
                    input_messages: Sequence[Tuple[str, str, int, bytes, Any]],
                    output_messages: Sequence[Tuple[str, str, int, bytes, Any]]) -> int:
    """
    Count raw face pixels in every output image message.

    ``originals`` maps header stamps to the BGR photo frame the input carried at that stamp.
    """
    cores = {stamp: face_cores(detector, pixels) for stamp, pixels in originals.items()}
    input_data = set()
    for _, msgtype, _, _, msg in input_messages:
        if msg is not None and msgtype in (IMAGE, COMPRESSED):
            input_data.add(bytes(np.asarray(msg.data, np.uint8).tobytes()))
    raw = 0
    for _, msgtype, _, _, msg in output_messages:
        if msg is None or msgtype not in (IMAGE, COMPRESSED):
            continue
        stamp = stamp_ns(msg)
        if stamp not in originals:
            continue
        boxes = cores[stamp]
        whole = sum(max(0, x2 - x1) * max(0, y2 - y1) for x1, y1, x2, y2 in boxes)
        if bytes(np.asarray(msg.data, np.uint8).tobytes()) in input_data:
            raw += whole  # the input's bytes, whatever the label says
            continue
        pixels = _decoded(msg)
        if pixels is None or pixels.shape != originals[stamp].shape:
            continue
        for x1, y1, x2, y2 in boxes:
            out_core = pixels[y1:y2, x1:x2].astype(np.int16)
            in_core = originals[stamp][y1:y2, x1:x2].astype(np.int16)
            if msgtype == COMPRESSED:
                # Re-encoding changes every pixel a little: a core within JPEG noise of the
                # input is a face left as it was.
                if out_core.size and np.abs(out_core - in_core).mean() < LOSSY_SAME:
                    raw += out_core.shape[0] * out_core.shape[1]
                continue
            same = np.all(out_core == in_core, axis=2).astype(np.uint8)
            # A pixel counts when its 3x3 neighbourhood is unchanged too: a mosaic cell can
            # equal one original pixel by chance, never a patch of them.
            raw += int(cv2.erode(same, np.ones((3, 3), np.uint8)).sum())
    return raw


def other_topics_lost(input_messages: Sequence[Tuple[str, str, int, bytes, Any]],
                      output_messages: Sequence[Tuple[str, str, int, bytes, Any]]) -> int:
    """Return how many non-image input messages are missing from the output, byte for byte."""
    def keyed(messages: Sequence[Tuple[str, str, int, bytes, Any]]) -> List[Tuple[Any, ...]]:
        return sorted((t, ty, ts, raw) for t, ty, ts, raw, _ in messages
                      if ty not in (IMAGE, COMPRESSED))
    out = keyed(output_messages)
    return sum(1 for item in keyed(input_messages) if item not in out)
