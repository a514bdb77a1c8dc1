"""Mosaic plus bounded noise on masked pixels, and depth noise under the mask."""

from __future__ import annotations

from typing import Optional, Tuple

import cv2
import numpy as np

from .checks import check_bgr, check_depth, check_mask

NOISE_MODES = ('cell', 'pixel')


def masked_region(mask: np.ndarray) -> Optional[Tuple[int, int, int, int]]:
    """Return (y0, y1, x0, x1) bounding the True pixels of ``mask``, or None if there are none."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def cell_means(region: np.ndarray, block: int) -> np.ndarray:
    """
    Return the float32 mean of each ``block``×``block`` cell of ``region``.

    Cells cut by the region's bottom or right edge average the pixels they hold (the region is
    extended by replicating its edge, which leaves those partial-cell means unchanged in spirit
    and costs one small copy only when the edge is not on the grid).
    """
    height, width = region.shape[:2]
    rows, cols = -(-height // block), -(-width // block)
    if rows * block != height or cols * block != width:
        region = cv2.copyMakeBorder(region, 0, rows * block - height, 0, cols * block - width,
                                    cv2.BORDER_REPLICATE)
    # INTER_AREA with an integer factor is the exact mean of each cell.
    return cv2.resize(region, (cols, rows), interpolation=cv2.INTER_AREA).astype(np.float32)


def fast_pixelate(bgr: np.ndarray, mask: np.ndarray, block: int = 24, noise: int = 20,
                  rng: Optional[np.random.Generator] = None, noise_mode: str = 'cell',
                  regions: Optional[np.ndarray] = None) -> np.ndarray:
    """
    Return a copy of ``bgr`` whose masked pixels show a mosaic plus bounded noise.

    The mosaic grid is aligned to the image origin and computed only where the mask is: over
    ``regions`` (int N×4 x0, y0, x1, y1 that together hold every masked pixel, see
    masks.face_regions) or else over the mask's bounding box. Masked pixels take their cell's
    mean plus noise in ``[-noise, noise]`` (clipped to 0..255); pixels outside the mask are
    byte-identical to the input, which is not modified. ``noise_mode='cell'`` draws one offset
    per cell and channel, which averaging inside a cell cannot remove; ``'pixel'`` draws one
    per pixel (the seed project's behaviour).
    """
    check_bgr(bgr)
    mask = check_mask(mask, bgr.shape[:2])
    if block < 1:
        raise ValueError('mosaic block must be >= 1 pixel, got %r' % block)
    if noise < 0 or noise > 255:
        raise ValueError('noise must be within 0..255, got %r' % noise)
    if noise_mode not in NOISE_MODES:
        raise ValueError('noise_mode must be one of %s, got %r'
                         % (', '.join(NOISE_MODES), noise_mode))
    out = bgr.copy()
    regions = _covering_regions(mask, regions)
    if len(regions) == 0:
        return out
    rng = rng if rng is not None else np.random.default_rng()
    mask_u8 = mask.view(np.uint8)
    height, width = bgr.shape[:2]
    for rx0, ry0, rx1, ry1 in regions:
        # Snap outwards to the image-aligned grid so cells are the same in every frame.
        x0, y0 = (int(rx0) // block) * block, (int(ry0) // block) * block
        x1 = min(width, -(-int(rx1) // block) * block)
        y1 = min(height, -(-int(ry1) // block) * block)
        if x1 <= x0 or y1 <= y0:
            continue
        region_mask = mask_u8[y0:y1, x0:x1]
        mosaic = _mosaic(bgr[y0:y1, x0:x1], region_mask, block, noise, rng, noise_mode)
        cv2.copyTo(mosaic, region_mask, out[y0:y1, x0:x1])
    return out


def _covering_regions(mask: np.ndarray, regions: Optional[np.ndarray]) -> np.ndarray:
    """
    Return regions that hold every masked pixel: ``regions`` plus whatever they miss.

    A caller's regions that leave a masked pixel outside would leave it unanonymized, so the
    remainder's bounding box is added (privacy over speed).
    """
    if regions is None:
        remainder = mask
        regions = np.zeros((0, 4), np.int64)
    else:
        regions = np.asarray(regions, np.int64).reshape(-1, 4)
        remainder = mask.copy()
        for x0, y0, x1, y1 in regions:
            remainder[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = False
    bounds = masked_region(remainder)
    if bounds is None:
        return regions
    extra = np.array([[bounds[2], bounds[0], bounds[3], bounds[1]]], np.int64)
    return np.concatenate([regions, extra])


def _mosaic(region: np.ndarray, region_mask: np.ndarray, block: int, noise: int,
            rng: np.random.Generator, noise_mode: str) -> np.ndarray:
    """Return the noisy mosaic of one grid-aligned region."""
    means = cell_means(region, block)
    if noise > 0 and noise_mode == 'cell':
        means += rng.integers(-noise, noise + 1, size=means.shape, dtype=np.int16)
    cells = np.clip(np.rint(means), 0, 255).astype(np.uint8)
    rows, cols = cells.shape[:2]
    mosaic = cv2.resize(cells, (cols * block, rows * block),
                        interpolation=cv2.INTER_NEAREST)[:region.shape[0], :region.shape[1]]
    if noise > 0 and noise_mode == 'pixel':
        inside = region_mask.view(np.bool_)
        noisy = mosaic[inside].astype(np.int16)
        noisy += rng.integers(-noise, noise + 1, size=noisy.shape, dtype=np.int16)
        mosaic[inside] = np.clip(noisy, 0, 255).astype(np.uint8)
    return mosaic


def whole_frame_block(shape_hw: Tuple[int, int], block: int) -> int:
    """
    Return the cell size used when a whole frame is anonymized (fail-closed output).

    At least 1/16 of the long side, so a face that fills the frame still shows only a few cells.
    """
    return max(int(block), max(int(shape_hw[0]), int(shape_hw[1])) // 16)


def anonymize_depth(depth: np.ndarray, mask: np.ndarray, std_m: float,
                    rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """
    Return a copy of ``depth`` with Gaussian noise (``std_m`` metres) under the mask.

    The dtype is kept (uint16 millimetres or float32 metres); invalid pixels (0, NaN, inf) stay
    invalid and valid uint16 pixels stay valid (clipped to 1..65535).
    """
    check_depth(depth)
    mask = check_mask(mask, depth.shape[:2])
    if std_m < 0:
        raise ValueError('depth noise std must be >= 0, got %r' % std_m)
    out = depth.copy()
    bounds = masked_region(mask)
    if bounds is None or std_m == 0:
        return out
    rng = rng if rng is not None else np.random.default_rng()
    y0, y1, x0, x1 = bounds
    region = out[y0:y1, x0:x1]
    if depth.dtype == np.uint16:
        target = mask[y0:y1, x0:x1] & (region > 0)
        values = region[target].astype(np.float32)
        values += rng.normal(0.0, std_m * 1000.0, size=values.shape).astype(np.float32)
        region[target] = np.clip(np.rint(values), 1, 65535).astype(np.uint16)
    else:
        target = mask[y0:y1, x0:x1] & np.isfinite(region) & (region > 0)
        values = region[target]
        noisy = values + rng.normal(0.0, std_m, size=values.shape).astype(np.float32)
        region[target] = np.maximum(noisy, np.float32(1e-3))
    return out
