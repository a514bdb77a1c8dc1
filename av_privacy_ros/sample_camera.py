"""
A sample RGB-D camera: the t1 group photo with a synthetic aligned depth image, over ROS 2.

``sample_camera`` publishes ``image`` (bgr8 or rgb8) and ``depth`` (16UC1 millimetres or 32FC1
metres) with identical headers, at a fixed rate.  The colour frame is insightface's bundled
``t1`` photo (six faces) resized to 640×480; the depth frame puts each face (an ellipse over the
head, a block for the body) at 1.0–2.0 m in front of a 4 m background, with an invalid (0)
band on the left like a real stereo camera.  Every frame is shifted by a few pixels so that
consecutive frames differ.  :class:`SampleFrames` builds the same frames without ROS for tests
and tools.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from typing import Any, List, Optional, Sequence, Tuple

import cv2
import numpy as np

WIDTH, HEIGHT = 640, 480
BACKGROUND_MM = 4000
INVALID_BAND_PX = 16
FRAME_ID = 'camera_color_optical_frame'

# Faces of t1 at 640×480 (x1, y1, x2, y2), found by SCRFD-500M (scores 0.84-0.89), left to
# right.  CenterFace finds the same six within a few pixels.
FACE_BOXES = np.array([
    (27, 142, 85, 215),
    (135, 80, 187, 146),
    (231, 145, 287, 225),
    (372, 185, 424, 260),
    (452, 31, 507, 111),
    (565, 149, 614, 217),
], dtype=np.float32)

# Distance of each face above, in millimetres (all between 1 and 2 m).
FACE_DEPTHS_MM = (1200, 1900, 1500, 1000, 1700, 1350)


def load_t1(width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """Return insightface's t1 group photo as BGR uint8, resized to ``width``×``height``."""
    from insightface.data import get_image
    photo = get_image('t1')
    return np.ascontiguousarray(cv2.resize(photo, (width, height),
                                           interpolation=cv2.INTER_AREA))


def synthetic_depth(boxes: np.ndarray = FACE_BOXES, depths_mm: Sequence[int] = FACE_DEPTHS_MM,
                    width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """Return a uint16 depth image (mm) with a person at each face box in front of 4 m."""
    depth = np.full((height, width), BACKGROUND_MM, np.uint16)
    order = np.argsort(-np.asarray(depths_mm))  # far first, near ones drawn over them
    for index in order:
        x1, y1, x2, y2 = (float(v) for v in boxes[index])
        face_mm = int(depths_mm[index])
        w, h = x2 - x1, y2 - y1
        cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
        body = (int(cx - 1.1 * w), int(y2 + 0.1 * h), int(cx + 1.1 * w), height - 1)
        cv2.rectangle(depth, body[:2], body[2:], face_mm + 100, thickness=-1)
        cv2.ellipse(depth, (int(round(cx)), int(round(cy))),
                    (int(round(0.6 * w)), int(round(0.65 * h))), 0, 0, 360, face_mm,
                    thickness=-1)
    depth[:, :INVALID_BAND_PX] = 0
    return depth


def frame_shift(index: int) -> Tuple[int, int]:
    """Return the (dx, dy) pixel shift of frame ``index`` (a slow loop of a few pixels)."""
    dx = int(round(4.0 * math.sin(2.0 * math.pi * index / 24.0)))
    dy = int(round(2.0 * math.sin(2.0 * math.pi * index / 36.0)))
    return dx, dy


class SampleFrames:
    """The sample camera's frames: colour, aligned depth and face boxes of frame ``index``."""

    def __init__(self, width: int = WIDTH, height: int = HEIGHT) -> None:
        """Load t1 and build the depth image once."""
        self.width, self.height = width, height
        self.base_bgr = load_t1(width, height)
        scale = np.array([width / WIDTH, height / HEIGHT] * 2, np.float32)
        self.base_boxes = FACE_BOXES * scale
        self.base_depth = synthetic_depth(self.base_boxes, FACE_DEPTHS_MM, width, height)

    def frame(self, index: int) -> Tuple[np.ndarray, np.ndarray]:
        """Return (BGR uint8, depth uint16 mm) of frame ``index``, shifted by frame_shift."""
        dx, dy = frame_shift(index)
        bgr = np.roll(self.base_bgr, (dy, dx), axis=(0, 1))
        depth = np.roll(self.base_depth, (dy, dx), axis=(0, 1))
        return bgr, depth

    def boxes(self, index: int) -> np.ndarray:
        """Return the N×4 float32 face boxes of frame ``index``."""
        dx, dy = frame_shift(index)
        return self.base_boxes + np.array([dx, dy, dx, dy], np.float32)


def image_message(bgr: np.ndarray, encoding: str, header: object) -> object:
    """Return a sensor_msgs/Image of a BGR frame in ``encoding`` (bgr8, rgb8, ...)."""
    from sensor_msgs.msg import Image

    from .image_msgs import bgr_to_image_fields, fill_image_msg
    fields = bgr_to_image_fields(bgr, encoding)
    return fill_image_msg(Image(), header, bgr.shape[0], bgr.shape[1], *fields)


def depth_message(depth_mm: np.ndarray, encoding: str, header: object) -> object:
    """Return a sensor_msgs/Image of a uint16 mm depth frame as 16UC1/mono16 or 32FC1 (m)."""
    from sensor_msgs.msg import Image

    from .image_msgs import depth_to_image_fields, fill_image_msg
    if encoding == '32FC1':
        metres = depth_mm.astype(np.float32) * np.float32(0.001)
        metres[depth_mm == 0] = np.nan
        fields = depth_to_image_fields(metres, encoding)
    else:
        fields = depth_to_image_fields(depth_mm, encoding)
    return fill_image_msg(Image(), header, depth_mm.shape[0], depth_mm.shape[1], *fields)


def _parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog='sample_camera',
        description='Publish the t1 group photo with a synthetic aligned depth image on '
                    '"image" and "depth" (remap them with --ros-args -r image:=...).')
    parser.add_argument('--rate', type=float, default=30.0, help='frames per second (30)')
    parser.add_argument('--frames', type=int, default=0,
                        help='stop after this many frames (0: no limit)')
    parser.add_argument('--seconds', type=float, default=0.0,
                        help='stop after this many seconds of publishing (0: no limit)')
    parser.add_argument('--encoding', choices=('bgr8', 'rgb8'), default='bgr8',
                        help='colour encoding (bgr8)')
    parser.add_argument('--depth-encoding', choices=('16UC1', '32FC1'), default='16UC1',
                        help='depth encoding: 16UC1 millimetres or 32FC1 metres (16UC1)')
    parser.add_argument('--no-depth', action='store_true', help='publish colour only')
    parser.add_argument('--frame-id', default=FRAME_ID, help='header frame_id')
    parser.add_argument('--wait-subscribers', type=int, default=0,
                        help='wait until "image" has this many subscribers before publishing')
    parser.add_argument('--wait-ready', type=float, default=0.0,
                        help='wait up to this many seconds for an anonymizer to report on '
                             '/diagnostics that its detector is ready (0: do not wait)')
    parser.add_argument('--best-effort', action='store_true',
                        help='publish best effort instead of reliable')
    args = parser.parse_args(list(argv))
    if args.rate <= 0 or not math.isfinite(args.rate):
        parser.error('--rate must be a positive number')
    return args


def _wait_for_ready(node: Any, seconds: float) -> bool:
    """Spin until a DiagnosticStatus of an anonymizer says ready=True; return whether seen."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    seen: List[bool] = []

    def on_diag(msg: DiagnosticArray) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            if 'face anonymization' in status.name and values.get('ready') == 'True':
                seen.append(True)

    sub = node.create_subscription(DiagnosticArray, '/diagnostics', on_diag, 10)
    deadline = time.monotonic() + seconds
    while not seen and time.monotonic() < deadline and rclpy.ok():
        rclpy.spin_once(node, timeout_sec=0.1)
    node.destroy_subscription(sub)
    return bool(seen)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Publish sample frames until the frame or time limit, or Ctrl-C; return the status."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rclpy.utilities import remove_ros_args
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    argv = list(sys.argv if argv is None else argv)
    args = _parse_args(remove_ros_args(argv)[1:])
    rclpy.init(args=argv)
    node = rclpy.create_node('sample_camera')
    status = 0
    try:
        frames = SampleFrames()
        qos = QoSProfile(depth=5, reliability=(ReliabilityPolicy.BEST_EFFORT if args.best_effort
                                               else ReliabilityPolicy.RELIABLE))
        pub_image = node.create_publisher(Image, 'image', qos)
        pub_depth = None if args.no_depth else node.create_publisher(Image, 'depth', qos)
        log = node.get_logger()
        deadline = time.monotonic() + 60.0
        while (args.wait_subscribers and pub_image.get_subscription_count()
               < args.wait_subscribers and time.monotonic() < deadline and rclpy.ok()):
            rclpy.spin_once(node, timeout_sec=0.05)
        if args.wait_ready > 0 and not _wait_for_ready(node, args.wait_ready):
            log.warning('no anonymizer reported ready within %.0f s; publishing anyway'
                        % args.wait_ready)
        log.info('publishing %s%s at %.1f Hz on %s'
                 % (args.encoding, '' if pub_depth is None else ' + ' + args.depth_encoding,
                    args.rate, pub_image.topic_name))
        period = 1.0 / args.rate
        start = time.monotonic()
        index = 0
        while rclpy.ok():
            if args.frames and index >= args.frames:
                break
            if args.seconds and time.monotonic() - start >= args.seconds:
                break
            bgr, depth = frames.frame(index)
            header = Header(stamp=node.get_clock().now().to_msg(), frame_id=args.frame_id)
            if pub_depth is not None:
                pub_depth.publish(depth_message(depth, args.depth_encoding, header))
            pub_image.publish(image_message(bgr, args.encoding, header))
            index += 1
            delay = start + index * period - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        log.info('published %d frames in %.1f s' % (index, time.monotonic() - start))
    except KeyboardInterrupt:
        pass
    except ValueError as exc:
        node.get_logger().fatal(str(exc))
        status = 2
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return status


if __name__ == '__main__':
    sys.exit(main())
