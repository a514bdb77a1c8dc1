"""
AVPrivacyMasker: the seed project's API over detection, masks and anonymization.

Fail-closed: when detection or anonymization raises, the returned image is anonymized over its
whole area and the result says so; the caller never gets the original pixels back.

One masker instance represents one camera stream: it holds faces the detector misses for a few
frames (tracking.FaceTracker) and keeps each face's mosaic noise fixed while the face is
tracked. Call :meth:`AVPrivacyMasker.reset_tracking` before unrelated images or another stream
(a change of frame size resets it on its own), or set ``hold_frames=0``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import logging
from pathlib import Path
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from .anonymize import (anchored_grid, anonymize_depth, DEFAULT_CELLS_ACROSS,
                        DEFAULT_DP_PIXELS, DEFAULT_EPSILON, FaceGrid, fast_pixelate,
                        NoiseTables, private_pixelate, whole_frame_block)
from .checks import check_bgr, check_boxes, check_depth
from .detection import create_detector, Detections, device_providers, FaceDetector
from .masks import build_depth_mask, build_mask_from_boxes, face_regions
from .params import NOISE_MODES
from .scale_policy import (DEFAULT_SCALE_POLICY, DEFAULT_TILE_OVERLAP, DEFAULT_TILES_PER_FRAME,
                           ScaledDetection)
from .tracking import (DEFAULT_GROW_PX_PER_FRAME, DEFAULT_HOLD_FRAMES, face_depths,
                       FaceTracker, grow_px_from_speed, TrackedFace)

LOGGER = logging.getLogger('av_privacy_ros.masker')

STAGES = ('detect', 'track', 'mask', 'anonymize', 'depth', 'total')


@dataclass
class FrameResult:
    """
    One processed frame: anonymized image/depth, mask, faces, stage times in seconds.

    ``detections`` (and ``boxes``) are this frame's raw detections; ``tracks`` are the faces
    that were masked (detected ones and ones held after a missed detection) with their track
    ids, and ``mask_boxes`` their boxes.
    """

    image: np.ndarray
    depth: Optional[np.ndarray]
    mask: np.ndarray
    detections: Detections
    times: Dict[str, float] = field(default_factory=dict)
    failed_closed: bool = False
    error: Optional[str] = None
    tracks: List[TrackedFace] = field(default_factory=list)
    mask_boxes: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        """Fill ``mask_boxes`` from the tracks (from the detections when there are none)."""
        if self.mask_boxes is None:
            if self.tracks:
                self.mask_boxes = np.stack([t.box for t in self.tracks]).astype(np.float32)
            else:
                self.mask_boxes = self.detections.boxes.copy()

    @property
    def boxes(self) -> np.ndarray:
        """Return the N×4 float32 boxes detected in this frame (see mask_boxes, tracks)."""
        return self.detections.boxes

    @property
    def held_count(self) -> int:
        """Return how many masked faces were held rather than detected in this frame."""
        return sum(1 for track in self.tracks if track.source == 'held')


def _is_int(value: Any) -> bool:
    """Return True for integers (and floats without a fraction), not for booleans."""
    if isinstance(value, (bool, np.bool_)):
        return False
    try:
        return float(value) == int(value)
    except (TypeError, ValueError, OverflowError):
        return False


class AVPrivacyMasker:
    """Find faces, mask them and anonymize colour (and optionally depth) images."""

    # The live settings: :meth:`configure` validates them and sets them as given (a numpy
    # number stays one), so the pipeline converts each where it uses it.
    conf_thresh: float
    anon_block: int
    anon_noise: int
    dilate_kernel: int
    enable_depth_anon: bool
    noise_mode: str
    depth_noise_std: float
    depth_near_margin: float
    depth_far_margin: float
    hold_frames: int
    grow_px_per_frame: float
    cells_across: int
    epsilon: float
    dp_pixels: int
    walking_speed: float
    frame_rate: float
    focal_px: float

    def __init__(self, device: str = 'cuda', conf_thresh: float = 0.5, anon_block: int = 24,
                 anon_noise: int = 20, dilate_kernel: int = 13,
                 det_size: Optional[Tuple[int, int]] = None, verbose: bool = False,
                 enable_depth_anon: bool = False, backend: str = 'auto',
                 model_path: Optional[Union[str, Path]] = None,
                 providers: Optional[Sequence[str]] = None, seed: Optional[int] = None,
                 noise_mode: str = 'cell', depth_noise_std: float = 0.05,
                 depth_near_margin: float = 0.4, depth_far_margin: float = 0.4,
                 trt_fp16: bool = True, trt_cache_dir: Optional[str] = None,
                 allow_download: bool = False,
                 detector: Optional[FaceDetector] = None,
                 hold_frames: int = DEFAULT_HOLD_FRAMES,
                 grow_px_per_frame: float = DEFAULT_GROW_PX_PER_FRAME,
                 cells_across: int = DEFAULT_CELLS_ACROSS, epsilon: float = DEFAULT_EPSILON,
                 dp_pixels: int = DEFAULT_DP_PIXELS, walking_speed: float = 0.0,
                 frame_rate: float = 30.0, focal_px: float = 0.0,
                 scale_policy: str = DEFAULT_SCALE_POLICY,
                 tile_overlap: int = DEFAULT_TILE_OVERLAP,
                 tiles_per_frame: int = DEFAULT_TILES_PER_FRAME) -> None:
        """
        Create the detector (or use the injected ``detector``) and set the parameters.

        ``det_size`` is the detector input (width, height); None follows the frame's aspect
        (640×480 for VGA). The seed's ``(640, 640)`` is still accepted. ``providers`` (short
        names tensorrt/cuda/cpu) overrides the preference derived from ``device``.

        Temporal hold: a face the detector misses stays masked for ``hold_frames`` frames, its
        box growing by ``grow_px_per_frame`` pixels per frame on every side; with
        ``walking_speed`` (m/s) > 0, ``focal_px`` > 0 and a depth image, a face at depth d grows
        by at least ``walking_speed / frame_rate · focal_px / d``. Private mosaic: cells are at
        least ``anon_block`` pixels and large enough that a face shows at most
        ``cells_across`` cells across (0: fixed ``anon_block`` cells); the grid follows each
        tracked face and its noise stays fixed while the face is tracked. ``noise_mode``
        ``'laplace'`` uses Laplace noise calibrated by ``epsilon`` and ``dp_pixels``.

        Detection scale (see scale_policy): ``scale_policy`` ``'auto'`` adds native-resolution
        tiles (``tiles_per_frame`` per frame, overlapping by ``tile_overlap`` pixels) to the
        detector pass on frames larger than the detector input; ``'fixed'`` does not.
        """
        # Per stream (rotation, carried faces); the detector itself may be shared.
        self.scaled_detection = ScaledDetection(scale_policy, tile_overlap, tiles_per_frame)
        self.verbose = verbose
        self.warnings: List[str] = []
        if detector is None:
            preference = list(providers) if providers else list(device_providers(device))
            detector, self.warnings = create_detector(
                backend=backend, model_path=model_path, providers=preference,
                det_size=det_size, trt_fp16=trt_fp16, trt_cache_dir=trt_cache_dir,
                allow_download=allow_download)
            for message in self.warnings:
                LOGGER.warning(message)
        self.detector = detector
        self.rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self._track_lock = threading.Lock()
        self.tracker = FaceTracker(rng=self.rng)
        self.noise_tables = NoiseTables()
        self._stream_shape: Optional[Tuple[int, int]] = None
        self.ready = False
        self.configure(conf_thresh=conf_thresh, anon_block=anon_block, anon_noise=anon_noise,
                       dilate_kernel=dilate_kernel, enable_depth_anon=enable_depth_anon,
                       noise_mode=noise_mode, depth_noise_std=depth_noise_std,
                       depth_near_margin=depth_near_margin, depth_far_margin=depth_far_margin,
                       hold_frames=hold_frames, grow_px_per_frame=grow_px_per_frame,
                       cells_across=cells_across, epsilon=epsilon, dp_pixels=dp_pixels,
                       walking_speed=walking_speed, frame_rate=frame_rate, focal_px=focal_px)
        if verbose:
            LOGGER.info('detector %s on %s', self.backend, self.provider)

    # -- configuration -------------------------------------------------------------------
    def configure(self, **settings: Any) -> None:
        """Validate and apply settings that may change while frames are processed."""
        checks = {
            'conf_thresh': lambda v: 0.0 < float(v) < 1.0,
            'anon_block': lambda v: int(v) >= 1,
            'anon_noise': lambda v: 0 <= int(v) <= 255,
            'dilate_kernel': lambda v: int(v) >= 0,
            'enable_depth_anon': lambda v: isinstance(v, (bool, np.bool_)),
            'noise_mode': lambda v: v in NOISE_MODES,
            'depth_noise_std': lambda v: float(v) >= 0.0,
            'depth_near_margin': lambda v: float(v) >= 0.0,
            'depth_far_margin': lambda v: float(v) >= 0.0,
            'hold_frames': lambda v: _is_int(v) and int(v) >= 0,
            'grow_px_per_frame': lambda v: 0.0 <= float(v) < 1e6,
            'cells_across': lambda v: _is_int(v) and int(v) >= 0,
            'epsilon': lambda v: 0.0 < float(v) < float('inf'),
            'dp_pixels': lambda v: _is_int(v) and int(v) >= 1,
            'walking_speed': lambda v: 0.0 <= float(v) < 1e3,
            'frame_rate': lambda v: 0.0 < float(v) < 1e6,
            'focal_px': lambda v: 0.0 <= float(v) < 1e7,
        }
        for name, value in settings.items():
            check = checks.get(name)
            if check is None:
                raise ValueError('unknown setting %r' % name)
            if not check(value):
                raise ValueError('invalid value %r for %s' % (value, name))
        tracker_keys = ('hold_frames', 'grow_px_per_frame', 'cells_across')
        tracker_settings = {key: settings[key] for key in tracker_keys if key in settings}
        if 'anon_block' in settings:
            tracker_settings['block'] = int(settings['anon_block'])
        with self._lock:
            for name, value in settings.items():
                setattr(self, name, value)
            if tracker_settings:
                with self._track_lock:
                    self.tracker.configure(**tracker_settings)

    def reset_tracking(self) -> None:
        """
        Forget every tracked face (and its mosaic noise) before unrelated images or a new stream.

        A masker instance represents one stream: without a reset, faces of the previous frame
        that are not detected again stay masked for ``hold_frames`` frames.
        """
        with self._track_lock:
            self.tracker.reset()
            self.noise_tables.clear()
            self.scaled_detection.reset()

    @property
    def backend(self) -> str:
        """Return the detector backend in use (scrfd or centerface)."""
        return str(getattr(self.detector, 'backend', type(self.detector).__name__))

    @property
    def provider(self) -> str:
        """Return the onnxruntime execution provider the detector runs on."""
        return str(getattr(self.detector, 'provider', 'unknown'))

    # -- seed API ---------------------------------------------------------------------------
    def detect(self, bgr: np.ndarray) -> Detections:
        """Return the faces in a BGR image at the current confidence threshold."""
        check_bgr(bgr)
        return self.detector.detect(np.ascontiguousarray(bgr), float(self.conf_thresh))

    def detect_faces(self, bgr: np.ndarray) -> np.ndarray:
        """Return the N×4 float32 face boxes (x1, y1, x2, y2) of a BGR image."""
        return self.detect(bgr).boxes

    def build_mask_from_boxes(self, shape_hw: Tuple[int, int], boxes: np.ndarray,
                              pad_ratio: float = 0.25, oval_boxes: bool = True) -> np.ndarray:
        """Return the padded oval (or rectangle) mask of ``boxes``, dilated."""
        return build_mask_from_boxes(shape_hw, boxes, pad_ratio, oval_boxes,
                                     int(self.dilate_kernel))

    def build_mask_numpy(self, depth: np.ndarray, boxes: np.ndarray,
                         pad_ratio: float = 0.25, oval_boxes: bool = True) -> np.ndarray:
        """Return the depth-guided mask of ``boxes`` (see masks.build_depth_mask)."""
        return build_depth_mask(depth, boxes, pad_ratio, float(self.depth_near_margin),
                                float(self.depth_far_margin), int(self.dilate_kernel),
                                oval_boxes)

    def fast_pixelate(self, bgr: np.ndarray, mask: np.ndarray,
                      regions: Optional[np.ndarray] = None) -> np.ndarray:
        """Return ``bgr`` with the masked pixels replaced by a noisy mosaic (image grid)."""
        return fast_pixelate(bgr, mask, int(self.anon_block), int(self.anon_noise), self.rng,
                             str(self.noise_mode), regions, float(self.epsilon),
                             int(self.dp_pixels))

    def private_pixelate(self, bgr: np.ndarray, mask: np.ndarray, grids: List[FaceGrid],
                         regions: np.ndarray) -> np.ndarray:
        """Return ``bgr`` with each face's masked pixels replaced by its tracked private mosaic."""
        return private_pixelate(bgr, mask, grids, regions, int(self.anon_noise),
                                str(self.noise_mode), float(self.epsilon), int(self.dp_pixels),
                                self.rng, self.noise_tables)

    def warmup(self, width: int = 640, height: int = 480) -> float:
        """
        Run one detection on a synthetic frame so the first real frame is not slow.

        Returns the seconds it took (a first TensorRT engine build can take minutes).
        """
        start = time.perf_counter()
        frame = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
        self.detector.detect(frame, 0.5)
        self.ready = True
        return time.perf_counter() - start

    def process(self, bgr: np.ndarray, depth: Optional[np.ndarray] = None,
                use_depth_for_mask: bool = False, pad_ratio: float = 0.25,
                oval_boxes: bool = True) -> FrameResult:
        """
        Anonymize one frame; never return the original pixels.

        Bad input (wrong dtype, shape, channels, empty image, depth of another size) raises
        ValueError. Any failure after that (detector, mask, anonymizer) yields the frame
        anonymized over its whole area with ``failed_closed=True`` and the error. With depth
        noise off, ``result.depth`` is the input depth array itself (no copy per frame).
        """
        check_bgr(bgr)
        if depth is not None:
            depth = check_depth(depth, bgr.shape[:2])
        elif use_depth_for_mask:
            raise ValueError('depth-guided masks need a depth image')
        bgr = np.ascontiguousarray(bgr)
        times = dict.fromkeys(STAGES, 0.0)
        start = time.perf_counter()
        try:
            detections = self.scaled_detection.detect(self.detector, bgr,
                                                      float(self.conf_thresh),
                                                      float(self.grow_px_per_frame))
            t_detect = time.perf_counter()
            tracks = self._track(detections, bgr.shape[:2], depth)
            mask_boxes = (np.stack([t.box for t in tracks]).astype(np.float32) if tracks
                          else np.zeros((0, 4), np.float32))
            t_track = time.perf_counter()
            if use_depth_for_mask and depth is not None:
                mask = self.build_mask_numpy(depth, mask_boxes, pad_ratio, oval_boxes)
            else:
                mask = self.build_mask_from_boxes(bgr.shape[:2], mask_boxes, pad_ratio,
                                                  oval_boxes)
            regions = face_regions(mask_boxes, pad_ratio, int(self.dilate_kernel),
                                   bgr.shape[:2])
            t_mask = time.perf_counter()
            image = self.private_pixelate(bgr, mask, [t.grid for t in tracks], regions)
            t_anon = time.perf_counter()
            depth_out = depth
            if depth is not None:
                depth_out = (anonymize_depth(depth, mask, float(self.depth_noise_std), self.rng)
                             if self.enable_depth_anon else depth)
            t_depth = time.perf_counter()
        except Exception as exc:  # noqa: BLE001 - fail closed on any pipeline error
            LOGGER.error('frame failed closed: %s', exc)
            result = self.anonymize_whole_frame(bgr, depth, error='%s: %s'
                                                % (type(exc).__name__, exc))
            result.times['total'] = time.perf_counter() - start
            return result
        times.update(detect=t_detect - start, track=t_track - t_detect, mask=t_mask - t_track,
                     anonymize=t_anon - t_mask, depth=t_depth - t_anon, total=t_depth - start)
        return FrameResult(image, depth_out, mask, detections, times, tracks=tracks,
                           mask_boxes=mask_boxes)

    def _track(self, detections: Detections, shape_hw: Tuple[int, int],
               depth: Optional[np.ndarray]) -> List[TrackedFace]:
        """Update the tracker with this frame's detections; return the faces to mask."""
        grow = None
        if (depth is not None and len(detections) and float(self.walking_speed) > 0
                and float(self.focal_px) > 0):
            grow = grow_px_from_speed(float(self.walking_speed), float(self.frame_rate),
                                      float(self.focal_px), face_depths(depth, detections.boxes))
        with self._track_lock:
            if self._stream_shape != tuple(shape_hw):
                self.tracker.reset()
                self.noise_tables.clear()
                self._stream_shape = (int(shape_hw[0]), int(shape_hw[1]))
            faces = self.tracker.update(detections.boxes, detections.scores, grow).faces
            self.noise_tables.prune([face.grid.seed for face in faces])
        return faces

    def mask_extra_boxes(self, bgr: np.ndarray, result: FrameResult, extra_boxes: np.ndarray,
                         depth: Optional[np.ndarray] = None, pad_ratio: float = 0.25,
                         oval_boxes: bool = True) -> FrameResult:
        """
        Return ``result`` with ``extra_boxes`` masked too (e.g. an offline backward pass).

        ``bgr`` and ``depth`` are the frame's original images. The faces already masked keep
        their mask, grid and noise; each extra box gets a face-relative grid (noise fixed for
        this frame only) and appears in ``tracks`` with id 0 and source ``'backward'``. The
        depth, when given and depth noise is on, is anonymized again under the new mask. A
        failed-closed result is returned as it is; an error yields the whole frame anonymized.
        """
        check_bgr(bgr)
        extra = check_boxes(extra_boxes)
        if result.failed_closed or len(extra) == 0:
            return result
        try:
            shape = bgr.shape[:2]
            block, cells_across = int(self.anon_block), int(self.cells_across)
            added = [TrackedFace(0, box.copy(), 'backward', 0.0, 0,
                                 anchored_grid(box, block, cells_across,
                                               int(self.rng.integers(0, 1 << 32,
                                                                     dtype=np.uint64))))
                     for box in extra]
            tracks = list(result.tracks) + added
            boxes = np.concatenate([np.asarray(result.mask_boxes, np.float32).reshape(-1, 4),
                                    extra])
            grids = [t.grid for t in result.tracks]
            if len(grids) != len(boxes) - len(extra):  # a result without tracks
                grids = [anchored_grid(box, block, cells_across)
                         for box in boxes[:len(boxes) - len(extra)]]
            grids += [t.grid for t in added]
            mask = result.mask | self.build_mask_from_boxes(shape, extra, pad_ratio, oval_boxes)
            regions = face_regions(boxes, pad_ratio, int(self.dilate_kernel), shape)
            image = self.private_pixelate(bgr, mask, grids, regions)
            depth_out = result.depth
            if depth is not None:
                depth = check_depth(depth, shape)
                depth_out = (anonymize_depth(depth, mask, float(self.depth_noise_std), self.rng)
                             if self.enable_depth_anon else depth)
        except Exception as exc:  # noqa: BLE001 - fail closed on any error
            LOGGER.error('frame failed closed: %s', exc)
            return self.anonymize_whole_frame(bgr, depth, error='%s: %s'
                                              % (type(exc).__name__, exc))
        return FrameResult(image, depth_out, mask, result.detections, dict(result.times),
                           tracks=tracks, mask_boxes=boxes)

    def anonymize_whole_frame(self, bgr: np.ndarray, depth: Optional[np.ndarray] = None,
                              error: Optional[str] = None) -> FrameResult:
        """Return the frame anonymized over its whole area (fail-closed output)."""
        check_bgr(bgr)
        mask = np.ones(bgr.shape[:2], np.bool_)
        block = whole_frame_block(bgr.shape[:2], int(self.anon_block))
        noise = max(int(self.anon_noise), 1)
        image = fast_pixelate(bgr, mask, block, noise, self.rng, 'cell')
        depth_out = None
        if depth is not None:
            depth = check_depth(depth, bgr.shape[:2])
            depth_out = anonymize_depth(depth, mask, max(float(self.depth_noise_std), 0.05),
                                        self.rng)
        return FrameResult(image, depth_out, mask, Detections.empty(), {}, True, error)

    def process_arrays(self, bgr: np.ndarray, depth: Optional[np.ndarray] = None,
                       use_depth_for_mask: bool = False, pad_ratio: float = 0.25,
                       oval_boxes: bool = True
                       ) -> Tuple[np.ndarray, Optional[np.ndarray], np.ndarray, np.ndarray,
                                  Dict[str, float]]:
        """
        Return (anonymized BGR image, depth, bool mask, N×4 boxes, stage seconds).

        The first element keeps the seed's name ``rgb_anon`` but is BGR, like the input.
        """
        result = self.process(bgr, depth, use_depth_for_mask, pad_ratio, oval_boxes)
        return result.image, result.depth, result.mask, result.boxes, result.times

    def process_paths(self, image_path: Union[str, Path],
                      depth_path: Optional[Union[str, Path]] = None,
                      **kwargs: Any) -> Tuple[np.ndarray, Optional[np.ndarray], np.ndarray,
                                              np.ndarray, Dict[str, float]]:
        """Read an image (and a 16-bit PNG or float TIFF depth) from disk and process them."""
        bgr = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError('cannot read image %s' % image_path)
        depth = None
        if depth_path is not None:
            depth = cv2.imread(str(depth_path), cv2.IMREAD_UNCHANGED)
            if depth is None:
                raise ValueError('cannot read depth image %s' % depth_path)
        return self.process_arrays(bgr, depth, **kwargs)
