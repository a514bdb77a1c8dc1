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
    the coarse pass every frame plus native-resolution detail in the canvas area left under it
    (the *tile area*: ``tiles_per_frame`` tiles high). Where the frame changed since each
    region was last scanned, outside the surroundings of known faces (a face walking in or
    turning to the camera), windows around the changed regions are packed into the tile area
    and scanned in the frame the change appears (:func:`change_windows`,
    :func:`pack_windows`). Otherwise the tile area holds ``tiles_per_frame`` tiles: a tile
    not scanned for a whole round first, else the most changed, else the oldest. A tile
    unscanned for two rounds takes the area even over windows. Every tile is scanned on the
    first frame of a stream, after :meth:`ScaledDetection.reset` and when the frame size
    changes. A face found at native resolution is carried, its box growing, until the tile
    that holds it is scanned again (or a window covers where it can be), so a small face
    stays masked between visits. The canvas is ``CANVAS_HEIGHT_RATIO`` (5/3) of the detector
    input: one detector call (:func:`stacked_detect`) at 1.4 to 1.8 times the coarse pass.

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
MIN_CHANGE_PIXELS = 4  # quarter-size pixels: a face of 8 px with its hair changes about 9
WINDOW_MARGIN = 24  # px of context around a changed region, so a face in it is seen whole
MAX_WINDOWS = 12  # windows per frame: beyond that a whole tile is the better use of the area
WINDOW_GAP = 16  # black px between windows on the canvas: no box spans two windows
KNOWN_FACE_REACH = 0.75  # head and shoulders move with a known face: no new face there
CANVAS_HEIGHT_RATIO = 5.0 / 3.0  # canvas height / detector input height (cost about 1.7x)


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
    # Native windows on changed regions and their (x, y) in the tile area of the canvas.
    windows: List[Tile] = field(default_factory=list)
    window_places: List[Tuple[int, int]] = field(default_factory=list)
    area_height: int = 0  # of the tile area: the canvas keeps one size whatever it holds


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


def default_tile_size(det_size: Tuple[int, int],
                      frame_size: Optional[Tuple[int, int]] = None) -> Tuple[int, int]:
    """
    Return the default tile size for a detector input: as wide, the rest of the canvas high.

    The canvas of one frame (the frame scaled into ``det_size``, a band of one stride, one
    tile) is ``CANVAS_HEIGHT_RATIO`` times the detector input high, so the policy auto costs
    well under twice the scaled pass alone. ``frame_size`` (width, height) gives the height
    of the scaled frame (the detector input height without it).
    """
    det_w, det_h = int(det_size[0]), int(det_size[1])
    scaled_h = det_h
    if frame_size is not None:
        width, height = int(frame_size[0]), int(frame_size[1])
        scaled_h = min(det_h, int(height * min(det_w / float(width), det_h / float(height))))
    canvas_h = _round_up(int(det_h * CANVAS_HEIGHT_RATIO))
    return det_w, max(DETECTOR_STRIDE * 3, canvas_h - scaled_h - DETECTOR_STRIDE)


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


def grow_carried(boxes: np.ndarray, frames: Any, grow_px_per_frame: float, width: int,
                 height: int) -> np.ndarray:
    """
    Return ``boxes`` grown for ``frames`` frames of possible motion, clipped to the frame.

    Each side moves out by ``min(grow_px_per_frame, half the face size)`` per frame: a small
    (distant) face moves fewer pixels than a near one. ``frames`` is one count for all boxes
    or one per box.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    frames = np.clip(np.asarray(frames, np.float32), 0, None)
    if len(boxes) == 0 or not frames.any():
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


def _scaled_shape(width: int, height: int, det_size: Tuple[int, int]) -> Tuple[int, int, float]:
    """Return the width, height and scale of a frame scaled to fit ``det_size``."""
    scale = min(det_size[0] / float(width), det_size[1] / float(height))
    return max(1, int(width * scale)), max(1, int(height * scale)), scale


def stacked_detect(detector: Any, bgr: np.ndarray, conf_thresh: float,
                   det_size: Tuple[int, int], tiles: Sequence[Tile],
                   windows: Sequence[Tile] = (),
                   window_places: Sequence[Tuple[int, int]] = (),
                   area_height: int = 0) -> List[Detections]:
    """
    Run the scaled pass, native ``tiles`` and ``windows`` in one detector call.

    The frame scaled into ``det_size`` goes at the top of one canvas; below it, after a black
    band of one detector stride, the tiles at native size one under the other (bands between
    them), and the windows at native size at ``window_places`` (x, y inside that tile area).
    The canvas is at least ``area_height`` high below the band, so frames with windows or a
    tile use one canvas size (onnxruntime prepares each new input size once, slowly). It is
    detected at its own size with no scaling: one onnxruntime call per frame instead of one
    per pass (each call has a fixed cost). A box belongs to the part its
    centre lies in (the nearest part for a centre in a band) and is clipped to that part.
    Returns one result per part: the scaled pass, then each tile, then each window.
    """
    height, width = bgr.shape[:2]
    scaled_w, scaled_h, scale = _scaled_shape(width, height, det_size)
    area_top = scaled_h + DETECTOR_STRIDE
    # (canvas x, canvas y, source rectangle) of every native part
    places: List[Tuple[int, int, Tile]] = []
    top = area_top
    for tile in tiles:
        places.append((0, top, tile))
        top += tile.height + DETECTOR_STRIDE
    for window, (x, y) in zip(windows, window_places):
        places.append((int(x), area_top + int(y), window))
    canvas_w = _round_up(max([int(det_size[0])] + [x + t.width for x, _y, t in places]))
    canvas_h = _round_up(max([scaled_h, area_top + int(area_height)] +
                             [y + t.height for _x, y, t in places]))
    canvas = np.zeros((canvas_h, canvas_w, 3), np.uint8)
    canvas[:scaled_h, :scaled_w] = cv2.resize(bgr, (scaled_w, scaled_h))
    for x, y, tile in places:
        canvas[y:y + tile.height, x:x + tile.width] = bgr[tile.y0:tile.y1, tile.x0:tile.x1]
    found = detect_at(detector, canvas, conf_thresh, (canvas_w, canvas_h))
    rects = np.array([[0, 0, scaled_w, scaled_h]] +
                     [[x, y, x + t.width, y + t.height] for x, y, t in places],
                     np.float32).reshape(-1, 4)
    centre = np.stack([(found.boxes[:, 0] + found.boxes[:, 2]) / 2.0,
                       (found.boxes[:, 1] + found.boxes[:, 3]) / 2.0], axis=1)
    away_x = np.maximum(np.maximum(rects[None, :, 0] - centre[:, None, 0],
                                   centre[:, None, 0] - rects[None, :, 2]), 0)
    away_y = np.maximum(np.maximum(rects[None, :, 1] - centre[:, None, 1],
                                   centre[:, None, 1] - rects[None, :, 3]), 0)
    owner = np.argmin(away_x ** 2 + away_y ** 2, axis=1) if len(found) else \
        np.zeros(0, np.int64)
    parts: List[Detections] = []
    for part, (x0, y0, x1, y1) in enumerate(rects):
        inside = owner == part
        boxes = found.boxes[inside] - np.array([x0, y0, x0, y0], np.float32)
        boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, x1 - x0)
        boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, y1 - y0)
        landmarks = None
        if found.landmarks is not None:
            landmarks = found.landmarks[inside] - np.array([x0, y0], np.float32)
        local = Detections(boxes, found.scores[inside], landmarks)
        if part == 0:
            parts.append(_shifted(local, 0.0, 0.0, 1.0 / scale))
        else:
            source = places[part - 1][2]
            parts.append(_shifted(local, source.x0, source.y0))
    return parts


def change_windows(changed: np.ndarray, width: int, height: int) -> List[Tile]:
    """
    Return native-resolution windows around the changed regions of a frame, most changed first.

    ``changed`` is the boolean change map at 1/CHANGE_SCALE of the frame. Changed pixels less
    than a face apart are one region; a region of fewer than ``MIN_CHANGE_PIXELS`` is noise.
    Each window is the region's box plus ``WINDOW_MARGIN`` pixels, clipped to the frame.
    """
    if not changed.any():
        return []
    joined = cv2.dilate(changed.astype(np.uint8), np.ones((3, 3), np.uint8))
    count, labels, stats, _centres = cv2.connectedComponentsWithStats(joined, connectivity=8)
    weight = np.bincount(labels[changed], minlength=count)
    windows: List[Tuple[int, Tile]] = []
    for label in range(1, count):
        if weight[label] < MIN_CHANGE_PIXELS:
            continue
        x, y, w, h = (int(v) for v in stats[label, :4])
        windows.append((int(weight[label]), Tile(
            max(0, x * CHANGE_SCALE - WINDOW_MARGIN), max(0, y * CHANGE_SCALE - WINDOW_MARGIN),
            min(width, (x + w) * CHANGE_SCALE + WINDOW_MARGIN),
            min(height, (y + h) * CHANGE_SCALE + WINDOW_MARGIN))))
    windows.sort(key=lambda item: -item[0])
    return [window for _weight, window in windows]


def _shelves(sizes: Sequence[Tuple[int, int]], area_width: int,
             area_height: int) -> Optional[List[Tuple[int, int]]]:
    """Return (x, y) for every (width, height), tallest first on shelves; None if they overflow."""
    places: List[Tuple[int, int]] = [(0, 0)] * len(sizes)
    shelves: List[List[int]] = []  # [top, height, next free x]
    next_top = 0
    for index in sorted(range(len(sizes)), key=lambda k: -sizes[k][1]):
        width, height = sizes[index]
        shelf = next((s for s in shelves if s[2] + width <= area_width), None)
        if shelf is None:
            if next_top + height > area_height or width > area_width:
                return None
            shelf = [next_top, height, 0]
            shelves.append(shelf)
            next_top += height + WINDOW_GAP
        places[index] = (shelf[2], shelf[0])
        shelf[2] += width + WINDOW_GAP
    return places


def pack_windows(windows: Sequence[Tile], area_width: int,
                 area_height: int) -> List[Tuple[int, Tuple[int, int]]]:
    """
    Place windows in an ``area_width``×``area_height`` area, most important (first) first.

    Each window is taken if it fits with those already taken (all re-placed on shelves,
    tallest first, ``WINDOW_GAP`` pixels apart); one that does not fit is left out and the
    next ones are still tried. Returns (index, (x, y)) for the windows taken.
    """
    taken: List[int] = []
    places: List[Tuple[int, int]] = []
    for index, window in enumerate(windows[:MAX_WINDOWS * 2]):
        trial = _shelves([(windows[k].width, windows[k].height) for k in taken + [index]],
                         area_width, area_height)
        if trial is not None:
            taken.append(index)
            places = trial
        if len(taken) == MAX_WINDOWS:
            break
    return list(zip(taken, places))


def change_view(bgr: np.ndarray) -> np.ndarray:
    """Return the frame in grey at 1/CHANGE_SCALE size, smoothed: what tile changes look at."""
    height, width = bgr.shape[:2]
    # Bilinear (not area) shrinking: six times faster; the blur evens out what it skips.
    small = cv2.resize(bgr, (max(1, width // CHANGE_SCALE), max(1, height // CHANGE_SCALE)),
                       interpolation=cv2.INTER_LINEAR)
    grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    return cv2.GaussianBlur(grey, (3, 3), 0).astype(np.int16)


def _quarter(tile: Tile) -> Tuple[slice, slice]:
    """Return the rows and columns of ``tile`` in the 1/CHANGE_SCALE change view."""
    return (slice(tile.y0 // CHANGE_SCALE, -(-tile.y1 // CHANGE_SCALE)),
            slice(tile.x0 // CHANGE_SCALE, -(-tile.x1 // CHANGE_SCALE)))


def _inside(boxes: np.ndarray, tile: Tile) -> np.ndarray:
    """Return which boxes lie whole inside ``tile``."""
    boxes = np.asarray(boxes).reshape(-1, 4)
    return (boxes[:, 0] >= tile.x0) & (boxes[:, 1] >= tile.y0) & \
        (boxes[:, 2] <= tile.x1) & (boxes[:, 3] <= tile.y1)


def _holding_tiles(boxes: np.ndarray, grid: Sequence[Tile]) -> np.ndarray:
    """
    Return for each box the tile that will look for it again: the first holding it whole.

    A box no tile holds whole (cut by the frame edge, or larger than the overlap) goes to the
    tile holding most of it.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    rects = np.array([[t.x0, t.y0, t.x1, t.y1] for t in grid], np.float32).reshape(-1, 4)
    whole = (boxes[:, None, 0] >= rects[None, :, 0]) & (boxes[:, None, 1] >= rects[None, :, 1]) \
        & (boxes[:, None, 2] <= rects[None, :, 2]) & (boxes[:, None, 3] <= rects[None, :, 3])
    shared = np.clip(np.minimum(boxes[:, None, 2], rects[None, :, 2]) -
                     np.maximum(boxes[:, None, 0], rects[None, :, 0]), 0, None) * \
        np.clip(np.minimum(boxes[:, None, 3], rects[None, :, 3]) -
                np.maximum(boxes[:, None, 1], rects[None, :, 1]), 0, None)
    return np.where(whole.any(axis=1), np.argmax(whole, axis=1), np.argmax(shared, axis=1))


class CarriedFaces:
    """Faces found at native resolution, kept until the tile that holds each is scanned again."""

    def __init__(self) -> None:
        """Start with none."""
        self.boxes = np.zeros((0, 4), np.float32)  # where each face was found
        self.scores = np.zeros(0, np.float32)
        self.seen = np.zeros(0, np.int64)  # the frame it was found in
        self.tile = np.zeros(0, np.int64)  # the tile that will look for it again

    def keep(self, rows: np.ndarray) -> None:
        """Keep only the faces where ``rows`` is True."""
        self.boxes, self.scores = self.boxes[rows], self.scores[rows]
        self.seen, self.tile = self.seen[rows], self.tile[rows]

    def add(self, found: Detections, tiles: np.ndarray, frame: int) -> None:
        """Add the faces ``found`` in ``frame``, each held by its entry of ``tiles``."""
        self.boxes = np.concatenate([self.boxes, found.boxes.astype(np.float32).reshape(-1, 4)])
        self.scores = np.concatenate([self.scores, found.scores.astype(np.float32)])
        self.seen = np.concatenate([self.seen, np.full(len(found), frame, np.int64)])
        self.tile = np.concatenate([self.tile, np.asarray(tiles, np.int64).reshape(-1)])

    def replace_tile(self, index: int, found: Detections, frame: int) -> None:
        """Replace the faces tile ``index`` holds by those a scan of it ``found``."""
        self.keep(self.tile != index)
        self.add(found, np.full(len(found), index, np.int64), frame)


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
                 tile_size: Optional[Tuple[int, int]] = None,
                 change_windows: bool = True) -> None:
        """
        Validate the settings; the first frame scans every tile.

        ``change_windows`` False keeps ``auto`` to whole tiles (the most changed one), as
        compared in scripts/bench_highres.py.
        """
        check_scale_settings(policy, tile_overlap, tiles_per_frame, keyframe_interval)
        self.policy = policy
        self.tile_overlap = int(tile_overlap)
        self.tiles_per_frame = int(tiles_per_frame)
        self.keyframe_interval = int(keyframe_interval)
        self.tile_size = tile_size
        self.change_windows = bool(change_windows)
        self.last_plan: Optional[FramePlan] = None
        self.reset()

    def reset(self) -> None:
        """Forget the rotation and the carried faces: the next frame scans every tile."""
        self._frame_index = 0
        self._grid_key: Optional[Tuple[int, ...]] = None
        self._carried = CarriedFaces()
        self._scanned_at: Dict[int, int] = {}
        self._reference: Optional[np.ndarray] = None  # change view as of each pixel's scan
        self._known_boxes = np.zeros((0, 4), np.float32)

    def grid_for(self, width: int, height: int, det_size: Tuple[int, int]) -> List[Tile]:
        """Return the native-resolution tiles of a frame for this detector input size."""
        tile_w, tile_h = self.tile_size or default_tile_size(det_size, (width, height))
        overlap = min(self.tile_overlap, int(tile_w) - 1, int(tile_h) - 1)
        return tile_grid(width, height, int(tile_w), int(tile_h), overlap)

    def plan(self, width: int, height: int, det_size: Tuple[int, int],
             change: Optional[Sequence[float]] = None,
             windows: Optional[Sequence[Tile]] = None) -> FramePlan:
        """
        Return (and advance to) what the detector runs on for the next frame of this size.

        ``auto``: ``windows`` (native rectangles around changed regions, most changed first)
        that fit the tile area of the canvas are scanned this frame instead of a tile, unless
        a tile has gone unscanned for two whole rounds (tiles / tiles_per_frame frames each).
        Otherwise the tiles of this frame: a tile not scanned for a whole round is due (oldest
        first); otherwise the tile with the largest ``change`` since its last scan, the oldest
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
            self._carried = CarriedFaces()
            self._scanned_at.clear()
            self._reference = None
            self._grid_key = key_now
        everything = list(range(len(grid)))
        if self.policy == 'tiles' or len(self._scanned_at) < len(grid):
            for index in everything:
                self._scanned_at[index] = frame
            return FramePlan(coarse=True, full=False, tiles=everything, grid=grid)
        per_frame = min(self.tiles_per_frame, len(grid))
        round_frames = int(math.ceil(len(grid) / float(per_frame)))
        age = {index: frame - self._scanned_at[index] for index in everything}
        if windows and self.change_windows and max(age.values()) < 2 * round_frames:
            area_h = per_frame * grid[0].height + (per_frame - 1) * DETECTOR_STRIDE
            packed = pack_windows(windows, max(det_w, grid[0].width), area_h)
            if packed:
                return FramePlan(coarse=True, full=False, grid=grid,
                                 windows=[windows[index] for index, _place in packed],
                                 window_places=[place for _index, place in packed],
                                 area_height=area_h)
        tiles: List[int] = []
        for _pick in range(per_frame):
            left = [index for index in everything if index not in tiles]
            due = [index for index in left if age[index] >= round_frames]
            if due or change is None:
                tiles.append(max(due or left, key=lambda index: (age[index], -index)))
            else:
                tiles.append(max(left, key=lambda index: (float(change[index]),
                                                          age[index], -index)))
        for index in tiles:
            self._scanned_at[index] = frame
        return FramePlan(coarse=True, full=False, tiles=tiles, grid=grid,
                         area_height=per_frame * grid[0].height +
                         (per_frame - 1) * DETECTOR_STRIDE)

    def _changed(self, view: np.ndarray) -> Optional[np.ndarray]:
        """
        Return the change map since each pixel's last native scan (None before the first).

        Quarter-size grey pixels that moved by more than ``CHANGE_LEVEL``, outside the
        surroundings of the faces known in the previous frame (``KNOWN_FACE_REACH`` of their
        size around them): a face that appears changes a patch of its size; a known face
        moving with its head and shoulders, and sensor noise, change nothing.
        """
        if self.policy != 'auto' or self._reference is None or \
                self._reference.shape != view.shape:
            return None
        changed = np.abs(view - self._reference) > CHANGE_LEVEL
        for x1, y1, x2, y2 in self._known_boxes:
            reach = KNOWN_FACE_REACH * max(x2 - x1, y2 - y1)
            changed[max(0, int(y1 - reach) // CHANGE_SCALE - 1):
                    int(y2 + reach) // CHANGE_SCALE + 2,
                    max(0, int(x1 - reach) // CHANGE_SCALE - 1):
                    int(x2 + reach) // CHANGE_SCALE + 2] = False
        return changed

    def detect(self, detector: Any, bgr: np.ndarray, conf_thresh: float,
               grow_px_per_frame: float = 6.0) -> Detections:
        """Return the faces in ``bgr``: the passes of this frame's plan, merged, plus carried."""
        height, width = bgr.shape[:2]
        if not callable(getattr(detector, 'input_size_for', None)):
            return detector.detect(bgr, conf_thresh)  # its input size is its own business
        det_size = tuple(detector.input_size_for(width, height))
        view = None
        change = None
        windows = None
        if self.policy == 'auto' and (width > det_size[0] or height > det_size[1]):
            view = change_view(bgr)
            changed = self._changed(view)
            if changed is not None:
                grid = self.grid_for(width, height, det_size)
                change = [float(np.count_nonzero(changed[_quarter(tile)])) for tile in grid]
                windows = change_windows(changed, width, height)
        plan = self.plan(width, height, det_size, change, windows)
        frame = self._frame_index - 1
        self.last_plan = plan
        if (plan.coarse and not plan.tiles and not plan.windows) or \
                (plan.full and _static_input(detector)):
            return detector.detect(bgr, conf_thresh)  # a static-size model has one input size
        if plan.full:
            return detect_at(detector, bgr, conf_thresh,
                             (_round_up(width), _round_up(height)))
        tiles = [plan.grid[index] for index in plan.tiles]
        if _static_input(detector):
            parts = [detector.detect(bgr, conf_thresh)]
            parts += [_shifted(detector.detect(np.ascontiguousarray(
                bgr[tile.y0:tile.y1, tile.x0:tile.x1]), conf_thresh), tile.x0, tile.y0)
                for tile in tiles + list(plan.windows)]
        else:
            parts = stacked_detect(detector, bgr, conf_thresh, det_size, tiles,
                                   plan.windows, plan.window_places, plan.area_height)
        if self.policy != 'auto':
            return merge_detections(parts)
        if view is not None and (self._reference is None or
                                 self._reference.shape != view.shape):
            self._reference = view.copy()
        carried = self._carried
        for index, found in zip(plan.tiles, parts[1:]):
            carried.replace_tile(index, found, frame)
            if view is not None and self._reference is not None:
                rows, cols = _quarter(plan.grid[index])
                self._reference[rows, cols] = view[rows, cols]
        if plan.windows:
            # Carried faces whose possible positions lie inside a window were looked for
            # there now: what the windows found replaces them.
            grown = grow_carried(carried.boxes, frame - carried.seen, grow_px_per_frame, width,
                                 height)
            looked = np.zeros(len(grown), np.bool_)
            for window in plan.windows:
                looked |= _inside(grown, window)
            carried.keep(~looked)
            for window, found in zip(plan.windows, parts[1 + len(tiles):]):
                carried.add(found, _holding_tiles(found.boxes, plan.grid), frame)
                if view is not None and self._reference is not None:
                    rows, cols = _quarter(window)
                    self._reference[rows, cols] = view[rows, cols]
        merged = merge_detections(parts)
        found = self._with_carried(merged, plan.tiles, frame, grow_px_per_frame, width, height)
        # Faces just seen, and carried faces where they were seen: their moves are no news.
        self._known_boxes = np.concatenate([merged.boxes.reshape(-1, 4), carried.boxes])
        return found

    def _with_carried(self, merged: Detections, scanned: Sequence[int], frame: int,
                      grow_px_per_frame: float, width: int, height: int) -> Detections:
        """
        Add the grown boxes of faces found in tiles or windows not scanned this frame.

        A carried face detected again this frame where it was (its box at the last scan covers
        half of a fresh box or is half covered by it) is not added twice; carried boxes of one
        face seen by two overlapping tiles are merged.
        """
        carried = self._carried
        pending = (carried.seen != frame) & ~np.isin(carried.tile, list(scanned))
        boxes, scores, seen = carried.boxes[pending], carried.scores[pending], \
            carried.seen[pending]
        if len(boxes) and len(merged):
            overlap = intersection_over_smaller(np.vstack([boxes, merged.boxes]))
            again = (overlap[:len(boxes), len(boxes):] >= MERGE_OVERLAP).any(1)
            boxes, scores, seen = boxes[~again], scores[~again], seen[~again]
        if len(boxes) == 0:
            return merged
        grown = merge_detections([Detections(
            grow_carried(boxes, frame - seen, grow_px_per_frame, width, height), scores)])
        return Detections(np.concatenate([merged.boxes, grown.boxes]),
                          np.concatenate([merged.scores, grown.scores]), None)
