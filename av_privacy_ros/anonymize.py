"""Mosaic plus bounded noise on masked pixels, and depth noise under the mask."""

from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Dict, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from .checks import check_bgr, check_depth, check_mask
from .params import NOISE_MODES

DEFAULT_EPSILON = 0.5
DEFAULT_DP_PIXELS = 16
DEFAULT_CELLS_ACROSS = 6


def masked_region(mask: np.ndarray) -> Optional[Tuple[int, int, int, int]]:
    """Return (y0, y1, x0, x1) bounding the True pixels of ``mask``, or None if there are none."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def fast_pixelate(bgr: np.ndarray, mask: np.ndarray, block: int = 24, noise: int = 20,
                  rng: Optional[np.random.Generator] = None, noise_mode: str = 'cell',
                  regions: Optional[np.ndarray] = None, epsilon: float = DEFAULT_EPSILON,
                  dp_pixels: int = DEFAULT_DP_PIXELS) -> np.ndarray:
    """
    Return a copy of ``bgr`` whose masked pixels show a mosaic plus bounded noise.

    The mosaic grid is aligned to the image origin and computed only where the mask is: over
    ``regions`` (int N×4 x0, y0, x1, y1 that together hold every masked pixel, see
    masks.face_regions) or else over the mask's bounding box. Masked pixels take their cell's
    mean plus noise in ``[-noise, noise]`` (clipped to 0..255); pixels outside the mask are
    byte-identical to the input, which is not modified. ``noise_mode='cell'`` draws one offset
    per cell and channel, which averaging inside a cell cannot remove; ``'pixel'`` draws one
    per pixel (the seed project's behaviour); ``'laplace'`` adds Laplace noise calibrated by
    ``epsilon`` and ``dp_pixels`` to the cell means (see :func:`laplace_scale`; ``noise`` is
    then unused). The noise here is fresh at every call: for video use
    :func:`private_pixelate` with per-track grids, whose noise persists across frames.
    """
    if block < 1:
        raise ValueError('mosaic block must be >= 1 pixel, got %r' % block)
    if regions is None:
        mask = check_mask(mask, check_bgr(bgr).shape[:2])
        bounds = masked_region(mask)
        regions = (np.zeros((0, 4), np.int64) if bounds is None
                   else np.array([[bounds[2], bounds[0], bounds[3], bounds[1]]], np.int64))
    regions = np.asarray(regions, np.int64).reshape(-1, 4)
    # An image-aligned grid (origin 0, 0) without a seed: the same cells in every frame,
    # fresh noise at every call. private_pixelate checks the rest of the input and mosaics
    # any masked pixel the regions miss.
    grids = [FaceGrid(0, 0, int(block))] * len(regions)
    return private_pixelate(bgr, mask, grids, regions, noise, noise_mode, epsilon, dp_pixels,
                            rng)


# -- private mosaic: face-relative cells, grids anchored to tracks, persistent noise --------


@dataclass(frozen=True)
class FaceGrid:
    """
    The mosaic grid of one face: a cell corner (x, y), the cell size, the noise seed.

    Cell (row i, column j) covers ``[x + j·cell, x + (j+1)·cell) × [y + i·cell, ...)``. With
    a ``seed`` the noise of cell (i, j) is a fixed function of (seed, i, j, channel), so it is
    the same in every frame that uses this grid; without one it is drawn fresh.
    """

    x: int
    y: int
    cell: int
    seed: Optional[int] = None


def face_cell_size(face_width: float, block: int, cells_across: int) -> int:
    """
    Return the mosaic cell size of a face ``face_width`` pixels wide.

    At least ``block`` pixels, and large enough that the face never shows more than
    ``cells_across`` cells across on a grid from :func:`anchored_grid` (which centres the grid
    on the face to within half a pixel, hence the one pixel of slack). ``cells_across`` 0
    turns face-relative cells off (cells are ``block`` pixels).
    """
    block = max(1, int(block))
    if cells_across <= 0 or not math.isfinite(face_width) or face_width <= 0:
        return block
    return max(block, int(math.ceil((float(face_width) + 1.0) / int(cells_across))))


def anchored_grid(box: Union[Sequence[float], np.ndarray], block: int, cells_across: int,
                  seed: Optional[int] = None, previous_cell: Optional[int] = None,
                  hysteresis: float = 1.25) -> FaceGrid:
    """
    Return the grid of a face box: centred on the box, cells from :func:`face_cell_size`.

    The grid follows the box, so a face moving across the image is sampled at the same
    positions relative to itself in every frame. With an even ``cells_across`` the box centre
    falls on a cell corner, with an odd one on a cell centre; either way a face at most
    ``(cells_across·cell − 1)`` pixels wide touches at most ``cells_across`` cells across.
    ``previous_cell`` (the track's cell in the frame before) is kept while it is no smaller
    than needed and at most ``hysteresis`` times that, so a face's cells do not change size
    with every small change of its box; a cell that is too small is never kept, and one that
    has to grow grows by 10 % more than needed, so an approaching face keeps its cells for a
    few frames.
    """
    x1, y1, x2, y2 = float(box[0]), float(box[1]), float(box[2]), float(box[3])
    cell = face_cell_size(x2 - x1, block, cells_across)
    if previous_cell is not None:
        previous_cell = int(previous_cell)
        if cell <= previous_cell <= hysteresis * cell:
            cell = previous_cell
        elif cell > previous_cell and cells_across > 0:
            cell = int(math.ceil(cell * 1.1))
    centre_x, centre_y = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    if cells_across > 0 and cells_across % 2 == 1:
        centre_x -= cell / 2.0
        centre_y -= cell / 2.0
    return FaceGrid(int(math.floor(centre_x + 0.5)), int(math.floor(centre_y + 0.5)), cell,
                    seed)


def laplace_scale(cell_pixels: float, epsilon: float, dp_pixels: int) -> float:
    """
    Return the Laplace scale of a cell mean, as in DP-Pix (Fan 2018): 255·m / (b²·ε).

    ``cell_pixels`` is b² (the pixels averaged in the cell), ``dp_pixels`` is m (how many
    pixels two neighbouring images may differ in). Each colour channel is treated as its own
    release (see the README on what this does and does not guarantee).
    """
    if epsilon <= 0 or not math.isfinite(epsilon):
        raise ValueError('epsilon must be a positive number, got %r' % epsilon)
    if dp_pixels < 1:
        raise ValueError('dp_pixels must be >= 1, got %r' % dp_pixels)
    return 255.0 * float(dp_pixels) / (float(cell_pixels) * float(epsilon))


_MIX1 = np.uint32(0x7FEB352D)
_MIX2 = np.uint32(0x846CA68B)
_SHIFT15 = np.uint32(15)
_SHIFT16 = np.uint32(16)


def _mix32(values: np.ndarray) -> np.ndarray:
    """Return a well-mixed 32-bit hash of a uint32 array (lowbias32 finaliser)."""
    values = values ^ (values >> _SHIFT16)
    values = values * _MIX1
    values = values ^ (values >> _SHIFT15)
    values = values * _MIX2
    return values ^ (values >> _SHIFT16)


def _as_u32(values: np.ndarray) -> np.ndarray:
    return (np.asarray(values, np.int64) % (1 << 32)).astype(np.uint32)


def hashed_uniform(seed: int, rows: np.ndarray, cols: np.ndarray,
                   channels: int = 3) -> np.ndarray:
    """
    Return uniform numbers in (0, 1), one per (row, column, channel), fixed by ``seed``.

    The value of cell (i, j, c) depends only on (seed, i, j, c), so any window of the same
    grid gives the same numbers for the same cells, whatever the window.
    """
    seed_hash = _mix32(_as_u32(np.array([seed])) + np.uint32(0x9E3779B9))
    row_hash = _mix32(_as_u32(rows) ^ seed_hash)
    cell_hash = _mix32((row_hash[:, None] + np.uint32(0x85EBCA6B)) ^ _as_u32(cols)[None, :])
    channel = _as_u32(np.arange(channels)) * np.uint32(0xC2B2AE35)
    values = _mix32(cell_hash[:, :, None] ^ channel[None, None, :])
    return ((values >> np.uint32(8)).astype(np.float64) + 0.5) / float(1 << 24)


def _standard_laplace(uniform: np.ndarray) -> np.ndarray:
    """Return standard Laplace samples (scale 1) from uniform numbers in (0, 1)."""
    centred = uniform - 0.5
    return -np.sign(centred) * np.log1p(-2.0 * np.abs(centred))


class NoiseTables:
    """
    Cache of the persistent noise of each track: uniform and Laplace values per grid cell.

    The values come from :func:`hashed_uniform`, so a cached table that grows keeps the values
    it had. Call :meth:`prune` with the seeds still in use to forget ended tracks.
    """

    def __init__(self) -> None:
        """Create an empty cache."""
        self._tables: Dict[int, Tuple[int, np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        """Return the number of cached tracks."""
        return len(self._tables)

    def window(self, seed: int, i0: int, i1: int, j0: int, j1: int
               ) -> Tuple[np.ndarray, np.ndarray]:
        """Return (uniform, standard Laplace) values of cells rows i0..i1-1, cols j0..j1-1."""
        need = max(-i0, i1, -j0, j1, 1)
        entry = self._tables.get(seed)
        if entry is None or entry[0] < need:
            half = max(need, 16, 2 * entry[0] if entry else 0)
            index = np.arange(-half, half)
            uniform = hashed_uniform(seed, index, index)
            entry = (half, uniform, _standard_laplace(uniform))
            self._tables[seed] = entry
        half, uniform, laplace = entry
        return (uniform[i0 + half:i1 + half, j0 + half:j1 + half],
                laplace[i0 + half:i1 + half, j0 + half:j1 + half])

    def prune(self, seeds: Sequence[Optional[int]]) -> None:
        """Forget the tables of every seed not in ``seeds``."""
        keep = {seed for seed in seeds if seed is not None}
        for seed in [seed for seed in self._tables if seed not in keep]:
            del self._tables[seed]

    def clear(self) -> None:
        """Forget every table."""
        self._tables.clear()


def private_pixelate(bgr: np.ndarray, mask: np.ndarray, grids: Sequence[FaceGrid],
                     regions: np.ndarray, noise: int = 20, noise_mode: str = 'cell',
                     epsilon: float = DEFAULT_EPSILON, dp_pixels: int = DEFAULT_DP_PIXELS,
                     rng: Optional[np.random.Generator] = None,
                     tables: Optional[NoiseTables] = None) -> np.ndarray:
    """
    Return a copy of ``bgr`` whose masked pixels show a private mosaic.

    Face k's masked pixels inside ``regions[k]`` (int x0, y0, x1, y1, see masks.face_regions)
    take the values of the cells of ``grids[k]``: the exact mean of the cell's pixels in the
    image, plus noise on that mean. Noise modes: ``'cell'`` adds a bounded offset in
    ``[-noise, noise]`` per cell and channel, ``'laplace'`` adds Laplace noise of scale
    :func:`laplace_scale` (b² being the cell's pixels inside the image), ``'pixel'`` adds
    fresh per-pixel noise (weak; the seed project's behaviour). For a grid with a seed, the
    cell and Laplace noise are fixed per (seed, cell): averaging frames of a still face
    converges to the noisy values, not to the true means. Faces are written from the finest
    grid to the coarsest, so where regions overlap the coarser mosaic wins. Masked pixels
    outside every region get a mosaic with the coarsest cell and fresh noise. Pixels outside
    the mask are byte-identical to the input, which is not modified.
    """
    check_bgr(bgr)
    mask = check_mask(mask, bgr.shape[:2])
    # The settings' bounds are checked once, in settings.PipelineSettings; what is checked
    # here is what this function cannot run without.
    if noise_mode not in NOISE_MODES:
        raise ValueError('noise_mode must be one of %s, got %r'
                         % (', '.join(NOISE_MODES), noise_mode))
    if noise_mode == 'laplace':
        laplace_scale(1.0, epsilon, dp_pixels)  # validates epsilon and dp_pixels
    regions = np.asarray(regions, np.int64).reshape(-1, 4)
    if len(regions) != len(grids):
        raise ValueError('private_pixelate needs one grid per region, got %d grids for %d '
                         'regions' % (len(grids), len(regions)))
    out = bgr.copy()
    rng = rng if rng is not None else np.random.default_rng()
    mask_u8 = mask.view(np.uint8)
    order = sorted(range(len(grids)), key=lambda k: grids[k].cell)
    for k in order:
        _grid_mosaic(bgr, mask_u8, out, regions[k], grids[k], noise, noise_mode, epsilon,
                     dp_pixels, rng, tables)
    # Masked pixels no region holds (none when regions come from masks.face_regions of the
    # mask's boxes) get the coarsest cells; only those pixels are written.
    remainder = mask.copy()
    for x0, y0, x1, y1 in regions:
        remainder[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = False
    bounds = masked_region(remainder)
    if bounds is not None:
        # Without any face grid, cells as coarse as a whole-frame (fail-closed) mosaic.
        coarsest = max([grid.cell for grid in grids] or [whole_frame_block(bgr.shape[:2], 1)])
        extra = np.array([bounds[2], bounds[0], bounds[3], bounds[1]], np.int64)
        _grid_mosaic(bgr, remainder.view(np.uint8), out, extra, FaceGrid(0, 0, coarsest),
                     noise, noise_mode, epsilon, dp_pixels, rng, None)
    return out


def _cell_counts(start: int, cell: int, count: int, limit: int) -> np.ndarray:
    """Return how many pixels of each of ``count`` cells from ``start`` lie in [0, limit)."""
    edges = start + cell * np.arange(count + 1)
    return np.clip(np.minimum(edges[1:], limit) - np.maximum(edges[:-1], 0), 0, None)


def _grid_mosaic(bgr: np.ndarray, mask_u8: np.ndarray, out: np.ndarray, region: np.ndarray,
                 grid: FaceGrid, noise: int, noise_mode: str, epsilon: float, dp_pixels: int,
                 rng: np.random.Generator, tables: Optional[NoiseTables]) -> None:
    """Write the noisy mosaic of ``grid`` on the masked pixels of ``region`` in ``out``."""
    height, width = bgr.shape[:2]
    rx0, ry0 = max(0, int(region[0])), max(0, int(region[1]))
    rx1, ry1 = min(width, int(region[2])), min(height, int(region[3]))
    if rx1 <= rx0 or ry1 <= ry0:
        return
    cell = int(grid.cell)
    if cell < 1:
        raise ValueError('mosaic cell must be >= 1 pixel, got %r' % cell)
    j0, j1 = (rx0 - grid.x) // cell, -((grid.x - rx1) // cell)
    i0, i1 = (ry0 - grid.y) // cell, -((grid.y - ry1) // cell)
    gx0, gy0 = grid.x + j0 * cell, grid.y + i0 * cell
    gx1, gy1 = grid.x + j1 * cell, grid.y + i1 * cell
    sx0, sy0, sx1, sy1 = max(0, gx0), max(0, gy0), min(width, gx1), min(height, gy1)
    rows, cols = i1 - i0, j1 - j0
    source = bgr[sy0:sy1, sx0:sx1]
    counts: Optional[np.ndarray] = None
    inside = (sx0, sy0, sx1, sy1) == (gx0, gy0, gx1, gy1)
    if inside or noise_mode != 'laplace':
        if not inside:
            # Cells cut by the image border average the pixels they hold with the border
            # replicated (cheap; their mean leans towards the edge pixels).
            source = cv2.copyMakeBorder(source, sy0 - gy0, gy1 - sy1, sx0 - gx0, gx1 - sx1,
                                        cv2.BORDER_REPLICATE)
        # INTER_AREA with an integer factor is the exact mean of each cell.
        means = cv2.resize(source, (cols, rows), interpolation=cv2.INTER_AREA)
        means = means.astype(np.float32)
    else:
        # Laplace noise is calibrated on the pixel count of each cell: cells cut by the image
        # border get exact means over the pixels they hold, and more noise.
        padded = cv2.copyMakeBorder(source.astype(np.float32), sy0 - gy0, gy1 - sy1,
                                    sx0 - gx0, gx1 - sx1, cv2.BORDER_CONSTANT, value=0)
        counts = np.outer(_cell_counts(gy0, cell, rows, height),
                          _cell_counts(gx0, cell, cols, width)).astype(np.float32)
        means = cv2.resize(padded, (cols, rows), interpolation=cv2.INTER_AREA)
        means = means.reshape(rows, cols, 3) * (float(cell * cell) / np.maximum(counts, 1))[
            :, :, None]
    means = means.reshape(rows, cols, 3)
    tables = tables if tables is not None else NoiseTables()
    if noise_mode == 'laplace':
        if grid.seed is not None:
            laplace = tables.window(grid.seed, i0, i1, j0, j1)[1]
        else:
            laplace = rng.laplace(0.0, 1.0, size=means.shape)
        if counts is None:
            scale = laplace_scale(cell * cell, epsilon, dp_pixels)
            means += (laplace * scale).astype(np.float32)
        else:
            scale = 255.0 * float(dp_pixels) / (float(epsilon) * np.maximum(counts, 1.0))
            means += (laplace * scale[:, :, None]).astype(np.float32)
    elif noise_mode == 'cell' and noise > 0:
        if grid.seed is not None:
            uniform = tables.window(grid.seed, i0, i1, j0, j1)[0]
            means += (np.floor(uniform * (2 * noise + 1)) - noise).astype(np.float32)
        else:
            means += rng.integers(-noise, noise + 1, size=means.shape, dtype=np.int16)
    cells = np.clip(np.rint(means), 0, 255).astype(np.uint8)
    mosaic = cv2.resize(cells, (cols * cell, rows * cell), interpolation=cv2.INTER_NEAREST)
    mosaic = mosaic[ry0 - gy0:ry1 - gy0, rx0 - gx0:rx1 - gx0]
    region_mask = mask_u8[ry0:ry1, rx0:rx1]
    if noise_mode == 'pixel' and noise > 0:
        masked = region_mask.view(np.bool_)
        noisy = mosaic[masked].astype(np.int16)
        noisy += rng.integers(-noise, noise + 1, size=noisy.shape, dtype=np.int16)
        mosaic[masked] = np.clip(noisy, 0, 255).astype(np.uint8)
    cv2.copyTo(mosaic, region_mask, out[ry0:ry1, rx0:rx1])


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
