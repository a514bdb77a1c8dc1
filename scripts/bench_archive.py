#!/usr/bin/env python3
"""
Benchmark anonymize_archive: frames/s with 1 worker and with 2 workers on a local Ray cluster.

Writes an archive of small rosbag2 bags (mcap, raw bgr8 640x480 frames of the insightface
sample photo ``t1``, six faces, panned a few pixels per frame), starts one local Ray cluster
with as many CPUs as this machine has, and runs ``run_archive`` over the archive with

* 1 worker, 1 onnxruntime thread (the per-core baseline);
* 1 worker, every core as onnxruntime threads (one bag at a time, parallel inside a frame);
* 2 workers, 1 thread each (two bags at a time, the default on a 2-core machine).

Prints a table with wall time, frames/s over the whole run (worker start-up included), frames
per busy second of each worker, and the speed-up over the baseline.  Uses SCRFD when
``$AV_PRIVACY_MODELS/det_500m.onnx`` (or ../shared/models) exists, else CenterFace.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
import tempfile
from typing import Any, Dict, List, Tuple

from av_privacy_ros.archive.runner import run_archive
import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
TOPIC = '/camera/color/image_raw'


def _frames(count: int) -> List[np.ndarray]:
    import insightface
    base = cv2.resize(insightface.data.get_image('t1'), (640 + 2 * count, 480),
                      interpolation=cv2.INTER_AREA)
    return [np.ascontiguousarray(base[:, 2 * i:2 * i + 640]) for i in range(count)]


def _write_bag(path: Path, frames: List[np.ndarray]) -> None:
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import get_typestore, Stores
    ts = get_typestore(Stores.LATEST)
    types = ts.types
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection(TOPIC, 'sensor_msgs/msg/Image', typestore=ts)
        for i, frame in enumerate(frames):
            stamp = 1_700_000_000 * 10**9 + i * 33_333_333
            header = types['std_msgs/msg/Header'](
                stamp=types['builtin_interfaces/msg/Time'](sec=stamp // 10**9,
                                                           nanosec=stamp % 10**9),
                frame_id='camera_color_optical_frame')
            msg = types['sensor_msgs/msg/Image'](header=header, height=480, width=640,
                                                 encoding='bgr8', is_bigendian=0, step=1920,
                                                 data=frame.reshape(-1))
            writer.write(conn, stamp, ts.serialize_cdr(msg, 'sensor_msgs/msg/Image'))


def _params() -> Dict[str, Any]:
    overrides: Dict[str, Any] = {'seed': 1, 'detector.providers': ['cpu']}
    models = Path(os.environ.get('AV_PRIVACY_MODELS') or REPO.parent / 'shared' / 'models')
    if (models / 'det_500m.onnx').is_file():
        overrides['detector.backend'] = 'scrfd'
        overrides['detector.model_path'] = str(models / 'det_500m.onnx')
    else:
        overrides['detector.backend'] = 'centerface'
    return overrides


def main() -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--bags', type=int, default=4, help='bags in the archive')
    parser.add_argument('--frames', type=int, default=30, help='frames per bag')
    args = parser.parse_args()
    import ray
    cores = os.cpu_count() or 1
    params = _params()
    configs: List[Tuple[str, int, int]] = [('1 worker x 1 thread', 1, 1),
                                           ('1 worker x %d threads' % cores, 1, cores),
                                           ('2 workers x 1 thread', 2, 2)]
    rows = []
    with tempfile.TemporaryDirectory(prefix='bench_archive_') as tmp:
        frames = _frames(args.frames)
        for index in range(args.bags):
            _write_bag(Path(tmp) / 'in' / ('day%d' % (index // 2)) / ('run%d' % index), frames)
        for name, workers, cpus in configs:
            # One cluster per configuration, sized so that the workers get `cpus` threads.
            ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
            try:
                report = run_archive(Path(tmp) / 'in', Path(tmp) / name.replace(' ', '_'),
                                     params=params, num_workers=workers)
            finally:
                ray.shutdown()
            assert len(report.done) == args.bags and not report.failed, report.lines()
            busy = report.per_worker()
            per_worker = sum(row['fps'] for row in busy.values()) / max(1, len(busy))
            detector = next(iter(report.workers.values()))['detector']
            rows.append((name, report.wall_s, report.frames_per_second, per_worker, detector))
    base = rows[0][2]
    print('anonymize_archive throughput: %d bags x %d raw bgr8 640x480 frames, %d cores, '
          'detector %s' % (args.bags, args.frames, cores, rows[0][4]))
    print('| workers | wall s | frames/s overall | frames/s per worker (busy) | speed-up |')
    print('|---|---|---|---|---|')
    for name, wall, fps, per_worker, _ in rows:
        speedup = fps / base if base else 0.0
        print('| %s | %.1f | %.1f | %.1f | %.2fx |' % (name, wall, fps, per_worker, speedup))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
