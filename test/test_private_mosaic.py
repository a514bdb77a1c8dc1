"""
Private mosaic: face-relative cells, grids that follow the face, noise that does not average out.

Real images throughout (the insightface group photo; faces found by the real SCRFD detector
where a test needs detections).
"""

from __future__ import annotations

from typing import Dict, List, Sequence

from av_privacy_ros import AVPrivacyMasker
from av_privacy_ros.anonymize import (anchored_grid, face_cell_size, FaceGrid, fast_pixelate,
                                      laplace_scale, NoiseTables, private_pixelate)
from av_privacy_ros.masks import build_mask_from_boxes, face_regions
from av_privacy_ros.tracking import FaceTracker
import cv2
import numpy as np
import pytest


def cells_in_row(row: np.ndarray) -> int:
    """Return how many runs of one colour a row of BGR pixels shows (mosaic cells crossed)."""
    if len(row) == 0:
        return 0
    return 1 + int(np.count_nonzero(np.any(row[1:] != row[:-1], axis=1)))


def grid_cells(grid: FaceGrid, mask: np.ndarray, region: Sequence[int]) -> List[tuple]:
    """Return (y0, y1, x0, x1) of the grid's cells lying wholly inside the region and mask."""
    rx0, ry0, rx1, ry1 = (int(v) for v in region)
    cell = grid.cell
    cells = []
    for y0 in range(grid.y + -(-(ry0 - grid.y) // cell) * cell, ry1 - cell + 1, cell):
        for x0 in range(grid.x + -(-(rx0 - grid.x) // cell) * cell, rx1 - cell + 1, cell):
            if mask[y0:y0 + cell, x0:x0 + cell].all():
                cells.append((y0, y0 + cell, x0, x0 + cell))
    return cells


def test_near_face_shows_at_most_cells_across_cells(scrfd, t1_full):
    """A face 300 px wide shows no more than cells_across cells across; 24 px cells show 13."""
    crop = t1_full[200:480, 400:640]  # one face of the group photo, 109 px wide
    near = cv2.resize(crop, None, fx=2.8, fy=2.8, interpolation=cv2.INTER_CUBIC)
    for cells_across in (6, 5):
        masker = AVPrivacyMasker(detector=scrfd, seed=0, cells_across=cells_across)
        result = masker.process(near)
        assert len(result.tracks) == 1
        x1, y1, x2, y2 = result.tracks[0].box
        assert x2 - x1 >= 290, 'the face should be about 300 px wide, got %.0f' % (x2 - x1)
        left, right = int(np.ceil(x1)), int(np.floor(x2))
        rows = np.linspace(y1 + 5, y2 - 5, 9).astype(int)
        counts = [cells_in_row(result.image[row, left:right]) for row in rows]
        assert max(counts) <= cells_across, counts
        assert result.tracks[0].grid.cell >= 24
    plain = fast_pixelate(near, result.mask, 24, 20, np.random.default_rng(0), 'cell')
    assert cells_in_row(plain[int((y1 + y2) / 2), left:right]) >= 12


def test_cell_size_bound_holds_for_any_width_and_position():
    """For any face width and sub-pixel position the face touches ≤ cells_across cells."""
    rng = np.random.default_rng(0)
    for cells_across in (1, 2, 3, 5, 6, 8):
        for width in np.concatenate([rng.uniform(5, 600, 300), [23.0, 24.0, 143.0, 144.0]]):
            x1 = rng.uniform(0, 1000)
            box = [x1, 50.0, x1 + width, 50.0 + 1.3 * width]
            grid = anchored_grid(box, 24, cells_across)
            first = (np.floor(x1) - grid.x) // grid.cell
            last = (np.ceil(x1 + width) - 1 - grid.x) // grid.cell
            assert last - first + 1 <= max(cells_across, 1) or grid.cell == 24 and width < 24
            assert grid.cell >= 24
            assert grid.cell == face_cell_size(box[2] - box[0], 24, cells_across)
    assert face_cell_size(300, 24, 0) == 24  # 0 turns face-relative cells off
    # A face walking up to the camera and back: the bound holds in every frame while the
    # track's cells change size only now and then.
    widths = np.concatenate([np.linspace(60, 420, 90), np.linspace(420, 60, 90)])
    cells, previous = [], None
    for width in widths:
        grid = anchored_grid([100.0, 100.0, 100.0 + width, 100.0 + width], 24, 6, 1, previous)
        assert (np.ceil(100.0 + width) - 1 - grid.x) // grid.cell - (100 - grid.x) // grid.cell < 6
        previous = grid.cell
        cells.append(grid.cell)
    assert np.count_nonzero(np.diff(cells)) < len(widths) / 6


def test_grid_follows_the_face(t1_full):
    """A face that moves is sampled at the same places: its mosaic moves with it unchanged."""
    box = np.array([[463.5, 266.5, 572.7, 415.4]], np.float32)  # a face of the photo
    shape = t1_full.shape[:2]
    shift = (7, 5)
    moved_photo = cv2.warpAffine(t1_full, np.float32([[1, 0, shift[0]], [0, 1, shift[1]]]),
                                 (shape[1], shape[0]), borderMode=cv2.BORDER_REPLICATE)
    moved_box = box + np.float32([shift[0], shift[1], shift[0], shift[1]])
    tracker = FaceTracker(seed=3)
    tables = NoiseTables()
    outputs, masks, plain = [], [], []
    for photo, boxes in ((t1_full, box), (moved_photo, moved_box)):
        grids = tracker.update(boxes).grids
        mask = build_mask_from_boxes(shape, boxes)
        regions = face_regions(boxes, 0.25, 13, shape)
        outputs.append(private_pixelate(photo, mask, grids, regions, 20, 'cell',
                                        rng=np.random.default_rng(), tables=tables))
        plain.append(fast_pixelate(photo, mask, 24, 0, None, 'cell', regions))
        masks.append(mask)
    both = masks[0][:-shift[1], :-shift[0]] & masks[1][shift[1]:, shift[0]:]
    same = outputs[1][shift[1]:, shift[0]:][both] == outputs[0][:-shift[1], :-shift[0]][both]
    assert same.all(), 'the anchored mosaic (noise included) should move with the face'
    fixed = plain[1][shift[1]:, shift[0]:][both] == plain[0][:-shift[1], :-shift[0]][both]
    assert fixed.all(axis=1).mean() < 0.5, 'an image-aligned grid resamples a moving face'


def test_averaging_frames_of_a_still_face(scrfd, t1_full):
    """
    Averaging N = 1, 5, 30 frames: persistent noise keeps its error, fresh noise loses it.

    The error is the mean |averaged cell value − true cell mean| over the cells that lie
    wholly under the mask; fresh per-frame noise (the same grid, no seed) averages away.
    """
    errors: Dict[str, List[float]] = {}
    for mode in ('cell', 'laplace'):
        masker = AVPrivacyMasker(detector=scrfd, seed=0, noise_mode=mode, epsilon=1.0)
        first = masker.process(t1_full)
        grids = [t.grid for t in first.tracks]
        regions = face_regions(first.mask_boxes, 0.25, 13, t1_full.shape[:2])
        cells = [c for grid, region in zip(grids, regions)
                 for c in grid_cells(grid, first.mask, region)]
        assert len(cells) > 30
        true = np.array([t1_full[y0:y1, x0:x1].reshape(-1, 3).mean(axis=0)
                         for y0, y1, x0, x1 in cells])
        corners = tuple(np.array([(y0, x0) for y0, y1, x0, x1 in cells]).T)
        persistent, seeds = [first.image[corners]], set()
        for _ in range(29):
            result = masker.process(t1_full)
            seeds.update(t.grid.seed for t in result.tracks)
            persistent.append(result.image[corners])
        assert seeds == {g.seed for g in grids}  # one noise seed per face, all along
        fresh_grids = [FaceGrid(g.x, g.y, g.cell) for g in grids]
        rng = np.random.default_rng(1)
        fresh = [private_pixelate(t1_full, first.mask, fresh_grids, regions, 20, mode, 1.0,
                                  rng=rng)[corners] for _ in range(30)]
        for name, shown in (('persistent ' + mode, persistent), ('fresh ' + mode, fresh)):
            values = np.array(shown, np.float64)  # frames × cells × channels
            errors[name] = [float(np.abs(values[:n].mean(axis=0) - true).mean())
                            for n in (1, 5, 30)]
    table = '; '.join('%s: %s' % (name, ', '.join('%.2f' % e for e in errs))
                      for name, errs in errors.items())
    print('mean |error| of averaged cells for N = 1, 5, 30 frames:', table)
    for mode in ('cell', 'laplace'):
        persistent, fresh = errors['persistent ' + mode], errors['fresh ' + mode]
        assert persistent[0] > 5.0, table  # the noise is there in one frame
        assert min(persistent[1:]) >= 0.95 * persistent[0], table  # and does not average out
        assert fresh[1] < 0.6 * fresh[0] and fresh[2] < 0.3 * fresh[0], table


def test_laplace_noise_scale_matches_dp_pix_formula(t1_full):
    """Cell means carry Laplace noise of scale 255·m/(b²·ε); border cells 255·m/(n·ε)."""
    # A real image pressed into mid-range so that clipping at 0 and 255 is negligible.
    image = (t1_full // 2 + 64).astype(np.uint8)
    height, width = image.shape[:2]
    mask = np.ones((height, width), bool)
    region = np.array([[0, 0, width, height]])
    tables = NoiseTables()
    for block, epsilon in ((24, 1.2), (48, 0.3)):
        expected = laplace_scale(block * block, epsilon, 16)
        assert expected == pytest.approx(255.0 * 16 / (block * block * epsilon))
        inner, edge = [], []
        for seed in range(1, 7):
            # Origin half a cell in: the first column holds half cells (b²/2 pixels).
            grid = FaceGrid(block // 2, 0, block, seed)
            out = private_pixelate(image, mask, [grid], region, 0, 'laplace', epsilon, 16,
                                   tables=tables)
            for y0 in range(0, height - block + 1, block):
                true = image[y0:y0 + block, 0:block // 2].reshape(-1, 3).mean(axis=0)
                edge.append(out[y0, 0] - true)
                for x0 in range(block // 2, width - block + 1, block):
                    true = image[y0:y0 + block, x0:x0 + block].reshape(-1, 3).mean(axis=0)
                    inner.append(out[y0, x0] - true)
        inner_abs = np.abs(np.concatenate(inner))
        edge_abs = np.abs(np.concatenate(edge))
        # Maximum-likelihood Laplace scale: the mean absolute deviation.
        assert inner_abs.mean() == pytest.approx(expected, rel=0.08)
        assert edge_abs.mean() == pytest.approx(2 * expected, rel=0.15)
        # Laplace tails: P(|x| > 3 s) = e^-3 ≈ 0.050 (a Gaussian of the same mean |x|: 0.017).
        assert 0.035 < np.mean(inner_abs > 3 * expected) < 0.065


def test_outside_unchanged_inside_replaced_overlaps_coarsest(t1_full):
    """Pixels outside the mask stay; inside, each cell shows one value; overlaps keep big cells."""
    shape = t1_full.shape[:2]
    near = np.array([300.0, 200.0, 600.0, 560.0])  # 300 px wide: cells of 51 px
    small = np.array([560.0, 330.0, 610.0, 390.0])  # a small face overlapping it
    boxes = np.stack([near, small]).astype(np.float32)
    grids = [anchored_grid(near, 24, 6, seed=1), anchored_grid(small, 24, 6, seed=2)]
    assert grids[0].cell == 51 and grids[1].cell == 24
    mask = build_mask_from_boxes(shape, boxes)
    regions = face_regions(boxes, 0.25, 13, shape)
    for mode in ('cell', 'laplace', 'pixel'):
        out = private_pixelate(t1_full, mask, grids, regions, 20, mode, 1.0, 16,
                               np.random.default_rng(0), NoiseTables())
        np.testing.assert_array_equal(out[~mask], t1_full[~mask])
        assert (out[mask] != t1_full[mask]).any(axis=1).mean() > 0.9
        if mode == 'pixel':
            continue
        # Every masked pixel of the near face's region shows its 51 px cell's one value,
        # also where the small face's region overlaps it.
        x0, y0, x1, y1 = regions[0]
        for y in range(y0, y1, 7):
            for x in range(x0, x1, 7):
                if mask[y, x]:
                    j, i = (x - grids[0].x) // 51, (y - grids[0].y) // 51
                    cy, cx = grids[0].y + i * 51, grids[0].x + j * 51
                    cell = out[max(cy, y0):min(cy + 51, y1), max(cx, x0):min(cx + 51, x1)]
                    inside = mask[max(cy, y0):min(cy + 51, y1), max(cx, x0):min(cx + 51, x1)]
                    assert (cell[inside] == out[y, x]).all()


def test_fast_pixelate_laplace_and_bad_input(t1_full):
    """fast_pixelate accepts noise_mode laplace; bad private mosaic input raises ValueError."""
    mask = build_mask_from_boxes(t1_full.shape[:2], np.array([[463, 266, 572, 415.]]))
    out = fast_pixelate(t1_full, mask, 24, 20, np.random.default_rng(0), 'laplace',
                        epsilon=0.5)
    np.testing.assert_array_equal(out[~mask], t1_full[~mask])
    assert (out[mask] != t1_full[mask]).any(axis=1).mean() > 0.9
    regions = np.array([[400, 200, 650, 480]])
    with pytest.raises(ValueError, match='one grid per region'):
        private_pixelate(t1_full, mask, [], regions)
    with pytest.raises(ValueError, match='epsilon'):
        private_pixelate(t1_full, mask, [FaceGrid(0, 0, 24)], regions, 20, 'laplace', 0.0)
    with pytest.raises(ValueError, match='noise_mode'):
        private_pixelate(t1_full, mask, [FaceGrid(0, 0, 24)], regions, 20, 'blur')
