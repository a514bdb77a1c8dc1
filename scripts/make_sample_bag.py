#!/usr/bin/env python3
"""
Write a small sample recording to try ``anonymize_bag`` and ``evaluate_masks`` on.

``OUTPUT/bag`` is a rosbag2 (mcap) of the sample camera: insightface's ``t1`` group photo (six
faces) at 640×480, panned a few pixels per frame, with

* ``/camera/color/image_raw`` (``sensor_msgs/Image``, bgr8),
* ``/camera/aligned_depth_to_color/image_raw`` (``sensor_msgs/Image``, 16UC1, millimetres),
* ``/camera/color/camera_info`` (``sensor_msgs/CameraInfo``) and ``/tf_static`` (one transform),
  which the tool copies unchanged.

Beside it, for ``evaluate_masks``: ``boxes.csv`` (the faces' boxes in every frame),
``reference/frame_NNNNNN.png`` (a filled ellipse inside each box, standing in for the
reference masks a segmentation model such as SAM would give) and ``sessions.yaml``, which
points at the anonymized bag that ``anonymize_bag OUTPUT/bag OUTPUT/bag_anonymized
--write-masks`` writes.

``make sample-bag`` runs it. Usage:
``python scripts/make_sample_bag.py [--output sample_data] [--frames 20] [--rate 10]``
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path
import shutil
import sys
from typing import Any, Optional, Sequence

from av_privacy_ros.sample_camera import FRAME_ID, SampleFrames
import cv2
import numpy as np
import yaml

COLOUR_TOPIC = '/camera/color/image_raw'
DEPTH_TOPIC = '/camera/aligned_depth_to_color/image_raw'
INFO_TOPIC = '/camera/color/camera_info'
TF_STATIC_TOPIC = '/tf_static'
MASK_TOPIC = COLOUR_TOPIC + '/mask'
START_NS = 1_700_000_000 * 10**9


def _latched() -> Any:
    """Return the transient-local QoS a /tf_static publisher offers."""
    from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness,
                                    QosReliability, QosTime)
    forever = QosTime(sec=2147483647, nsec=4294967295)
    return Qos(history=QosHistory.KEEP_LAST, depth=1, reliability=QosReliability.RELIABLE,
               durability=QosDurability.TRANSIENT_LOCAL, deadline=forever, lifespan=forever,
               liveliness=QosLiveliness.AUTOMATIC, liveliness_lease_duration=forever,
               avoid_ros_namespace_conventions=False)


def _header(types: Any, stamp_ns: int, frame_id: str = FRAME_ID) -> Any:
    stamp = types['builtin_interfaces/msg/Time'](sec=stamp_ns // 10**9,
                                                 nanosec=stamp_ns % 10**9)
    return types['std_msgs/msg/Header'](stamp=stamp, frame_id=frame_id)


def write_bag(path: Path, frames: SampleFrames, count: int, rate: float) -> None:
    """Write the sample rosbag2 (mcap) at ``path``, which must not exist."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import get_typestore, Stores
    store = get_typestore(Stores.ROS2_HUMBLE)
    types = store.types
    width, height = frames.width, frames.height
    focal = 0.5 * width / np.tan(np.radians(69.0) / 2.0)  # a RealSense-like 69° field of view
    with Writer(path, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        colour = writer.add_connection(COLOUR_TOPIC, 'sensor_msgs/msg/Image', typestore=store)
        depth = writer.add_connection(DEPTH_TOPIC, 'sensor_msgs/msg/Image', typestore=store)
        info = writer.add_connection(INFO_TOPIC, 'sensor_msgs/msg/CameraInfo', typestore=store)
        tf_static = writer.add_connection(TF_STATIC_TOPIC, 'tf2_msgs/msg/TFMessage',
                                          typestore=store, offered_qos_profiles=[_latched()])
        transform = types['geometry_msgs/msg/TransformStamped'](
            header=_header(types, START_NS, 'camera_link'), child_frame_id=FRAME_ID,
            transform=types['geometry_msgs/msg/Transform'](
                translation=types['geometry_msgs/msg/Vector3'](x=0.0, y=0.0, z=0.0),
                rotation=types['geometry_msgs/msg/Quaternion'](x=-0.5, y=0.5, z=-0.5, w=0.5)))
        writer.write(tf_static, START_NS, store.serialize_cdr(
            types['tf2_msgs/msg/TFMessage'](transforms=[transform]), 'tf2_msgs/msg/TFMessage'))
        for index in range(count):
            stamp = START_NS + int(round(index * 1e9 / rate))
            bgr, depth_mm = frames.frame(index)
            header = _header(types, stamp)
            image_msg = types['sensor_msgs/msg/Image'](
                header=header, height=height, width=width, encoding='bgr8', is_bigendian=0,
                step=width * 3, data=np.ascontiguousarray(bgr).reshape(-1))
            depth_msg = types['sensor_msgs/msg/Image'](
                header=header, height=height, width=width, encoding='16UC1', is_bigendian=0,
                step=width * 2,
                data=np.ascontiguousarray(depth_mm.astype('<u2')).view(np.uint8).reshape(-1))
            info_msg = types['sensor_msgs/msg/CameraInfo'](
                header=header, height=height, width=width, distortion_model='plumb_bob',
                d=np.zeros(5), k=np.array([focal, 0, width / 2, 0, focal, height / 2, 0, 0, 1.0]),
                r=np.eye(3).reshape(-1),
                p=np.array([focal, 0, width / 2, 0, 0, focal, height / 2, 0, 0, 0, 1.0, 0]),
                binning_x=0, binning_y=0,
                roi=types['sensor_msgs/msg/RegionOfInterest'](x_offset=0, y_offset=0, height=0,
                                                              width=0, do_rectify=False))
            writer.write(colour, stamp, store.serialize_cdr(image_msg, 'sensor_msgs/msg/Image'))
            writer.write(depth, stamp, store.serialize_cdr(depth_msg, 'sensor_msgs/msg/Image'))
            writer.write(info, stamp, store.serialize_cdr(info_msg,
                                                          'sensor_msgs/msg/CameraInfo'))


def write_evaluation_inputs(output: Path, frames: SampleFrames, count: int) -> None:
    """Write boxes.csv, reference masks and sessions.yaml for evaluate_masks."""
    reference = output / 'reference'
    reference.mkdir()
    with open(output / 'boxes.csv', 'w', newline='', encoding='utf-8') as handle:
        rows = csv.writer(handle)
        rows.writerow(['frame', 'x1', 'y1', 'x2', 'y2', 'track'])
        for index in range(count):
            mask = np.zeros((frames.height, frames.width), np.uint8)
            for face, (x1, y1, x2, y2) in enumerate(frames.boxes(index)):
                rows.writerow([index] + ['%.1f' % v for v in (x1, y1, x2, y2)]
                              + ['face%d' % face])
                centre = (int(round((x1 + x2) / 2)), int(round((y1 + y2) / 2)))
                axes = (int(round((x2 - x1) / 2)), int(round((y2 - y1) / 2)))
                cv2.ellipse(mask, centre, axes, 0, 0, 360, 255, thickness=-1)
            cv2.imwrite(str(reference / ('frame_%06d.png' % index)), mask)
    sessions = {'sessions': [{
        'id': 'sample', 'environment': 'sample photo', 'faces': len(frames.base_boxes),
        'ours': 'bag_anonymized', 'ours_topic': MASK_TOPIC, 'reference': 'reference',
        'boxes': 'boxes.csv'}]}
    (output / 'sessions.yaml').write_text(
        '# Written by make sample-bag. First run:\n'
        '#   anonymize_bag bag bag_anonymized --write-masks   (in this folder)\n'
        + yaml.safe_dump(sessions, sort_keys=False), encoding='utf-8')


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Write the sample data; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--output', default='sample_data', help='folder to write (sample_data)')
    parser.add_argument('--frames', type=int, default=20, help='frames to write (20)')
    parser.add_argument('--rate', type=float, default=10.0, help='frame rate in Hz (10)')
    parser.add_argument('--force', action='store_true', help='replace an existing folder')
    args = parser.parse_args(argv)
    output = Path(args.output)
    if args.frames < 1 or args.rate <= 0:
        parser.error('--frames must be >= 1 and --rate > 0')
    if output.exists():
        if not args.force:
            parser.error('%s exists; pass --force to replace it' % output)
        shutil.rmtree(output)
    output.mkdir(parents=True)
    frames = SampleFrames()
    write_bag(output / 'bag', frames, args.frames, args.rate)
    write_evaluation_inputs(output, frames, args.frames)
    print('wrote %s: rosbag2 (mcap) with %d frames of %s, %s, %s and %s; reference masks, '
          'boxes.csv and sessions.yaml for evaluate_masks'
          % (output / 'bag', args.frames, COLOUR_TOPIC, DEPTH_TOPIC, INFO_TOPIC,
             TF_STATIC_TOPIC))
    tools = Path(os.path.relpath(Path(sys.executable).parent))
    print('try:  %s %s %s --write-masks'
          % (tools / 'anonymize_bag', output / 'bag', output / 'bag_anonymized'))
    print('then: %s %s -o %s'
          % (tools / 'evaluate_masks', output / 'sessions.yaml', output / 'evaluation'))
    return 0


if __name__ == '__main__':
    sys.exit(main())
