"""
Temporal hold of faces across frames: a face the detector misses stays masked for a while.

:class:`FaceTracker` associates each frame's detections with the faces of the frames before
(greedy on IoU and centre distance). A detected face is masked in that very frame: there is
no confirmation delay. A face that loses its detection is *held*: it stays masked for
``hold_frames`` frames, its box growing on every side by ``grow_px_per_frame`` pixels per frame
so a face that keeps moving stays inside it. Each track also carries the state of its private
mosaic (a grid anchored to the face and a noise seed, see anonymize.private_pixelate).

Pure numpy: no rclpy. One tracker follows one camera stream; call :meth:`FaceTracker.reset`
between unrelated images or streams.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

import numpy as np

from .anonymize import anchored_grid, FaceGrid
from .boxes import box_iou
from .checks import check_boxes, depth_in_metres
from .settings import PipelineSettings

SOURCES = ('detected', 'held')
# Association of detections with tracks: a detection continues a track when its box overlaps
# the track's last detection by this IoU, or when its centre lies within CENTRE_GATE times
# the track's box size (plus the distance a held face may have moved).
IOU_MIN = 0.1
CENTRE_GATE = 0.5


def grow_px_from_speed(speed_mps: Union[float, np.ndarray], frame_rate_hz: float,
                       focal_px: float, depth_m: Union[float, np.ndarray]
                       ) -> Union[float, np.ndarray]:
    """
    Return how many pixels per frame a face at ``depth_m`` metres moves at ``speed_mps``.

    ``speed / frame_rate · focal / depth``: a person walking at 1.5 m/s across the view of a
    camera with a 600 px focal length at 30 Hz moves 10 px per frame at 3 m and 60 px per
    frame at 0.5 m. Unknown depths (NaN, 0, negative) give NaN.
    """
    if frame_rate_hz <= 0:
        raise ValueError('frame rate must be positive, got %r' % frame_rate_hz)
    if focal_px <= 0:
        raise ValueError('focal length must be positive, got %r' % focal_px)
    depth = np.asarray(depth_m, np.float64)
    with np.errstate(divide='ignore', invalid='ignore'):
        grow = np.where(depth > 0, np.asarray(speed_mps, np.float64) / float(frame_rate_hz)
                        * float(focal_px) / np.where(depth > 0, depth, 1.0), np.nan)
    return float(grow) if grow.ndim == 0 else grow


def face_depths(depth: np.ndarray, boxes: np.ndarray, core_fraction: float = 0.6) -> np.ndarray:
    """Return the median depth in metres of the central part of each box (NaN if unknown)."""
    boxes = check_boxes(boxes)
    result = np.full(len(boxes), np.nan, np.float64)
    if len(boxes) == 0:
        return result
    height, width = depth.shape[:2]
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        mx = (x2 - x1) * (1.0 - core_fraction) / 2.0
        my = (y2 - y1) * (1.0 - core_fraction) / 2.0
        cx0, cy0 = max(0, int(x1 + mx)), max(0, int(y1 + my))
        cx1, cy1 = min(width, int(np.ceil(x2 - mx))), min(height, int(np.ceil(y2 - my)))
        if cx1 <= cx0 or cy1 <= cy0:
            continue
        core = depth_in_metres(np.ascontiguousarray(depth[cy0:cy1, cx0:cx1]))
        valid = core[np.isfinite(core)]
        if valid.size:
            result[k] = float(np.median(valid))
    return result


@dataclass(frozen=True)
class TrackedFace:
    """
    One face to mask in one frame.

    ``box`` is the detection (source ``'detected'``) or the last detection grown by
    ``missed × grow_px`` on every side (source ``'held'``); ``missed`` counts the frames since
    the last detection; ``grid`` is the face's mosaic grid (anchor, cell size, noise seed).
    AVPrivacyMasker.mask_extra_boxes adds faces with id 0 and source ``'backward'``.
    """

    track_id: int
    box: np.ndarray
    source: str
    score: float
    missed: int
    grid: FaceGrid


@dataclass
class TrackedFrame:
    """The faces to mask in one frame, in track-id order."""

    faces: List[TrackedFace]

    def __len__(self) -> int:
        """Return the number of faces to mask."""
        return len(self.faces)

    @property
    def boxes(self) -> np.ndarray:
        """Return the N×4 float32 boxes to mask (detected and held)."""
        if not self.faces:
            return np.zeros((0, 4), np.float32)
        return np.stack([face.box for face in self.faces]).astype(np.float32)

    @property
    def ids(self) -> np.ndarray:
        """Return the int64 track id of each face."""
        return np.array([face.track_id for face in self.faces], np.int64)

    @property
    def sources(self) -> List[str]:
        """Return 'detected' or 'held' for each face."""
        return [face.source for face in self.faces]

    @property
    def grids(self) -> List[FaceGrid]:
        """Return each face's mosaic grid."""
        return [face.grid for face in self.faces]


@dataclass
class _Track:
    """Mutable state of one tracked face."""

    track_id: int
    detected_box: np.ndarray
    score: float
    seed: int
    grow_px: float = 0.0  # per-track growth from speed and depth; 0 uses the tracker default
    missed: int = 0
    cell: Optional[int] = None


class FaceTracker:
    """
    Follow faces across the frames of one stream and hold the ones the detector misses.

    ``settings`` (a validated :class:`~av_privacy_ros.settings.PipelineSettings`) gives
    ``hold_frames``, how many consecutive frames a face stays masked without a detection (0
    turns the hold off; a gap of ``hold_frames + 1`` frames leaves the last one unmasked),
    ``grow_px_per_frame``, the speed bound in pixels per frame by which a held box grows on
    every side, and ``anon_block`` and ``cells_across``, each face's mosaic cell size (see
    anonymize.face_cell_size). Assigning :attr:`settings` changes them from the next frame
    on. ``seed`` makes the per-track noise seeds reproducible (tests); the default draws them
    from the OS.
    """

    def __init__(self, settings: Optional[PipelineSettings] = None, seed: Optional[int] = None,
                 rng: Optional[np.random.Generator] = None) -> None:
        """Create an empty tracker; see the class docstring for the parameters."""
        self.settings = settings if settings is not None else PipelineSettings()
        self._rng = rng if rng is not None else np.random.default_rng(seed)
        self._tracks: List[_Track] = []
        self._next_id = 1

    def reset(self) -> None:
        """Forget every track (a new stream, or an unrelated image, follows)."""
        self._tracks = []

    @property
    def track_count(self) -> int:
        """Return the number of live tracks (detected or held)."""
        return len(self._tracks)

    def update(self, boxes: np.ndarray, scores: Optional[np.ndarray] = None,
               grow_px: Optional[Union[float, Sequence[float], np.ndarray]] = None
               ) -> TrackedFrame:
        """
        Take one frame's detections and return every face to mask in that frame.

        ``boxes`` N×4 (x1, y1, x2, y2), ``scores`` N. ``grow_px`` optionally gives each
        detection its own growth speed in pixels per frame (e.g. from
        :func:`grow_px_from_speed` with the face depth); a held box grows by the larger of
        that and ``grow_px_per_frame``. NaN entries use the default.
        """
        boxes = check_boxes(boxes)
        count = len(boxes)
        scores_arr = (np.ones(count, np.float32) if scores is None
                      else np.asarray(scores, np.float32).reshape(-1))
        if scores_arr.shape[0] != count:
            raise ValueError('got %d scores for %d boxes' % (scores_arr.shape[0], count))
        grow_arr = np.zeros(count, np.float64)
        if grow_px is not None:
            grow_arr = np.asarray(grow_px, np.float64).reshape(-1)
            if grow_arr.shape[0] != count:
                raise ValueError('got %d growth speeds for %d boxes' % (grow_arr.shape[0], count))
            grow_arr = np.where(np.isfinite(grow_arr) & (grow_arr > 0), grow_arr, 0.0)
        matched = self._associate(boxes)
        taken = set()
        survivors: List[_Track] = []
        for index, track in enumerate(self._tracks):
            det = matched[index]
            if det >= 0:
                taken.add(det)
                track.detected_box = boxes[det].copy()
                track.score = float(scores_arr[det])
                track.grow_px = float(grow_arr[det])
                track.missed = 0
                survivors.append(track)
            else:
                track.missed += 1
                if track.missed <= self.settings.hold_frames:
                    survivors.append(track)
        for det in range(count):
            if det not in taken:
                survivors.append(_Track(self._next_id, boxes[det].copy(),
                                        float(scores_arr[det]),
                                        int(self._rng.integers(0, 1 << 32, dtype=np.uint64)),
                                        float(grow_arr[det])))
                self._next_id += 1
        self._tracks = survivors
        return TrackedFrame([self._face(track) for track in survivors])

    def _grow(self, track: _Track) -> float:
        """Return the growth speed of a track in pixels per frame."""
        return max(self.settings.grow_px_per_frame, track.grow_px)

    def _face(self, track: _Track) -> TrackedFace:
        """Return the face to mask for a track in this frame, updating its grid."""
        box = track.detected_box
        if track.missed:
            grow = track.missed * self._grow(track)
            box = box + np.array([-grow, -grow, grow, grow], np.float32)
        grid = anchored_grid(box, self.settings.anon_block, self.settings.cells_across,
                             track.seed, track.cell)
        track.cell = grid.cell
        return TrackedFace(track.track_id, box, SOURCES[track.missed > 0], track.score,
                           track.missed, grid)

    def _associate(self, boxes: np.ndarray) -> List[int]:
        """Return, per live track, the index of its detection in ``boxes`` or -1 (greedy)."""
        matched = [-1] * len(self._tracks)
        if not self._tracks or len(boxes) == 0:
            return matched
        previous = np.array([track.detected_box for track in self._tracks], np.float64)
        current = boxes.astype(np.float64)
        iou = box_iou(previous, current)
        offsets = ((previous[:, None, :2] + previous[:, None, 2:])
                   - (current[None, :, :2] + current[None, :, 2:])) * 0.5
        distance = np.sqrt(np.einsum('tdk,tdk->td', offsets, offsets))
        size = np.maximum((previous[:, 2:] - previous[:, :2]).max(axis=1), 1.0)
        reach = np.array([CENTRE_GATE * float(extent) + track.missed * self._grow(track)
                          * 1.4142135623730951 for extent, track in zip(size, self._tracks)])
        allowed = (iou >= IOU_MIN) | (distance <= reach[:, None])
        cost = (1.0 - iou) + distance / size[:, None]
        candidates = np.flatnonzero(allowed)
        used_tracks, used_dets = set(), set()
        for flat in candidates[np.argsort(cost.ravel()[candidates], kind='stable')].tolist():
            track_index, det = divmod(flat, len(boxes))
            if track_index in used_tracks or det in used_dets:
                continue
            matched[track_index] = det
            used_tracks.add(track_index)
            used_dets.add(det)
        return matched
