"""Small real bags for the archive tests and benchmark: rosbag2 (mcap, sqlite3) and ROS 1."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import cv2
import numpy as np
from weights import scrfd_weights

IMAGE_TOPIC = '/camera/color/image_raw'
CHATTER_TOPIC = '/chatter'
IMAGE = 'sensor_msgs/msg/Image'
STRING = 'std_msgs/msg/String'
T0_NS = 1_700_000_000 * 10**9
PERIOD_NS = 100_000_000


def group_photo() -> np.ndarray:
    """Return insightface's real group photo (6 faces) at 680×480, BGR."""
    import insightface
    t1 = insightface.data.get_image('t1')
    return cv2.resize(t1, (680, 480), interpolation=cv2.INTER_AREA)


def frame(base: np.ndarray, index: int) -> np.ndarray:
    """Return frame ``index``: a 640×480 window that pans 4 px per frame over the photo."""
    start = (4 * index) % (base.shape[1] - 640 + 1)
    return np.ascontiguousarray(base[:, start:start + 640])


def _typestore(ros1: bool) -> Any:
    from rosbags.typesys import get_typestore, Stores
    return get_typestore(Stores.ROS1_NOETIC if ros1 else Stores.LATEST)


def _messages(ts: Any, base: np.ndarray, frames: int, ros1: bool) -> List[Any]:
    out = []
    for i in range(frames):
        stamp = T0_NS + i * PERIOD_NS
        time_msg = ts.types['builtin_interfaces/msg/Time'](sec=stamp // 10**9,
                                                           nanosec=stamp % 10**9)
        header_cls = ts.types['std_msgs/msg/Header']
        header = (header_cls(seq=i, stamp=time_msg, frame_id='cam') if ros1
                  else header_cls(stamp=time_msg, frame_id='cam'))
        pixels = frame(base, i)
        image = ts.types[IMAGE](header=header, height=480, width=640, encoding='bgr8',
                                is_bigendian=0, step=640 * 3, data=pixels.reshape(-1))
        out.append((CHATTER_TOPIC, stamp + 1, ts.types[STRING](data='hello %d' % i)))
        out.append((IMAGE_TOPIC, stamp + 2, image))
    return out


def write_rosbag2(path: Path, storage: str, base: np.ndarray, frames: int) -> None:
    """Write a rosbag2 bag (``mcap`` or ``sqlite3``) with a camera and a chatter topic."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    ts = _typestore(False)
    plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conns = {IMAGE_TOPIC: writer.add_connection(IMAGE_TOPIC, IMAGE, typestore=ts),
                 CHATTER_TOPIC: writer.add_connection(CHATTER_TOPIC, STRING, typestore=ts)}
        for topic, stamp, msg in _messages(ts, base, frames, False):
            writer.write(conns[topic], stamp, ts.serialize_cdr(msg, conns[topic].msgtype))


def write_ros1(path: Path, base: np.ndarray, frames: int) -> None:
    """Write a ROS 1 ``.bag`` file with a camera and a chatter topic."""
    from rosbags.rosbag1 import Writer
    ts = _typestore(True)
    with Writer(path) as writer:
        conns = {IMAGE_TOPIC: writer.add_connection(IMAGE_TOPIC, IMAGE, typestore=ts),
                 CHATTER_TOPIC: writer.add_connection(CHATTER_TOPIC, STRING, typestore=ts)}
        for topic, stamp, msg in _messages(ts, base, frames, True):
            writer.write(conns[topic], stamp, ts.serialize_ros1(msg, conns[topic].msgtype))


def write_archive(root: Path, base: np.ndarray, frames: int = 8) -> Dict[str, str]:
    """
    Write a nested archive; return relative input path -> relative output path.

    ``site_a/day1/run_mcap`` (mcap), ``site_a/day2/run_sqlite`` (sqlite3) and
    ``site_b/drive.bag`` (ROS 1), each with ``frames`` camera frames.
    """
    (root / 'site_a' / 'day1').mkdir(parents=True)
    (root / 'site_a' / 'day2').mkdir(parents=True)
    (root / 'site_b').mkdir(parents=True)
    write_rosbag2(root / 'site_a' / 'day1' / 'run_mcap', 'mcap', base, frames)
    write_rosbag2(root / 'site_a' / 'day2' / 'run_sqlite', 'sqlite3', base, frames)
    write_ros1(root / 'site_b' / 'drive.bag', base, frames)
    return {'site_a/day1/run_mcap': 'site_a/day1/run_mcap',
            'site_a/day2/run_sqlite': 'site_a/day2/run_sqlite',
            'site_b/drive.bag': 'site_b/drive'}


def detector_params(seed: int = 7) -> Dict[str, Any]:
    """Return parameter overrides: SCRFD-500M when its weights are here, else CenterFace."""
    model = scrfd_weights()
    if model is not None:
        return {'detector.backend': 'scrfd', 'seed': seed, 'detector.model_path': str(model),
                'detector.providers': ['cpu']}
    return {'detector.backend': 'centerface', 'seed': seed, 'detector.providers': ['cpu']}


def read_topics(path: Path) -> Dict[str, List[Any]]:
    """Return per topic the list of (receive ns, raw bytes) of a bag."""
    from rosbags.highlevel import AnyReader
    topics: Dict[str, List[Any]] = {}
    with AnyReader([path]) as reader:
        for conn in reader.connections:
            topics.setdefault(conn.topic, [])
        for conn, timestamp, raw in reader.messages():
            topics[conn.topic].append((timestamp, bytes(raw)))
    return topics


def chatter_texts(path: Path) -> List[Any]:
    """Return (receive ns, text) of every chatter message, decoded (ROS 1 or rosbag2)."""
    from rosbags.highlevel import AnyReader
    with AnyReader([path]) as reader:
        conns = [c for c in reader.connections if c.topic == CHATTER_TOPIC]
        return [(timestamp, reader.deserialize(raw, conn.msgtype).data)
                for conn, timestamp, raw in reader.messages(connections=conns)]
