"""Input checks shared by the pipeline modules: bad input raises ValueError with a clear reason."""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np


def check_bgr(bgr: object, name: str = 'image') -> np.ndarray:
    """Return ``bgr`` if it is a non-empty H×W×3 uint8 array, else raise ValueError."""
    if not isinstance(bgr, np.ndarray):
        raise ValueError('%s must be a numpy array, got %s' % (name, type(bgr).__name__))
    if bgr.ndim != 3 or bgr.shape[2] != 3:
        raise ValueError('%s must be H×W×3 (BGR), got shape %s' % (name, bgr.shape))
    if bgr.shape[0] == 0 or bgr.shape[1] == 0:
        raise ValueError('%s is empty (shape %s)' % (name, bgr.shape))
    if bgr.dtype != np.uint8:
        raise ValueError('%s must be uint8, got %s' % (name, bgr.dtype))
    return bgr


def check_depth(depth: object, shape_hw: Optional[Tuple[int, int]] = None,
                name: str = 'depth') -> np.ndarray:
    """Return ``depth`` if it is H×W uint16 (mm) or float32 (m) matching ``shape_hw``."""
    if not isinstance(depth, np.ndarray):
        raise ValueError('%s must be a numpy array, got %s' % (name, type(depth).__name__))
    if depth.ndim == 3 and depth.shape[2] == 1:
        depth = depth[:, :, 0]
    if depth.ndim != 2:
        raise ValueError('%s must be H×W, got shape %s' % (name, depth.shape))
    if depth.shape[0] == 0 or depth.shape[1] == 0:
        raise ValueError('%s is empty (shape %s)' % (name, depth.shape))
    if depth.dtype not in (np.uint16, np.float32):
        raise ValueError('%s must be uint16 millimetres or float32 metres, got %s'
                         % (name, depth.dtype))
    if shape_hw is not None and tuple(depth.shape[:2]) != tuple(shape_hw):
        raise ValueError('%s is %dx%d but the colour image is %dx%d; align depth to colour '
                         '(e.g. RealSense align_depth.enable:=true)'
                         % (name, depth.shape[1], depth.shape[0], shape_hw[1], shape_hw[0]))
    return depth


def check_mask(mask: object, shape_hw: Tuple[int, int], name: str = 'mask') -> np.ndarray:
    """Return ``mask`` as a bool H×W array of the given size, else raise ValueError."""
    if not isinstance(mask, np.ndarray):
        raise ValueError('%s must be a numpy array, got %s' % (name, type(mask).__name__))
    if mask.shape != tuple(shape_hw):
        raise ValueError('%s has shape %s but the image is %s'
                         % (name, mask.shape, tuple(shape_hw)))
    if mask.dtype != np.bool_:
        return mask != 0
    return mask


def check_boxes(boxes: object) -> np.ndarray:
    """Return ``boxes`` as a float32 N×4 array, else raise ValueError."""
    array = np.asarray(boxes, dtype=np.float32)
    if array.size == 0:
        return np.zeros((0, 4), np.float32)
    if array.ndim != 2 or array.shape[1] < 4:
        raise ValueError('boxes must be N×4 (x1, y1, x2, y2), got shape %s' % (array.shape,))
    array = array[:, :4]
    if not np.all(np.isfinite(array)):
        raise ValueError('boxes contain NaN or infinite coordinates')
    return array


def depth_in_metres(depth: np.ndarray) -> np.ndarray:
    """Return depth as float32 metres with invalid pixels (0, NaN, inf) set to NaN."""
    if depth.dtype == np.uint16:
        metres = depth.astype(np.float32) * np.float32(0.001)
        metres[depth == 0] = np.nan
        return metres
    metres = depth.astype(np.float32, copy=True)
    metres[~np.isfinite(metres) | (metres <= 0)] = np.nan
    return metres
