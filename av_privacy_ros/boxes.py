"""
Box and timing helpers shared by the core, the node and the tools (pure numpy, no ROS).

Boxes are N×4 arrays of ``x1, y1, x2, y2`` in pixels; an empty set is a 0×4 array.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np


def as_boxes(boxes: object) -> np.ndarray:
    """Return ``boxes`` as a float64 N×4 array (a single box becomes 1×4)."""
    return np.asarray(boxes, np.float64).reshape(-1, 4)


def box_areas(boxes: np.ndarray) -> np.ndarray:
    """Return the area of each box; boxes with x2 < x1 or y2 < y1 have area 0."""
    boxes = as_boxes(boxes)
    return (np.clip(boxes[:, 2] - boxes[:, 0], 0, None)
            * np.clip(boxes[:, 3] - boxes[:, 1], 0, None))


def box_iou(first: object, second: object) -> np.ndarray:
    """Return the len(first)×len(second) intersection-over-union matrix (0 where both empty)."""
    a, b = as_boxes(first), as_boxes(second)
    low = np.maximum(a[:, None, :2], b[None, :, :2])
    high = np.minimum(a[:, None, 2:], b[None, :, 2:])
    sides = np.clip(high - low, 0.0, None)
    inter = sides[:, :, 0] * sides[:, :, 1]
    union = box_areas(a)[:, None] + box_areas(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def grow_boxes(boxes: object, fraction: float) -> np.ndarray:
    """Return boxes grown on every side by ``fraction`` of their own width and height."""
    grown = as_boxes(boxes).copy()
    size = grown[:, 2:] - grown[:, :2]
    grown[:, :2] -= size * fraction
    grown[:, 2:] += size * fraction
    return grown


def percentile_ms(samples: Sequence[float], q: float) -> Optional[float]:
    """Return the q-th percentile of durations given in seconds, in milliseconds (None: empty)."""
    if len(samples) == 0:
        return None
    return float(np.percentile(np.asarray(samples, np.float64), q)) * 1000.0
