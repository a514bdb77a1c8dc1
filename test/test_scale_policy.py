"""Detection-scale policy without a model: tiles, rotation, merging across tiles, settings."""

from __future__ import annotations

from av_privacy_ros import params
from av_privacy_ros.detection import Detections
from av_privacy_ros.scale_policy import (change_windows, grow_carried, merge_detections,
                                         pack_windows, SCALE_POLICIES, ScaledDetection, Tile,
                                         tile_grid, WINDOW_GAP, WINDOW_MARGIN)
import numpy as np
import pytest


@pytest.mark.parametrize('size', [(1280, 720), (1920, 1080), (1000, 700), (4000, 400)])
def test_tiles_cover_the_frame_and_overlap_by_the_requested_pixels(size: tuple) -> None:
    """Every pixel lies in a tile; horizontal and vertical neighbours share >= the overlap."""
    width, height = size
    tiles = tile_grid(width, height, 640, 384, 64)
    tile_w, tile_h = tiles[0].width, tiles[0].height
    assert tile_w == min(640, width) and tile_h <= 384
    covered = np.zeros((height, width), np.bool_)
    for tile in tiles:
        assert 0 <= tile.x0 < tile.x1 <= width and 0 <= tile.y0 < tile.y1 <= height
        assert (tile.width, tile.height) == (tile_w, tile_h)
        covered[tile.y0:tile.y1, tile.x0:tile.x1] = True
    assert covered.all()
    xs = sorted({tile.x0 for tile in tiles})
    ys = sorted({tile.y0 for tile in tiles})
    assert all(b - a <= tile_w - 64 for a, b in zip(xs, xs[1:]))
    assert all(b - a <= tile_h - 64 for a, b in zip(ys, ys[1:]))
    # no more tiles than 640×384 tiles at the least overlap would need
    assert len(xs) == max(1, -(-(width - 64) // (640 - 64)))
    assert len(ys) == max(1, -(-(height - 64) // (384 - 64)))


def test_a_frame_not_larger_than_the_detector_input_gets_one_pass_under_every_policy() -> None:
    """640×480 at a 640×480 detector input: no tiles, no full pass, nothing extra."""
    for policy in SCALE_POLICIES:
        scaled = ScaledDetection(policy)
        for _frame in range(3):
            plan = scaled.plan(640, 480, (640, 480))
            assert plan.coarse and not plan.full and plan.tiles == []


def test_auto_scans_every_tile_first_then_one_per_frame_in_turn() -> None:
    """First frame, a reset and a new frame size scan all tiles; in between each tile in turn."""
    scaled = ScaledDetection('auto', tile_overlap=64, tiles_per_frame=1)
    first = scaled.plan(1920, 1080, (640, 384))
    count = len(first.grid)
    assert count > 1 and first.coarse and first.tiles == list(range(count))
    seen = [scaled.plan(1920, 1080, (640, 384)).tiles for _ in range(count)]
    assert all(len(tiles) == 1 for tiles in seen)
    assert sorted(t for tiles in seen for t in tiles) == list(range(count))
    scaled.reset()
    assert scaled.plan(1920, 1080, (640, 384)).tiles == list(range(count))
    smaller = scaled.plan(1280, 720, (640, 384))
    assert smaller.tiles == list(range(len(smaller.grid)))
    two = ScaledDetection('auto', tiles_per_frame=2)
    two.plan(1280, 720, (640, 384))
    assert len(two.plan(1280, 720, (640, 384)).tiles) == 2


def test_keyframes_alternate_full_and_coarse_passes() -> None:
    """keyframes: a full native pass every k-th frame, the coarse pass in between."""
    scaled = ScaledDetection('keyframes', keyframe_interval=3)
    plans = [scaled.plan(1920, 1080, (640, 384)) for _ in range(6)]
    assert [plan.full for plan in plans] == [True, False, False, True, False, False]
    assert all(plan.coarse != plan.full for plan in plans)


def test_a_face_cut_by_a_tile_border_is_merged_into_one_whole_box() -> None:
    """The cut half (even with the higher score) and the whole face become one whole box."""
    whole = Detections(np.array([[100, 100, 130, 132]]), np.array([0.8]))
    cut = Detections(np.array([[100, 101, 112, 131]]), np.array([0.9]))
    neighbour = Detections(np.array([[134, 100, 164, 130]]), np.array([0.7]))
    merged = merge_detections([cut, whole, neighbour])
    assert len(merged) == 2
    order = np.argsort(merged.boxes[:, 0])
    np.testing.assert_allclose(merged.boxes[order[0]], [100, 100, 130, 132])
    np.testing.assert_allclose(merged.boxes[order[1]], [134, 100, 164, 130])
    assert merged.scores[order[0]] == pytest.approx(0.9)
    assert len(merge_detections([Detections.empty(), Detections.empty()])) == 0


def test_carried_faces_grow_by_at_most_half_their_size_per_frame() -> None:
    """A 10-px face grows 5 px a side per frame, a 100-px face by the grow setting."""
    boxes = np.array([[100, 100, 110, 110], [300, 300, 400, 400]], np.float32)
    grown = grow_carried(boxes, 2, 6.0, 1920, 1080)
    np.testing.assert_allclose(grown[0], [90, 90, 120, 120])
    np.testing.assert_allclose(grown[1], [288, 288, 412, 412])
    np.testing.assert_allclose(grow_carried(boxes, 0, 6.0, 1920, 1080), boxes)
    edge = grow_carried(np.array([[0, 0, 10, 10]], np.float32), 3, 6.0, 1920, 1080)
    assert edge.min() >= 0


@pytest.mark.parametrize('kwargs', [{'policy': 'huge'}, {'tile_overlap': -1},
                                    {'tiles_per_frame': 0}, {'tiles_per_frame': 1.5},
                                    {'keyframe_interval': 0}])
def test_bad_scale_settings_raise_a_clear_value_error(kwargs: dict) -> None:
    """Each wrong setting is refused with a sentence naming it."""
    with pytest.raises(ValueError, match='scale policy|tile overlap|tiles per frame|key frame'):
        ScaledDetection(**kwargs)


def test_parameter_table_defaults_to_auto_and_reaches_the_masker_arguments() -> None:
    """The node, bag and evaluation tools get the policy through masker_kwargs."""
    values = params.resolve()
    assert values['detector.scale_policy'] == 'auto'
    kwargs = params.masker_kwargs(params.resolve({'detector.scale_policy': 'fixed',
                                                  'detector.tile_overlap': 96,
                                                  'detector.tiles_per_frame': 2}))
    assert (kwargs['scale_policy'], kwargs['tile_overlap'], kwargs['tiles_per_frame']) == \
        ('fixed', 96, 2)
    assert params.validate('detector.scale_policy', 'zoom') is not None
    assert params.validate('detector.tiles_per_frame', 0) is not None


def test_auto_scans_the_most_changed_tile_unless_another_is_due() -> None:
    """A changed tile is scanned at once; a tile unscanned for as many frames as tiles is due."""
    scaled = ScaledDetection('auto')
    count = len(scaled.plan(1920, 1080, (640, 384)).grid)
    change = [0.0] * count
    change[5] = 80.0
    for _frame in range(1, count):
        assert scaled.plan(1920, 1080, (640, 384), change).tiles == [5]
    assert scaled.plan(1920, 1080, (640, 384), change).tiles == [0]
    assert scaled.plan(1920, 1080, (640, 384), change).tiles == [1]


def test_a_changed_patch_becomes_one_window_around_it_and_noise_none() -> None:
    """A 6×6 changed patch at quarter size gives a window holding it plus the margin."""
    changed = np.zeros((270, 480), np.bool_)
    changed[100:106, 200:206] = True  # a small face appearing at x 800-824, y 400-424
    changed[10, 10] = changed[250, 470] = True  # sensor noise: single pixels
    windows = change_windows(changed, 1920, 1080)
    assert len(windows) == 1
    window = windows[0]
    assert window.x0 <= 800 - WINDOW_MARGIN and window.x1 >= 824 + WINDOW_MARGIN
    assert window.y0 <= 400 - WINDOW_MARGIN and window.y1 >= 424 + WINDOW_MARGIN
    assert window.width <= 24 + 2 * WINDOW_MARGIN + 2 * 4 * 2
    assert change_windows(np.zeros((270, 480), np.bool_), 1920, 1080) == []


def test_windows_are_packed_apart_inside_the_tile_area_and_too_large_ones_left_out() -> None:
    """Placed windows lie inside the area, never overlap, and keep a gap between them."""
    windows = [Tile(0, 0, 100, 80), Tile(500, 500, 1200, 600), Tile(0, 0, 300, 200),
               Tile(0, 0, 150, 60), Tile(0, 0, 200, 100), Tile(0, 0, 90, 90)]
    placed = pack_windows(windows, 640, 248)
    indices = [index for index, _place in placed]
    assert 1 not in indices  # wider than the area
    assert indices[:2] == [0, 2]  # in the given order while they fit
    rects = []
    for index, (x, y) in placed:
        window = windows[index]
        assert 0 <= x and x + window.width <= 640 and 0 <= y and y + window.height <= 248
        rects.append((x, y, x + window.width, y + window.height))
    for k, (ax0, ay0, ax1, ay1) in enumerate(rects):
        for bx0, by0, bx1, by1 in rects[k + 1:]:
            apart_x = max(bx0 - ax1, ax0 - bx1)
            apart_y = max(by0 - ay1, ay0 - by1)
            assert max(apart_x, apart_y) >= WINDOW_GAP
    assert len(placed) >= 3


def test_auto_scans_change_windows_instead_of_a_tile_until_a_tile_is_two_rounds_old() -> None:
    """Windows on changed regions take the tile area; rotation resumes when a tile is overdue."""
    scaled = ScaledDetection('auto')
    count = len(scaled.plan(1920, 1080, (640, 384)).grid)
    window = [Tile(800, 400, 870, 470)]
    plans = [scaled.plan(1920, 1080, (640, 384), None, window) for _ in range(2 * count + 1)]
    assert all(plan.windows == window and plan.tiles == [] for plan in plans[:2 * count - 1])
    assert plans[2 * count - 1].tiles == [0] and plans[2 * count - 1].windows == []
    too_large = [Tile(0, 0, 1920, 1080)]
    plan = ScaledDetection('auto', change_windows=True)
    plan.plan(1920, 1080, (640, 384))
    assert len(plan.plan(1920, 1080, (640, 384), None, too_large).tiles) == 1
