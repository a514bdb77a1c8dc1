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
import math
from pathlib import Path
import threading
import time
from typing import Any, Dict, List, Optional, Tuple, Union

import cv2
import numpy as np

from .anonymize import (anchored_grid, anonymize_depth, FaceGrid, fast_pixelate, NoiseTables,
                        private_pixelate, whole_frame_block)
from .checks import check_bgr, check_boxes, check_depth
from .detection import create_detector, Detections, device_providers, FaceDetector
from .masks import build_depth_mask, build_mask_from_boxes, face_regions
from .scale_policy import ScaledDetection
from .settings import FIELD_PARAMS, PipelineSettings
from .tracking import face_depths, FaceTracker, grow_px_from_speed, TrackedFace

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


# The seed API's default face score threshold, kept for compatibility; the node, the configs
# and PipelineSettings() use the privacy-first table default (0.3).
SEED_API_CONF_THRESH = 0.5


class _SettingView:
    """A read-only attribute of the masker that shows one field of its settings."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, masker: Optional['AVPrivacyMasker'], owner: type) -> Any:
        if masker is None:
            return self
        return getattr(masker.settings, self.name)

    def __set__(self, masker: 'AVPrivacyMasker', value: Any) -> None:
        raise AttributeError('%s is a setting: use masker.configure(%s=...) or '
                             'masker.update(settings)' % (self.name, self.name))


class AVPrivacyMasker:
    """Find faces, mask them and anonymize colour (and optionally depth) images."""

    # The seed API's attributes, read from :attr:`settings` (change them with update).
    conf_thresh = _SettingView()
    anon_block = _SettingView()
    anon_noise = _SettingView()
    dilate_kernel = _SettingView()
    enable_depth_anon = _SettingView()
    noise_mode = _SettingView()
    depth_noise_std = _SettingView()
    depth_near_margin = _SettingView()
    depth_far_margin = _SettingView()
    hold_frames = _SettingView()
    grow_px_per_frame = _SettingView()
    cells_across = _SettingView()
    epsilon = _SettingView()
    dp_pixels = _SettingView()
    walking_speed = _SettingView()
    frame_rate = _SettingView()

    def __init__(self, settings: Union[PipelineSettings, str, None] = None,
                 detector: Optional[FaceDetector] = None, *, device: Optional[str] = None,
                 verbose: bool = False, focal_px: float = 0.0, **changes: Any) -> None:
        """
        Create the detector (or use the injected ``detector``) for ``settings``.

        ``settings`` is a :class:`~av_privacy_ros.settings.PipelineSettings`; keyword
        ``changes`` (its field names) are applied on top. Without it, the seed API:
        ``AVPrivacyMasker(device='cuda', conf_thresh=0.5, anon_block=24, ...)`` (or
        ``AVPrivacyMasker('cpu')``) starts from the table's defaults except a score threshold
        of 0.5 and the providers of ``device``; ``det_size=(w, h)``, ``model_path=None``,
        ``seed=None`` and ``providers=None`` keep their seed meanings. Every value is checked
        once, against the parameter table; a bad one raises ValueError naming the parameter.

        ``det_size`` is the detector input (width, height); None follows the frame's aspect
        (640×480 for VGA). ``providers`` (short names tensorrt/cuda/cpu) overrides the
        preference derived from ``device``. ``focal_px`` is the camera's focal length in
        pixels (see :meth:`set_focal_length`).

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
        if isinstance(settings, str):  # the seed API's first positional argument
            if device is not None:
                raise TypeError('AVPrivacyMasker() got the device twice (%r and %r)'
                                % (settings, device))
            device, settings = settings, None
        if detector is not None and not callable(getattr(detector, 'detect', None)):
            raise TypeError('AVPrivacyMasker(settings, detector): the second argument must be '
                            'a face detector, got %r; pass seed settings by keyword'
                            % (detector,))
        unknown = sorted(set(changes) - set(FIELD_PARAMS) - {'det_size'})
        if unknown:
            raise TypeError('AVPrivacyMasker() got an unexpected keyword argument %r'
                            % unknown[0])
        if changes.get('providers', ()) is None:
            del changes['providers']  # the seed's None: the providers of ``device``
        if settings is None:
            settings = PipelineSettings(conf_thresh=SEED_API_CONF_THRESH)
            device = device or 'cuda'
        elif not isinstance(settings, PipelineSettings):
            raise TypeError('settings must be a PipelineSettings, got %s'
                            % type(settings).__name__)
        if device is not None and 'providers' not in changes:
            changes['providers'] = device_providers(device)
        settings = settings.replace(**changes)
        self.settings = settings
        self.focal_px = _focal_length(focal_px)
        # Per stream (rotation, carried faces); the detector itself may be shared.
        self.scaled_detection = ScaledDetection(settings.scale_policy, settings.tile_overlap,
                                                settings.tiles_per_frame)
        self.verbose = verbose
        self.warnings: List[str] = []
        if detector is None:
            detector, self.warnings = create_detector(
                backend=settings.backend, model_path=settings.model_path or None,
                providers=list(settings.providers), det_size=settings.det_size,
                trt_fp16=settings.trt_fp16, trt_cache_dir=settings.trt_cache_dir or None,
                allow_download=settings.allow_download)
            for message in self.warnings:
                LOGGER.warning(message)
        self.detector = detector
        self.rng = np.random.default_rng(settings.rng_seed)
        self._track_lock = threading.Lock()
        self.tracker = FaceTracker(settings, rng=self.rng)
        self.noise_tables = NoiseTables()
        self._stream_shape: Optional[Tuple[int, int]] = None
        self.ready = False
        if verbose:
            LOGGER.info('detector %s on %s', self.backend, self.provider)

    # -- configuration -------------------------------------------------------------------
    def update(self, settings: PipelineSettings) -> None:
        """
        Use ``settings`` from the next frame on (what the node does on a parameter change).

        The fields of read-only parameters (detector, scale policy, seed) cannot change on a
        running masker: a ValueError names them and the masker keeps its settings; create a
        new AVPrivacyMasker for those.
        """
        if not isinstance(settings, PipelineSettings):
            raise TypeError('update() takes a PipelineSettings, got %s'
                            % type(settings).__name__)
        fixed = self.settings.fixed_changes(settings)
        if fixed:
            raise ValueError('%s cannot change on a running masker (read-only: it needs a new '
                             'detector or stream); create a new AVPrivacyMasker'
                             % ', '.join(fixed))
        with self._track_lock:
            self.settings = settings
            self.tracker.settings = settings

    def configure(self, **changes: Any) -> None:
        """Apply settings by field name, e.g. ``conf_thresh=0.4``: settings.replace, update."""
        focal_px = changes.pop('focal_px', None)
        settings = self.settings.replace(**changes)
        focal = None if focal_px is None else _focal_length(focal_px)  # all checked first
        self.update(settings)
        if focal is not None:
            self.focal_px = focal

    def set_focal_length(self, focal_px: float) -> None:
        """
        Set the camera's focal length in pixels (from camera_info; 0 when unknown).

        With ``walking_speed`` > 0 and a depth image it sets how fast a held face grows.
        """
        self.focal_px = _focal_length(focal_px)

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
        return self.detector.detect(np.ascontiguousarray(bgr), self.settings.conf_thresh)

    def detect_faces(self, bgr: np.ndarray) -> np.ndarray:
        """Return the N×4 float32 face boxes (x1, y1, x2, y2) of a BGR image."""
        return self.detect(bgr).boxes

    def build_mask_from_boxes(self, shape_hw: Tuple[int, int], boxes: np.ndarray,
                              pad_ratio: Optional[float] = None,
                              oval_boxes: Optional[bool] = None) -> np.ndarray:
        """Return the padded oval (or rectangle) mask of ``boxes``, dilated (None: settings)."""
        settings = self.settings
        pad_ratio, oval_boxes = _mask_shape(settings, pad_ratio, oval_boxes)
        return build_mask_from_boxes(shape_hw, boxes, pad_ratio, oval_boxes,
                                     settings.dilate_kernel)

    def build_mask_numpy(self, depth: np.ndarray, boxes: np.ndarray,
                         pad_ratio: Optional[float] = None,
                         oval_boxes: Optional[bool] = None) -> np.ndarray:
        """Return the depth-guided mask of ``boxes`` (see masks.build_depth_mask)."""
        settings = self.settings
        pad_ratio, oval_boxes = _mask_shape(settings, pad_ratio, oval_boxes)
        return build_depth_mask(depth, boxes, pad_ratio, settings.depth_near_margin,
                                settings.depth_far_margin, settings.dilate_kernel, oval_boxes)

    def fast_pixelate(self, bgr: np.ndarray, mask: np.ndarray,
                      regions: Optional[np.ndarray] = None) -> np.ndarray:
        """Return ``bgr`` with the masked pixels replaced by a noisy mosaic (image grid)."""
        settings = self.settings
        return fast_pixelate(bgr, mask, settings.anon_block, settings.anon_noise, self.rng,
                             settings.noise_mode, regions, settings.epsilon, settings.dp_pixels)

    def private_pixelate(self, bgr: np.ndarray, mask: np.ndarray, grids: List[FaceGrid],
                         regions: np.ndarray) -> np.ndarray:
        """Return ``bgr`` with each face's masked pixels replaced by its tracked private mosaic."""
        return self._private_pixelate(self.settings, bgr, mask, grids, regions)

    def _private_pixelate(self, settings: PipelineSettings, bgr: np.ndarray, mask: np.ndarray,
                          grids: List[FaceGrid], regions: np.ndarray) -> np.ndarray:
        return private_pixelate(bgr, mask, grids, regions, settings.anon_noise,
                                settings.noise_mode, settings.epsilon, settings.dp_pixels,
                                self.rng, self.noise_tables)

    def _depth_output(self, settings: PipelineSettings, depth: Optional[np.ndarray],
                      mask: np.ndarray) -> Optional[np.ndarray]:
        """Return the depth to publish: noisy under the mask with depth noise on, else as is."""
        if depth is None or not settings.enable_depth_anon:
            return depth
        return anonymize_depth(depth, mask, settings.depth_noise_std, self.rng)

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
                use_depth_for_mask: Optional[bool] = None, pad_ratio: Optional[float] = None,
                oval_boxes: Optional[bool] = None) -> FrameResult:
        """
        Anonymize one frame; never return the original pixels.

        The mask shape comes from the settings (``mask_mode``, ``pad_ratio``) unless given
        here; one frame uses one settings object, even when :meth:`update` runs meanwhile.
        Bad input (wrong dtype, shape, channels, empty image, depth of another size) raises
        ValueError. Any failure after that (detector, mask, anonymizer) yields the frame
        anonymized over its whole area with ``failed_closed=True`` and the error. With depth
        noise off, ``result.depth`` is the input depth array itself (no copy per frame).
        """
        settings = self.settings
        if use_depth_for_mask is None:
            use_depth_for_mask = settings.use_depth_for_mask
        pad_ratio, oval_boxes = _mask_shape(settings, pad_ratio, oval_boxes)
        check_bgr(bgr)
        if depth is not None:
            depth = check_depth(depth, bgr.shape[:2])
        elif use_depth_for_mask:
            raise ValueError('depth-guided masks need a depth image')
        bgr = np.ascontiguousarray(bgr)
        times = dict.fromkeys(STAGES, 0.0)
        start = time.perf_counter()
        try:
            detections = self.scaled_detection.detect(self.detector, bgr, settings.conf_thresh,
                                                      settings.grow_px_per_frame)
            t_detect = time.perf_counter()
            tracks = self._track(settings, detections, bgr.shape[:2], depth)
            mask_boxes = (np.stack([t.box for t in tracks]).astype(np.float32) if tracks
                          else np.zeros((0, 4), np.float32))
            t_track = time.perf_counter()
            if use_depth_for_mask and depth is not None:
                mask = build_depth_mask(depth, mask_boxes, pad_ratio, settings.depth_near_margin,
                                        settings.depth_far_margin, settings.dilate_kernel,
                                        oval_boxes)
            else:
                mask = build_mask_from_boxes(bgr.shape[:2], mask_boxes, pad_ratio, oval_boxes,
                                             settings.dilate_kernel)
            regions = face_regions(mask_boxes, pad_ratio, settings.dilate_kernel,
                                   bgr.shape[:2])
            t_mask = time.perf_counter()
            image = self._private_pixelate(settings, bgr, mask, [t.grid for t in tracks],
                                           regions)
            t_anon = time.perf_counter()
            depth_out = self._depth_output(settings, depth, mask)
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

    def _track(self, settings: PipelineSettings, detections: Detections,
               shape_hw: Tuple[int, int], depth: Optional[np.ndarray]) -> List[TrackedFace]:
        """Update the tracker with this frame's detections; return the faces to mask."""
        grow = None
        focal_px = self.focal_px
        if depth is not None and len(detections) and settings.walking_speed > 0 and focal_px > 0:
            grow = grow_px_from_speed(settings.walking_speed, settings.frame_rate, focal_px,
                                      face_depths(depth, detections.boxes))
        with self._track_lock:
            if self._stream_shape != tuple(shape_hw):
                self.tracker.reset()
                self.noise_tables.clear()
                self._stream_shape = (int(shape_hw[0]), int(shape_hw[1]))
            faces = self.tracker.update(detections.boxes, detections.scores, grow).faces
            self.noise_tables.prune([face.grid.seed for face in faces])
        return faces

    def mask_extra_boxes(self, bgr: np.ndarray, result: FrameResult, extra_boxes: np.ndarray,
                         depth: Optional[np.ndarray] = None, pad_ratio: Optional[float] = None,
                         oval_boxes: Optional[bool] = None) -> FrameResult:
        """
        Return ``result`` with ``extra_boxes`` masked too (e.g. an offline backward pass).

        ``bgr`` and ``depth`` are the frame's original images. The faces already masked keep
        their mask, grid and noise; each extra box gets a face-relative grid (noise fixed for
        this frame only) and appears in ``tracks`` with id 0 and source ``'backward'``. The
        depth, when given and depth noise is on, is anonymized again under the new mask. A
        failed-closed result is returned as it is; an error yields the whole frame anonymized.
        ``pad_ratio`` and ``oval_boxes`` default to the settings' mask shape.
        """
        settings = self.settings
        pad_ratio, oval_boxes = _mask_shape(settings, pad_ratio, oval_boxes)
        check_bgr(bgr)
        extra = check_boxes(extra_boxes)
        if result.failed_closed or len(extra) == 0:
            return result
        try:
            shape = bgr.shape[:2]
            block, cells_across = settings.anon_block, settings.cells_across
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
            mask = result.mask | build_mask_from_boxes(shape, extra, pad_ratio, oval_boxes,
                                                       settings.dilate_kernel)
            regions = face_regions(boxes, pad_ratio, settings.dilate_kernel, shape)
            image = self._private_pixelate(settings, bgr, mask, grids, regions)
            depth_out = result.depth
            if depth is not None:
                depth_out = self._depth_output(settings, check_depth(depth, shape), mask)
        except Exception as exc:  # noqa: BLE001 - fail closed on any error
            LOGGER.error('frame failed closed: %s', exc)
            return self.anonymize_whole_frame(bgr, depth, error='%s: %s'
                                              % (type(exc).__name__, exc))
        return FrameResult(image, depth_out, mask, result.detections, dict(result.times),
                           tracks=tracks, mask_boxes=boxes)

    def anonymize_whole_frame(self, bgr: np.ndarray, depth: Optional[np.ndarray] = None,
                              error: Optional[str] = None) -> FrameResult:
        """Return the frame anonymized over its whole area (fail-closed output)."""
        settings = self.settings
        check_bgr(bgr)
        mask = np.ones(bgr.shape[:2], np.bool_)
        block = whole_frame_block(bgr.shape[:2], settings.anon_block)
        noise = max(settings.anon_noise, 1)
        image = fast_pixelate(bgr, mask, block, noise, self.rng, 'cell')
        depth_out = None
        if depth is not None:
            depth = check_depth(depth, bgr.shape[:2])
            depth_out = anonymize_depth(depth, mask, max(settings.depth_noise_std, 0.05),
                                        self.rng)
        return FrameResult(image, depth_out, mask, Detections.empty(), {}, True, error)

    def process_arrays(self, bgr: np.ndarray, depth: Optional[np.ndarray] = None,
                       use_depth_for_mask: Optional[bool] = None,
                       pad_ratio: Optional[float] = None, oval_boxes: Optional[bool] = None
                       ) -> Tuple[np.ndarray, Optional[np.ndarray], np.ndarray, np.ndarray,
                                  Dict[str, float]]:
        """
        Return (anonymized BGR image, depth, bool mask, N×4 boxes, stage seconds).

        The first element keeps the seed's name ``rgb_anon`` but is BGR, like the input. The
        mask arguments default to the settings (oval masks padded by 0.25 by default).
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


def _focal_length(focal_px: Any) -> float:
    """Return a focal length in pixels as a float; raise ValueError unless finite and >= 0."""
    try:
        value = float(focal_px)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError('the focal length must be a finite number of pixels >= 0, got %r'
                         % (focal_px,))
    return value


def _mask_shape(settings: PipelineSettings, pad_ratio: Optional[float],
                oval_boxes: Optional[bool]) -> Tuple[float, bool]:
    """Return (pad ratio, oval) from the arguments, None taking the settings' mask shape."""
    return (settings.pad_ratio if pad_ratio is None else pad_ratio,
            settings.oval_boxes if oval_boxes is None else oval_boxes)
