"""
Detection-scale policy: which parts of a frame the face detector sees, and at which scale.

A detector run on a 1920×1080 frame at its 640-px input sees a 12-px face as 4 px and misses
it. Running it on the whole frame at native resolution finds it, at three to eight times the
cost. The policies here (``SCALE_POLICIES``):

``fixed``
    one pass at the detector input size (the frame scaled to it): fast, misses small faces in
    frames larger than the input.
``full``
    one pass over the whole frame at native resolution.
``tiles``
    a coarse pass at the detector input size (finds the large faces) plus every native-
    resolution tile of the frame, each frame.
``keyframes``
    a native full-size pass every ``keyframe_interval`` frames, the coarse pass in between
    (the temporal hold of the tracker carries the small faces between key frames).
``auto``
    the coarse pass every frame plus ``tiles_per_frame`` native tiles (all of them on the
    first frame of a stream, after :meth:`ScaledDetection.reset` and when the frame size
    changes). The tile scanned is the one whose content changed most since its last scan (a
    face walking in or turning to the camera), unless a tile has gone unscanned for as many
    frames as there are tiles. A face found in a tile is carried, its box growing, until that
    tile is scanned again, so a small face stays masked between two visits of its tile. The
    coarse pass and the tile run as one detector call on a stacked canvas
    (:func:`stacked_detect`), about 1.75 times the coarse pass alone.

Frames not larger than the detector input get the coarse pass only, whatever the policy: no
extra work at 640×480. Tiles overlap by at least ``tile_overlap`` pixels so every face up to
that size lies whole inside one tile; larger faces are the coarse pass's. Boxes from all passes
are merged without duplicates (:func:`merge_detections`).

Pure numpy: no rclpy. One :class:`ScaledDetection` follows one camera stream (its rotation
and carried faces are per stream); the detector it calls may be shared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .detection import Detections

SCALE_POLICIES = ('auto', 'tiles', 'full', 'keyframes', 'fixed')
DEFAULT_SCALE_POLICY = 'auto'
DEFAULT_TILE_OVERLAP = 64
DEFAULT_TILES_PER_FRAME = 1
DEFAULT_KEYFRAME_INTERVAL = 3
DETECTOR_STRIDE = 32  # input sides of SCRFD and CenterFace are multiples of their largest stride
MERGE_OVERLAP = 0.5  # boxes whose intersection covers half the smaller box are one face
CARRY_GROWTH_PER_FACE = 0.5  # a carried face moves at most half its size per frame
CHANGE_SCALE = 4  # tile changes are measured on the frame at a quarter of its size
CHANGE_LEVEL = 16  # grey levels: above the noise of a smoothed quarter-size frame


@dataclass(frozen=True)
class Tile:
    """A rectangle of the frame, ``x0 <= x < x1``, ``y0 <= y < y1``, in pixels."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        """Return the tile width in pixels."""
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        """Return the tile height in pixels."""
        return self.y1 - self.y0


@dataclass
class FramePlan:
    """What the detector runs on for one frame: the coarse pass, a full pass, tiles."""

    coarse: bool
    full: bool
    tiles: List[int] = field(default_factory=list)
    grid: List[Tile] = field(default_factory=list)


def _round_up(value: int, multiple: int = DETECTOR_STRIDE) -> int:
    return max(multiple, int(math.ceil(value / float(multiple))) * multiple)


def axis_starts(size: int, tile: int, overlap: int) -> List[int]:
    """
    Return tile start positions along one axis of ``size`` pixels.

    Tiles of ``tile`` pixels are spread evenly from 0 to ``size - tile`` so that neighbours
    share at least ``overlap`` pixels; one tile when the axis fits in one.
    """
    if size <= 0 or tile <= 0:
        raise ValueError('frame and tile sizes must be positive, got %d and %d' % (size, tile))
    if overlap < 0 or overlap >= tile:
        raise ValueError('tile overlap must be at least 0 and smaller than the tile (%d px), '
                         'got %d' % (tile, overlap))
    if size <= tile:
        return [0]
    count = int(math.ceil((size - overlap) / float(tile - overlap)))
    count = max(count, 2)
    return [int(round(k * (size - tile) / float(count - 1))) for k in range(count)]


def fitted_tile(size: int, tile: int, overlap: int) -> int:
    """
    Return the tile side, at most ``tile``, that covers ``size`` pixels with the fewest tiles.

    The count is the fewest tiles of ``tile`` pixels that overlap by ``overlap``; the side is
    then shrunk to the smallest multiple of the detector stride that still gives that overlap,
    so no pixels are spent on overlap beyond what was asked for.
    """
    if size <= tile:
        return size
    count = int(math.ceil((size - overlap) / float(tile - overlap)))
    fitted = _round_up(int(math.ceil((size + (count - 1) * overlap) / float(count))))
    return min(tile, fitted)


def default_tile_size(det_size: Tuple[int, int]) -> Tuple[int, int]:
    """
    Return the default tile size for a detector input: as wide, two thirds as high.

    The canvas of one frame (the scaled frame, a band, one tile) is then about 1.75 times the
    detector input, so the policy auto costs under twice the scaled pass alone.
    """
    det_w, det_h = int(det_size[0]), int(det_size[1])
    return det_w, max(DETECTOR_STRIDE * 3, (det_h * 2 // 3) // DETECTOR_STRIDE * DETECTOR_STRIDE)


def tile_grid(width: int, height: int, tile_width: int, tile_height: int,
              overlap: int) -> List[Tile]:
    """
    Return the tiles (row by row) that cover a ``width``×``height`` frame with overlap.

    Tiles are ``tile_width`` wide (the frame width when narrower; they are stacked under the
    scaled frame on one canvas that is at least as wide, so a narrower tile would save nothing)
    and at most ``tile_height`` high (see :func:`fitted_tile`), all the same size.
    """
    tile_width = min(tile_width, width)
    tile_height = fitted_tile(height, tile_height, overlap)
    xs = axis_starts(width, tile_width, overlap)
    ys = axis_starts(height, tile_height, overlap)
    return [Tile(x, y, min(x + tile_width, width), min(y + tile_height, height))
            for y in ys for x in xs]


def intersection_over_smaller(boxes: np.ndarray) -> np.ndarray:
    """Return the N×N matrix of box intersections divided by the smaller box's area."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    x1 = np.maximum(boxes[:, None, 0], boxes[None, :, 0])
    y1 = np.maximum(boxes[:, None, 1], boxes[None, :, 1])
    x2 = np.minimum(boxes[:, None, 2], boxes[None, :, 2])
    y2 = np.minimum(boxes[:, None, 3], boxes[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0,
                                                                 None)
    smaller = np.maximum(np.minimum(area[:, None], area[None, :]), 1e-6)
    return inter / smaller


def merge_detections(parts: Sequence[Detections],
                     min_overlap: float = MERGE_OVERLAP) -> Detections:
    """
    Merge detections of overlapping passes (tiles, coarse pass) into one box per face.

    Greedy by score: the best remaining box takes every other box whose intersection covers at
    least ``min_overlap`` of the smaller of the two (a face cut by a tile border is a box
    inside the whole face's box) and the group becomes the union of its boxes, so the merged
    box covers every part any pass saw. Landmarks are the best box's.
    """
    parts = [part for part in parts if len(part)]
    if not parts:
        return Detections.empty()
    boxes = np.concatenate([part.boxes for part in parts])
    scores = np.concatenate([part.scores for part in parts])
    with_landmarks = all(part.landmarks is not None for part in parts)
    landmarks = (np.concatenate([part.landmarks for part in parts])
                 if with_landmarks else None)
    order = np.argsort(-scores, kind='stable')
    overlap = intersection_over_smaller(boxes) >= float(min_overlap)
    taken = np.zeros(len(boxes), np.bool_)
    out_boxes: List[np.ndarray] = []
    out_scores: List[float] = []
    out_landmarks: List[np.ndarray] = []
    for best in order:
        if taken[best]:
            continue
        group = np.flatnonzero(overlap[best] & ~taken)
        taken[group] = True
        members = boxes[group]
        out_boxes.append(np.concatenate([members[:, :2].min(axis=0), members[:, 2:].max(axis=0)]))
        out_scores.append(float(scores[best]))
        if landmarks is not None:
            out_landmarks.append(landmarks[best])
    return Detections(np.stack(out_boxes), np.asarray(out_scores),
                      np.stack(out_landmarks) if landmarks is not None else None)


def grow_carried(boxes: np.ndarray, frames: int, grow_px_per_frame: float, width: int,
                 height: int) -> np.ndarray:
    """
    Return ``boxes`` grown for ``frames`` frames of possible motion, clipped to the frame.

    Each side moves out by ``min(grow_px_per_frame, half the face size)`` per frame: a small
    (distant) face moves fewer pixels than a near one.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    if len(boxes) == 0 or frames <= 0:
        return boxes
    size = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    step = np.minimum(float(grow_px_per_frame), CARRY_GROWTH_PER_FACE * size) * frames
    boxes[:, :2] -= step[:, None]
    boxes[:, 2:] += step[:, None]
    np.clip(boxes[:, 0::2], 0, width, out=boxes[:, 0::2])
    np.clip(boxes[:, 1::2], 0, height, out=boxes[:, 1::2])
    return boxes


def check_scale_settings(policy: str, tile_overlap: int, tiles_per_frame: int,
                         keyframe_interval: int) -> None:
    """Raise ValueError with a clear sentence when a scale setting is out of range."""
    if policy not in SCALE_POLICIES:
        raise ValueError('scale policy must be one of %s, got %r'
                         % (', '.join(SCALE_POLICIES), policy))
    for name, value, low in (('tile overlap', tile_overlap, 0),
                             ('tiles per frame', tiles_per_frame, 1),
                             ('key frame interval', keyframe_interval, 1)):
        if isinstance(value, bool) or not float(value).is_integer() or int(value) < low:
            raise ValueError('%s must be an integer of at least %d, got %r' % (name, low, value))


def detect_at(detector: Any, image: np.ndarray, conf_thresh: float,
              input_size: Optional[Tuple[int, int]]) -> Detections:
    """Run ``detector`` on ``image`` at ``input_size`` (None: the detector's own choice)."""
    image = np.ascontiguousarray(image)
    if input_size is None or tuple(detector.input_size_for(image.shape[1], image.shape[0])) \
            == tuple(input_size):
        return detector.detect(image, conf_thresh)
    return detector.detect(image, conf_thresh, input_size=tuple(input_size))


def _static_input(detector: Any) -> bool:
    """Return True for a model compiled for one input size (no canvas, no native tiles)."""
    return getattr(getattr(detector, '_model', None), 'static_input_size', None) is not None


def _shifted(found: Detections, dx: float, dy: float, scale: float = 1.0) -> Detections:
    """Return ``found`` scaled by ``scale`` then moved by (dx, dy)."""
    offset = np.array([dx, dy], np.float32)
    boxes = found.boxes * scale + np.tile(offset, 2)
    landmarks = None if found.landmarks is None else found.landmarks * scale + offset
    return Detections(boxes, found.scores, landmarks)


def stacked_detect(detector: Any, bgr: np.ndarray, conf_thresh: float,
                   det_size: Tuple[int, int], tiles: Sequence[Tile]) -> List[Detections]:
    """
    Run the scaled pass and native ``tiles`` in one detector call; return one result each.

    The frame scaled into ``det_size`` and the tiles at native size are stacked on one canvas,
    separated by black bands of one detector stride, and detected at the canvas size with no
    scaling: one onnxruntime call per frame instead of one per pass (each call has a fixed
    cost). A box belongs to the part its centre lies in and is clipped to that part.
    """
    height, width = bgr.shape[:2]
    det_w, det_h = int(det_size[0]), int(det_size[1])
    scale = min(det_w / float(width), det_h / float(height))
    scaled_w, scaled_h = max(1, int(width * scale)), max(1, int(height * scale))
    heights = [det_h] + [tile.height for tile in tiles]
    tops = [0]
    for part_height in heights[:-1]:
        tops.append(tops[-1] + part_height + DETECTOR_STRIDE)
    canvas_w = _round_up(max([det_w] + [tile.width for tile in tiles]))
    canvas_h = _round_up(tops[-1] + heights[-1])
    canvas = np.zeros((canvas_h, canvas_w, 3), np.uint8)
    canvas[:scaled_h, :scaled_w] = cv2.resize(bgr, (scaled_w, scaled_h))
    for top, tile in zip(tops[1:], tiles):
        canvas[top:top + tile.height, :tile.width] = bgr[tile.y0:tile.y1, tile.x0:tile.x1]
    found = detect_at(detector, canvas, conf_thresh, (canvas_w, canvas_h))
    centre_y = (found.boxes[:, 1] + found.boxes[:, 3]) / 2.0
    bottoms = [top + size for top, size in
               zip(tops, [scaled_h] + [tile.height for tile in tiles])]
    bounds = [-np.inf] + [(bottom + top) / 2.0 for bottom, top in zip(bottoms, tops[1:])] + \
        [np.inf]
    parts: List[Detections] = []
    for part, (top, bottom) in enumerate(zip(tops, bottoms)):
        inside = (centre_y >= bounds[part]) & (centre_y < bounds[part + 1])
        right = scaled_w if part == 0 else tiles[part - 1].width
        boxes = found.boxes[inside] - np.array([0, top, 0, top], np.float32)
        boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, right)
        boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, bottom - top)
        landmarks = None
        if found.landmarks is not None:
            landmarks = found.landmarks[inside] - np.array([0, top], np.float32)
        local = Detections(boxes, found.scores[inside], landmarks)
        if part == 0:
            parts.append(_shifted(local, 0.0, 0.0, 1.0 / scale))
        else:
            parts.append(_shifted(local, tiles[part - 1].x0, tiles[part - 1].y0))
    return parts


def change_view(bgr: np.ndarray) -> np.ndarray:
    """Return the frame in grey at 1/CHANGE_SCALE size, smoothed: what tile changes look at."""
    height, width = bgr.shape[:2]
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    small = cv2.resize(grey, (max(1, width // CHANGE_SCALE), max(1, height // CHANGE_SCALE)),
                       interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(small, (3, 3), 0).astype(np.int16)


def _tile_view(view: np.ndarray, tile: Tile) -> np.ndarray:
    return view[tile.y0 // CHANGE_SCALE:tile.y1 // CHANGE_SCALE,
                tile.x0 // CHANGE_SCALE:tile.x1 // CHANGE_SCALE].copy()


class ScaledDetection:
    """
    Run a face detector on one stream's frames following a scale policy (see module doc).

    ``tile_size`` (width, height) defaults to :func:`default_tile_size` of the detector's
    input size for the frame.
    """

    def __init__(self, policy: str = DEFAULT_SCALE_POLICY,
                 tile_overlap: int = DEFAULT_TILE_OVERLAP,
                 tiles_per_frame: int = DEFAULT_TILES_PER_FRAME,
                 keyframe_interval: int = DEFAULT_KEYFRAME_INTERVAL,
                 tile_size: Optional[Tuple[int, int]] = None) -> None:
        """Validate the settings; the first frame scans every tile."""
        check_scale_settings(policy, tile_overlap, tiles_per_frame, keyframe_interval)
        self.policy = policy
        self.tile_overlap = int(tile_overlap)
        self.tiles_per_frame = int(tiles_per_frame)
        self.keyframe_interval = int(keyframe_interval)
        self.tile_size = tile_size
        self.last_plan: Optional[FramePlan] = None
        self.reset()

    def reset(self) -> None:
        """Forget the rotation and the carried faces: the next frame scans every tile."""
        self._frame_index = 0
        self._grid_key: Optional[Tuple[int, ...]] = None
        self._carried: Dict[int, Tuple[np.ndarray, np.ndarray, int]] = {}
        self._scanned_at: Dict[int, int] = {}
        self._scanned_view: Dict[int, np.ndarray] = {}
        self._known_boxes = np.zeros((0, 4), np.float32)

    def grid_for(self, width: int, height: int, det_size: Tuple[int, int]) -> List[Tile]:
        """Return the native-resolution tiles of a frame for this detector input size."""
        tile_w, tile_h = self.tile_size or default_tile_size(det_size)
        overlap = min(self.tile_overlap, int(tile_w) - 1, int(tile_h) - 1)
        return tile_grid(width, height, int(tile_w), int(tile_h), overlap)

    def plan(self, width: int, height: int, det_size: Tuple[int, int],
             change: Optional[Sequence[float]] = None) -> FramePlan:
        """
        Return (and advance to) what the detector runs on for the next frame of this size.

        ``auto`` picks the tiles of this frame: a tile not scanned for a whole round (tiles /
        tiles_per_frame frames) is due (oldest first); otherwise the tile with the largest
        ``change`` since its last scan (a face walking in or turning to the camera), the oldest
        on ties. Without ``change`` the tiles come in turn.
        """
        frame = self._frame_index
        self._frame_index += 1
        det_w, det_h = int(det_size[0]), int(det_size[1])
        if self.policy == 'fixed' or (width <= det_w and height <= det_h):
            return FramePlan(coarse=True, full=False)
        if self.policy == 'full':
            return FramePlan(coarse=False, full=True)
        if self.policy == 'keyframes':
            key = frame % self.keyframe_interval == 0
            return FramePlan(coarse=not key, full=key)
        grid = self.grid_for(width, height, (det_w, det_h))
        key_now = (width, height, grid[0].width, grid[0].height, len(grid))
        if self._grid_key != key_now:
            self._carried.clear()
            self._scanned_at.clear()
            self._scanned_view.clear()
            self._grid_key = key_now
        everything = list(range(len(grid)))
        if self.policy == 'tiles' or len(self._scanned_at) < len(grid):
            tiles = everything
        else:
            tiles = []
            round_frames = int(math.ceil(len(grid) / float(self.tiles_per_frame)))
            for _pick in range(min(self.tiles_per_frame, len(grid))):
                left = [index for index in everything if index not in tiles]
                age = {index: frame - self._scanned_at[index] for index in left}
                due = [index for index in left if age[index] >= round_frames]
                if due or change is None:
                    tiles.append(max(due or left, key=lambda index: (age[index], -index)))
                else:
                    tiles.append(max(left, key=lambda index: (float(change[index]),
                                                              age[index], -index)))
        for index in tiles:
            self._scanned_at[index] = frame
        return FramePlan(coarse=True, full=False, tiles=tiles, grid=grid)

    def _change(self, view: np.ndarray, grid: Sequence[Tile]) -> Optional[List[float]]:
        """
        Return per tile how much of it changed since its last scan (None before all are).

        The count of quarter-size grey pixels that moved by more than ``CHANGE_LEVEL`` outside
        the boxes of the faces known in the previous frame: a face that appears changes a patch
        of its size, a known face moving inside its box and sensor noise change nothing.
        """
        if self.policy != 'auto' or len(self._scanned_view) < len(grid) or \
                self._grid_key is None or self._grid_key[4] != len(grid):
            return None
        changed = np.zeros(view.shape, np.bool_)
        for index, tile in enumerate(grid):
            before = self._scanned_view[index]
            rows = slice(tile.y0 // CHANGE_SCALE, tile.y0 // CHANGE_SCALE + before.shape[0])
            cols = slice(tile.x0 // CHANGE_SCALE, tile.x0 // CHANGE_SCALE + before.shape[1])
            if view[rows, cols].shape != before.shape:
                return None
            changed[rows, cols] |= np.abs(view[rows, cols] - before) > CHANGE_LEVEL
        # Changes inside the boxes of known faces are those faces moving, not new faces.
        for x1, y1, x2, y2 in self._known_boxes:
            changed[max(0, int(y1) // CHANGE_SCALE - 1):int(y2) // CHANGE_SCALE + 2,
                    max(0, int(x1) // CHANGE_SCALE - 1):int(x2) // CHANGE_SCALE + 2] = False
        return [float(np.count_nonzero(_tile_view(changed, tile))) for tile in grid]

    def detect(self, detector: Any, bgr: np.ndarray, conf_thresh: float,
               grow_px_per_frame: float = 6.0) -> Detections:
        """Return the faces in ``bgr``: the passes of this frame's plan, merged, plus carried."""
        height, width = bgr.shape[:2]
        if not callable(getattr(detector, 'input_size_for', None)):
            return detector.detect(bgr, conf_thresh)  # its input size is its own business
        det_size = tuple(detector.input_size_for(width, height))
        view = None
        change = None
        if self.policy == 'auto' and (width > det_size[0] or height > det_size[1]):
            view = change_view(bgr)
            change = self._change(view, self.grid_for(width, height, det_size))
        plan = self.plan(width, height, det_size, change)
        frame = self._frame_index - 1
        self.last_plan = plan
        if (plan.coarse and not plan.tiles) or (plan.full and _static_input(detector)):
            return detector.detect(bgr, conf_thresh)  # a static-size model has one input size
        if plan.full:
            return detect_at(detector, bgr, conf_thresh,
                             (_round_up(width), _round_up(height)))
        tiles = [plan.grid[index] for index in plan.tiles]
        if _static_input(detector):
            parts = [detector.detect(bgr, conf_thresh)]
            parts += [_shifted(detector.detect(np.ascontiguousarray(
                bgr[tile.y0:tile.y1, tile.x0:tile.x1]), conf_thresh), tile.x0, tile.y0)
                for tile in tiles]
        else:
            parts = stacked_detect(detector, bgr, conf_thresh, det_size, tiles)
        if self.policy != 'auto':
            return merge_detections(parts)
        for index, found in zip(plan.tiles, parts[1:]):
            self._carried[index] = (found.boxes, found.scores, frame)
            if view is not None:
                self._scanned_view[index] = _tile_view(view, plan.grid[index])
        found = self._with_carried(merge_detections(parts), set(plan.tiles), frame,
                                   grow_px_per_frame, width, height)
        self._known_boxes = found.boxes
        return found

    def _with_carried(self, merged: Detections, scanned: set, frame: int,
                      grow_px_per_frame: float, width: int, height: int) -> Detections:
        """
        Add the grown boxes of faces found in tiles that were not scanned this frame.

        A carried face detected again this frame where it was (its box at the last scan covers
        half of a fresh box or is half covered by it) is not added twice; carried boxes of one
        face seen by two overlapping tiles are merged.
        """
        kept_boxes, kept_scores = [], []
        for index, (tile_boxes, tile_scores, seen) in self._carried.items():
            if index in scanned or len(tile_boxes) == 0:
                continue
            if len(merged):
                overlap = intersection_over_smaller(np.vstack([tile_boxes, merged.boxes]))
                again = (overlap[:len(tile_boxes), len(tile_boxes):] >= MERGE_OVERLAP).any(1)
            else:
                again = np.zeros(len(tile_boxes), np.bool_)
            kept_boxes.append(grow_carried(tile_boxes[~again], frame - seen, grow_px_per_frame,
                                           width, height))
            kept_scores.append(tile_scores[~again])
        carried = merge_detections([Detections(b, s) for b, s in zip(kept_boxes, kept_scores)])
        if len(carried) == 0:
            return merged
        return Detections(np.concatenate([merged.boxes, carried.boxes]),
                          np.concatenate([merged.scores, carried.scores]), None)
