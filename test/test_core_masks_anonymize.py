"""Masks from boxes and depth, the mosaic with bounded noise, and depth noise."""

from __future__ import annotations

from av_privacy_ros.anonymize import anonymize_depth, fast_pixelate
from av_privacy_ros.masks import build_depth_mask, build_mask_from_boxes, face_regions
import cv2
import numpy as np
import pytest

BOX = np.array([[100, 80, 160, 160]], np.float32)


def test_box_mask_pads_clips_and_dilates() -> None:
    """The oval covers the padded box, is clipped to the image, and grows with dilation."""
    plain = build_mask_from_boxes((240, 320), BOX, pad_ratio=0.0, oval=True, dilate_kernel=0)
    assert plain.dtype == np.bool_ and plain.shape == (240, 320)
    # Canonical booleans: a mask turned into mono8 as mask * 255 must read 0/255.
    assert set(np.unique(plain.view(np.uint8))) == {0, 1}
    assert plain[120, 130] and not plain[80, 100]  # oval: centre in, box corner out
    padded = build_mask_from_boxes((240, 320), BOX, pad_ratio=0.25, dilate_kernel=0)
    assert padded.sum() > plain.sum() and padded[120, 90]  # 15 px padding on the left
    dilated = build_mask_from_boxes((240, 320), BOX, pad_ratio=0.25, dilate_kernel=13)
    # Every pixel a morphological dilation with the elliptical kernel sets is covered.
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (13, 13))
    reference = cv2.dilate(padded.astype(np.uint8), kernel).astype(bool)
    assert not np.any(reference & ~dilated)
    assert dilated.sum() <= reference.sum() * 1.05
    rect = build_mask_from_boxes((240, 320), BOX, pad_ratio=0.0, oval=False, dilate_kernel=0)
    assert rect[80:160, 100:160].all() and rect.sum() == 60 * 80
    edge = build_mask_from_boxes((240, 320), np.array([[-50, -50, 30, 30]], np.float32))
    assert edge[0, 0] and edge.shape == (240, 320)


def test_no_boxes_gives_an_empty_mask() -> None:
    """N = 0 faces is normal: an empty mask."""
    assert not build_mask_from_boxes((48, 64), np.zeros((0, 4), np.float32)).any()


def test_face_regions_hold_the_mask() -> None:
    """The regions the mosaic works in contain every masked pixel, for any box and kernel."""
    rng = np.random.default_rng(0)
    for _ in range(100):
        corners = rng.uniform(-50, 600, (3, 2))
        boxes = np.hstack([corners, corners + rng.uniform(2, 250, (3, 2))]).astype(np.float32)
        for kernel in (0, 2, 3, 13, 14):
            for oval in (True, False):
                mask = build_mask_from_boxes((480, 640), boxes, 0.25, oval, kernel)
                inside = np.zeros_like(mask)
                for x0, y0, x1, y1 in face_regions(boxes, 0.25, kernel, (480, 640)):
                    inside[y0:y1, x0:x1] = True
                assert not np.any(mask & ~inside), (boxes, kernel, oval)


def _scene(dtype: type) -> np.ndarray:
    depth = np.full((240, 320), 3.0, np.float32)  # wall at 3 m
    cv2.ellipse(depth, (130, 120), (32, 42), 0, 0, 360, 1.2, -1)  # head at 1.2 m
    if dtype == np.uint16:
        return (depth * 1000).astype(np.uint16)
    return depth


@pytest.mark.parametrize('dtype', [np.uint16, np.float32])
def test_depth_mask_excludes_the_wall_behind_the_face(dtype: type) -> None:
    """Inside the padded box, wall pixels at 3 m stay out; the face at 1.2 m is covered."""
    depth = _scene(dtype)
    mask = build_depth_mask(depth, BOX, pad_ratio=0.5, near_margin=0.4, far_margin=0.4,
                            dilate_kernel=5)
    head = _scene(np.float32) < 2.0
    assert mask[head].mean() > 0.99
    box_mask = build_mask_from_boxes(depth.shape, BOX, pad_ratio=0.5, dilate_kernel=5)
    wall_in_box = box_mask & ~head
    assert mask[wall_in_box].mean() < 0.3  # most of the padded wall area is excluded
    assert mask[box_mask].sum() < box_mask.sum()


def test_depth_mask_keeps_the_face_without_depth() -> None:
    """Invalid depth (0 / NaN) falls back to the padded box: the face is never uncovered."""
    zeros = np.zeros((240, 320), np.uint16)
    assert build_depth_mask(zeros, BOX)[120, 130]
    nans = np.full((240, 320), np.nan, np.float32)
    fallback = build_depth_mask(nans, BOX, pad_ratio=0.25, dilate_kernel=13)
    assert np.array_equal(fallback, build_mask_from_boxes((240, 320), BOX, 0.25, True, 13))


def test_depth_mask_rejects_bad_depth() -> None:
    """Depth of the wrong dtype or shape is a clear error."""
    with pytest.raises(ValueError, match='uint16 millimetres or float32'):
        build_depth_mask(np.zeros((240, 320), np.int32), BOX)
    with pytest.raises(ValueError, match='H×W'):
        build_depth_mask(np.zeros((240, 320, 3), np.uint16), BOX)


def test_mosaic_changes_only_masked_pixels_within_the_noise_bound(t1_vga: np.ndarray) -> None:
    """Outside identical, inside changed, every value within the bound of its cell mean."""
    boxes = np.array([[232, 133, 287, 208], [28, 130, 85, 199]], np.float32)
    mask = build_mask_from_boxes(t1_vga.shape[:2], boxes, 0.25, True, 13)
    before = t1_vga.copy()
    out = fast_pixelate(t1_vga, mask, block=8, noise=20, rng=np.random.default_rng(3))
    assert np.array_equal(t1_vga, before), 'the input must not be modified'
    assert out.dtype == np.uint8 and out.shape == t1_vga.shape
    assert np.array_equal(out[~mask], t1_vga[~mask])
    changed = np.any(out != t1_vga, axis=2)
    assert changed[mask].mean() > 0.95
    means = t1_vga.reshape(60, 8, 80, 8, 3).mean(axis=(1, 3))  # exact 8×8 cell means
    expected = np.repeat(np.repeat(means, 8, 0), 8, 1)[:480, :640]
    error = np.abs(out.astype(np.float32) - expected)[mask]
    assert error.max() <= 20.5
    # Cell mode: one offset per cell and channel, so each masked cell is one colour.
    ys, xs = np.nonzero(mask)
    cell = (ys // 8) * 1000 + xs // 8
    for key in np.unique(cell)[:50]:
        values = out[ys[cell == key], xs[cell == key]]
        assert (values == values[0]).all()


def test_pixel_noise_mode_varies_inside_a_cell(t1_vga: np.ndarray) -> None:
    """The seed's per-pixel noise is still available and bounded."""
    mask = np.zeros(t1_vga.shape[:2], bool)
    mask[100:196, 200:296] = True
    out = fast_pixelate(t1_vga, mask, 24, 10, np.random.default_rng(1), 'pixel')
    cell = out[100:124, 200:224].reshape(-1, 3)
    assert len(np.unique(cell, axis=0)) > 10
    assert np.array_equal(out[~mask], t1_vga[~mask])


def test_empty_mask_returns_an_identical_copy(t1_vga: np.ndarray) -> None:
    """No faces: the output equals the input and is a separate array."""
    out = fast_pixelate(t1_vga, np.zeros(t1_vga.shape[:2], bool))
    assert np.array_equal(out, t1_vga) and not np.shares_memory(out, t1_vga)


def test_regions_that_miss_masked_pixels_are_completed(t1_vga: np.ndarray) -> None:
    """Regions that leave masked pixels out cannot leave them unanonymized."""
    mask = np.zeros(t1_vga.shape[:2], bool)
    mask[10:50, 10:50] = True
    mask[300:340, 400:440] = True
    out = fast_pixelate(t1_vga, mask, 8, 20, regions=np.array([[0, 0, 60, 60]]))
    assert np.any(out[300:340, 400:440] != t1_vga[300:340, 400:440], axis=2).mean() > 0.9


def test_masked_pixels_without_any_region_still_get_coarse_cells(t1_vga: np.ndarray) -> None:
    """A mask with no face grid at all is mosaicked coarsely, not copied pixel by pixel."""
    from av_privacy_ros.anonymize import private_pixelate
    mask = np.zeros(t1_vga.shape[:2], bool)
    mask[100:260, 200:360] = True
    out = private_pixelate(t1_vga, mask, [], np.zeros((0, 4)), noise=0)
    assert np.any(out[mask] != t1_vga[mask], axis=1).mean() > 0.9
    assert np.array_equal(out[~mask], t1_vga[~mask])


@pytest.mark.parametrize('args, message', [
    ((np.zeros((4, 4), np.uint8), np.zeros((4, 4), bool)), 'H×W×3'),
    ((np.zeros((4, 4, 3), np.float32), np.zeros((4, 4), bool)), 'uint8'),
    ((np.zeros((0, 4, 3), np.uint8), np.zeros((0, 4), bool)), 'empty'),
    ((np.zeros((4, 4, 3), np.uint8), np.zeros((5, 4), bool)), 'shape'),
    ((np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), bool), 0), 'block'),
    ((np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), bool), 4, 3, None, 'blur'),
     'noise_mode'),
])
def test_mosaic_rejects_bad_input(args: tuple, message: str) -> None:
    """
    Each malformed input gets its own clear error.

    The noise amplitude's bounds are the parameter table's, checked once by PipelineSettings
    (test_settings.py), not again by the mosaic.
    """
    with pytest.raises(ValueError, match=message):
        fast_pixelate(*args)


@pytest.mark.parametrize('dtype', [np.uint16, np.float32])
def test_depth_noise_only_under_the_mask(dtype: type) -> None:
    """Depth noise keeps dtype, stays under the mask, and leaves invalid pixels invalid."""
    depth = _scene(dtype)
    depth[120, 120] = 0
    if dtype == np.float32:
        depth[121, 121] = np.nan
    mask = np.zeros(depth.shape, bool)
    mask[80:160, 100:160] = True
    out = anonymize_depth(depth, mask, 0.05, np.random.default_rng(0))
    assert out.dtype == depth.dtype
    assert np.array_equal(out[~mask], depth[~mask])
    assert out[120, 120] == 0
    if dtype == np.float32:
        assert np.isnan(out[121, 121])
    valid = mask & (depth > 0)
    diff = out[valid].astype(np.float64) - depth[valid].astype(np.float64)
    scale = 1000.0 if dtype == np.uint16 else 1.0
    assert 0.03 * scale < diff.std() < 0.07 * scale
    if dtype == np.uint16:
        assert out[valid].min() > 0, 'valid depth must stay valid'
