#!/usr/bin/env python3
"""
Measure what the temporal hold and the private mosaic add per frame, against the plain mosaic.

Both pipelines run in the same process on the same 640×480 frames of the real group photo with
its 6 faces (boxes from SCRFD when its weights are found, else from CenterFace), the boxes
moving a few pixels per frame as in a video. Detection is run once, outside the timing: it is
the same in both pipelines. Plain: mask from the boxes + image-grid mosaic with fresh cell
noise. Private: tracker update + mask from the tracked boxes + face-anchored mosaic with
persistent per-track noise. Usage: ``python scripts/bench_tracking.py [--frames N]``.
"""

from __future__ import annotations

import argparse
import time
from typing import Callable, List

from av_privacy_ros.anonymize import fast_pixelate, NoiseTables, private_pixelate
from av_privacy_ros.detection import create_detector
from av_privacy_ros.masks import build_mask_from_boxes, face_regions
from av_privacy_ros.tracking import FaceTracker
import cv2
import numpy as np

WIDTH, HEIGHT = 640, 480


def median_ms(function: Callable[[int], object], frames: int, rounds: int) -> List[float]:
    """Return the median milliseconds per frame of each round (after one warm-up round)."""
    medians = []
    for round_index in range(rounds + 1):
        samples = []
        for frame in range(frames):
            start = time.perf_counter()
            function(frame)
            samples.append(time.perf_counter() - start)
        if round_index:
            medians.append(float(np.median(samples)) * 1000.0)
    return medians


def main() -> int:
    """Run the benchmark and print the overhead."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--frames', type=int, default=300, help='frames per round')
    parser.add_argument('--rounds', type=int, default=5, help='alternating rounds')
    parser.add_argument('--block', type=int, default=24)
    parser.add_argument('--noise', type=int, default=20)
    parser.add_argument('--noise-mode', default='cell', choices=('cell', 'laplace'))
    args = parser.parse_args()
    from insightface.data import get_image
    base = cv2.resize(get_image('t1'), (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
    detector, _ = create_detector(backend='auto', providers=['cpu'])
    boxes = detector.detect(base, 0.3).boxes
    print('detector %s: %d faces, widths %s px' % (
        detector.backend, len(boxes), np.round(boxes[:, 2] - boxes[:, 0]).astype(int).tolist()))
    rng = np.random.default_rng(0)
    # Faces drifting 2 px per frame with 1 px of detector jitter, 30 frames to and fro.
    drift = np.array([[2.0, 1.0]]) * (15 - np.abs(np.arange(args.frames) % 60 - 30) / 1.0)[:, None]
    frame_boxes = [(boxes + np.tile(drift[k], 2) + rng.normal(0, 1.0, boxes.shape))
                   .astype(np.float32) for k in range(args.frames)]
    shape = (HEIGHT, WIDTH)
    plain_rng = np.random.default_rng(1)
    tracker = FaceTracker(seed=2)
    tables = NoiseTables()
    private_rng = np.random.default_rng(3)

    def plain(frame: int) -> np.ndarray:
        frame_box = frame_boxes[frame]
        mask = build_mask_from_boxes(shape, frame_box, 0.25, True, 13)
        regions = face_regions(frame_box, 0.25, 13, shape)
        return fast_pixelate(base, mask, args.block, args.noise, plain_rng, 'cell', regions)

    def private(frame: int) -> np.ndarray:
        tracked = tracker.update(frame_boxes[frame])
        mask_boxes = tracked.boxes
        mask = build_mask_from_boxes(shape, mask_boxes, 0.25, True, 13)
        regions = face_regions(mask_boxes, 0.25, 13, shape)
        grids = tracked.grids
        out = private_pixelate(base, mask, grids, regions, args.noise, args.noise_mode, 0.5, 16,
                               private_rng, tables)
        tables.prune([grid.seed for grid in grids])
        return out

    def tracking_only(frame: int) -> object:
        return tracker.update(frame_boxes[frame])

    plain_ms, private_ms, track_ms = [], [], []
    for _ in range(args.rounds):  # alternate so machine load hits both alike
        plain_ms += median_ms(plain, args.frames, 1)
        private_ms += median_ms(private, args.frames, 1)
        track_ms += median_ms(tracking_only, args.frames, 1)
    plain_med, private_med = float(np.median(plain_ms)), float(np.median(private_ms))
    rows = [('plain mosaic (mask + image-grid mosaic)', plain_med),
            ('tracking + private mosaic (%s noise)' % args.noise_mode, private_med),
            ('  of which the tracker update', float(np.median(track_ms)))]
    for label, value in rows:
        print('%-44s %7.3f ms/frame' % (label + ':', value))
    print('overhead: %+.3f ms/frame (ratio %.2f, same run), budget 0.5 ms'
          % (private_med - plain_med, private_med / plain_med))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
