"""Face boxes to masks: padded ovals or rectangles, depth-guided masks, dilation."""

from __future__ import annotations

from typing import Optional, Tuple

import cv2
import numpy as np

from .checks import check_boxes, check_depth, depth_in_metres


def pad_boxes(boxes: np.ndarray, pad_ratio: float, shape_hw: Tuple[int, int],
              clip: bool = True) -> np.ndarray:
    """
    Grow each box by ``pad_ratio`` × its size on every side and clip it to the image.

    Shapes are drawn from unclipped boxes (``clip=False``): an oval fitted to the clipped box
    of a face cut by the frame edge would leave the face's visible corner uncovered.
    """
    boxes = check_boxes(boxes)
    if pad_ratio < 0:
        raise ValueError('pad_ratio must be >= 0, got %r' % pad_ratio)
    height, width = shape_hw
    sizes = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], axis=1)
    pad = np.abs(sizes) * np.float32(pad_ratio)
    padded = boxes.copy()
    padded[:, 0:2] -= pad
    padded[:, 2:4] += pad
    if not clip:
        return padded
    padded[:, [0, 2]] = np.clip(padded[:, [0, 2]], 0, width)
    padded[:, [1, 3]] = np.clip(padded[:, [1, 3]], 0, height)
    return padded


def _draw_box(canvas: np.ndarray, box: np.ndarray, oval: bool, dilate_kernel: int = 0) -> None:
    """
    Draw a filled oval or rectangle; ``dilate_kernel`` > 1 draws it dilated.

    Dilating a filled convex shape with a disc adds its outline drawn with the disc's
    diameter: a thick outline gives that in one drawing call, without a morphology pass
    (the result holds every pixel cv2.dilate with the elliptical kernel would set, plus at
    most a one-pixel rim).
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    if x2 <= x1 or y2 <= y1:
        return
    thicknesses = [-1]
    if dilate_kernel > 1:
        thicknesses.append(2 * (int(dilate_kernel) // 2) + 1)
    if oval:
        centre = (int(round((x1 + x2) / 2)), int(round((y1 + y2) / 2)))
        axes = (max(1, int(np.ceil((x2 - x1) / 2))), max(1, int(np.ceil((y2 - y1) / 2))))
        for thickness in thicknesses:
            cv2.ellipse(canvas, centre, axes, 0, 0, 360, 255, thickness=thickness)
    else:
        for thickness in thicknesses:
            cv2.rectangle(canvas, (int(np.floor(x1)), int(np.floor(y1))),
                          (int(np.ceil(x2)) - 1, int(np.ceil(y2)) - 1), 255,
                          thickness=thickness)


def _kernel(size: int) -> Optional[np.ndarray]:
    if size <= 1:
        return None
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (int(size), int(size)))


def face_regions(boxes: np.ndarray, pad_ratio: float, dilate_kernel: int,
                 shape_hw: Tuple[int, int]) -> np.ndarray:
    """
    Return int N×4 (x0, y0, x1, y1) regions holding each face's padded, dilated mask.

    Masks and mosaics are computed over these regions only, not over the whole frame.
    """
    height, width = int(shape_hw[0]), int(shape_hw[1])
    padded = pad_boxes(boxes, pad_ratio, (height, width))
    # Two pixels more than the kernel's radius on each side, and one more on the far side:
    # ovals are drawn around a rounded centre with rounded-up axes and a thick outline.
    reach = (int(dilate_kernel) // 2 if dilate_kernel > 1 else 0) + 2
    regions = np.empty((len(padded), 4), np.int32)
    regions[:, 0] = np.clip(np.floor(padded[:, 0]) - reach, 0, width)
    regions[:, 1] = np.clip(np.floor(padded[:, 1]) - reach, 0, height)
    regions[:, 2] = np.clip(np.ceil(padded[:, 2]) + reach + 2, 0, width)
    regions[:, 3] = np.clip(np.ceil(padded[:, 3]) + reach + 2, 0, height)
    return regions


def dilate(mask_u8: np.ndarray, dilate_kernel: int,
           regions: Optional[np.ndarray] = None) -> np.ndarray:
    """
    Dilate a 0/255 mask with an elliptical kernel, only over ``regions`` (x0, y0, x1, y1).

    Without ``regions`` the bounding box of the mask is used. Each region must include the
    kernel's reach around the pixels it dilates (see face_regions).
    """
    kernel = _kernel(dilate_kernel)
    if kernel is None:
        return mask_u8
    if regions is None:
        rows = np.flatnonzero(mask_u8.any(axis=1))
        if rows.size == 0:
            return mask_u8
        cols = np.flatnonzero(mask_u8.any(axis=0))
        reach = int(dilate_kernel) // 2 + 1
        regions = np.array([[max(0, cols[0] - reach), max(0, rows[0] - reach),
                             cols[-1] + reach + 1, rows[-1] + reach + 1]])
    source = mask_u8.copy() if len(regions) > 1 else mask_u8
    for x0, y0, x1, y1 in regions:
        if x1 <= x0 or y1 <= y0:
            continue
        grown = cv2.dilate(source[y0:y1, x0:x1], kernel)
        np.maximum(mask_u8[y0:y1, x0:x1], grown, out=mask_u8[y0:y1, x0:x1])
    return mask_u8


def build_mask_from_boxes(shape_hw: Tuple[int, int], boxes: np.ndarray, pad_ratio: float = 0.25,
                          oval: bool = True, dilate_kernel: int = 13) -> np.ndarray:
    """Return a bool H×W mask covering every padded box (filled oval or rectangle), dilated."""
    height, width = int(shape_hw[0]), int(shape_hw[1])
    if height <= 0 or width <= 0:
        raise ValueError('mask size must be positive, got %s' % (shape_hw,))
    canvas = np.zeros((height, width), np.uint8)
    for box in pad_boxes(boxes, pad_ratio, (height, width), clip=False):
        _draw_box(canvas, box, oval, dilate_kernel)
    return canvas > 0


def build_depth_mask(depth: np.ndarray, boxes: np.ndarray, pad_ratio: float = 0.25,
                     near_margin: float = 0.4, far_margin: float = 0.4,
                     dilate_kernel: int = 13, oval: bool = True,
                     min_valid_fraction: float = 0.2,
                     core_fraction: float = 0.6) -> np.ndarray:
    """
    Return a depth-guided bool mask: face pixels within a depth band around each face.

    Per face, a robust face depth is the median of the valid pixels in the central
    ``core_fraction`` of its box. Inside the padded box, pixels whose depth lies within
    ``[face - near_margin, face + far_margin]`` metres are kept, as are pixels without valid depth
    inside the padded oval (they may be hair or skin the sensor missed). The face box itself
    (oval or rectangle) is always kept, so a face is never uncovered; a face with less than
    ``min_valid_fraction`` valid depth in its core falls back to its padded box mask. Holes are
    filled and the result dilated. Depth is uint16 millimetres or float32 metres; 0, NaN and
    inf are invalid.
    """
    depth = check_depth(depth)
    boxes = check_boxes(boxes)
    height, width = depth.shape
    canvas = np.zeros((height, width), np.uint8)
    if len(boxes) == 0:
        return canvas > 0
    metres = depth_in_metres(depth)
    fallback = np.zeros_like(canvas)  # drawn already dilated, like build_mask_from_boxes
    padded = pad_boxes(boxes, pad_ratio, (height, width))
    padded_shapes = pad_boxes(boxes, pad_ratio, (height, width), clip=False)
    inner = pad_boxes(boxes, 0.0, (height, width))
    for box, pbox, shape in zip(inner, padded, padded_shapes):
        x1, y1, x2, y2 = (int(np.floor(box[0])), int(np.floor(box[1])),
                          int(np.ceil(box[2])), int(np.ceil(box[3])))
        px1, py1, px2, py2 = (int(np.floor(pbox[0])), int(np.floor(pbox[1])),
                              int(np.ceil(pbox[2])), int(np.ceil(pbox[3])))
        if x2 <= x1 or y2 <= y1 or px2 <= px1 or py2 <= py1:
            continue
        bw, bh = x2 - x1, y2 - y1
        mx, my = int(bw * (1 - core_fraction) / 2), int(bh * (1 - core_fraction) / 2)
        core = metres[y1 + my:max(y1 + my + 1, y2 - my), x1 + mx:max(x1 + mx + 1, x2 - mx)]
        valid = core[np.isfinite(core)]
        if valid.size < max(1, min_valid_fraction * core.size):
            # Not enough depth to trust: the padded box protects the face.
            _draw_box(fallback, shape, oval, dilate_kernel)
            continue
        face_depth = float(np.median(valid))
        region = metres[py1:py2, px1:px2]
        with np.errstate(invalid='ignore'):
            in_band = (region >= face_depth - near_margin) & (region <= face_depth + far_margin)
        origin = np.array([px1, py1, px1, py1], np.float32)
        local = np.zeros((py2 - py1, px2 - px1), np.uint8)
        shape_local = np.zeros_like(local)
        _draw_box(shape_local, shape - origin, oval)
        local[in_band] = 255
        local[~np.isfinite(region) & (shape_local > 0)] = 255
        # The face itself is always kept, drawn from its unclipped box.
        _draw_box(local, pad_boxes(box[None], 0.0, (height, width), clip=False)[0] - origin,
                  oval)
        local = _fill_holes(local)
        np.maximum(canvas[py1:py2, px1:px2], local, out=canvas[py1:py2, px1:px2])
    regions = face_regions(boxes, pad_ratio, dilate_kernel, (height, width))
    dilate(canvas, dilate_kernel, regions)
    np.maximum(canvas, fallback, out=canvas)
    return canvas > 0


def _fill_holes(mask_u8: np.ndarray) -> np.ndarray:
    """Fill enclosed holes of a 0/255 mask (e.g. eyes or glasses with no depth)."""
    contours, _ = cv2.findContours(mask_u8, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(mask_u8)
    cv2.drawContours(filled, contours, -1, 255, thickness=-1)
    return filled
