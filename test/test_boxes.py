"""Tests of the shared box helpers: one parametrized table per function."""

from __future__ import annotations

from av_privacy_ros.boxes import box_iou, grow_boxes, percentile_ms
import numpy as np
import pytest


@pytest.mark.parametrize('first, second, expected', [
    ([0, 0, 10, 10], [0, 0, 10, 10], 1.0),       # the same box
    ([0, 0, 10, 10], [5, 0, 15, 10], 50 / 150),  # half overlap
    ([0, 0, 10, 10], [20, 20, 30, 30], 0.0),     # apart
    ([0, 0, 10, 10], [10, 0, 20, 10], 0.0),      # touching edges
    ([0, 0, 0, 0], [0, 0, 0, 0], 0.0),           # empty boxes: no division by zero
    ([0, 0, 10, 10], [2, 2, 4, 4], 4 / 100),     # one inside the other
])
def test_box_iou_of_one_pair(first: list, second: list, expected: float) -> None:
    """The IoU of two boxes is the same both ways round."""
    assert box_iou(first, second)[0, 0] == pytest.approx(expected)
    assert box_iou(second, first)[0, 0] == pytest.approx(expected)


def test_box_iou_shapes_with_empty_sets() -> None:
    """An empty set on either side gives a matrix with a zero dimension."""
    assert box_iou(np.zeros((0, 4)), [[0, 0, 1, 1], [1, 1, 2, 2]]).shape == (0, 2)
    assert box_iou([[0, 0, 1, 1]], np.zeros((0, 4))).shape == (1, 0)


@pytest.mark.parametrize('box, fraction, expected', [
    ([10, 20, 30, 60], 0.0, [10, 20, 30, 60]),
    ([10, 20, 30, 60], 0.5, [0, 0, 40, 80]),
    ([10, 20, 30, 60], 0.05, [9, 18, 31, 62]),
])
def test_grow_boxes(box: list, fraction: float, expected: list) -> None:
    """Each side moves out by the fraction of the box's own size."""
    np.testing.assert_allclose(grow_boxes(box, fraction)[0], expected)


@pytest.mark.parametrize('samples, q, expected', [
    ([], 50, None),
    ([0.010], 95, 10.0),
    ([0.001, 0.002, 0.003], 50, 2.0),
])
def test_percentile_ms(samples: list, q: float, expected: object) -> None:
    """Seconds in, milliseconds out; no samples gives None."""
    assert percentile_ms(samples, q) == (None if expected is None else pytest.approx(expected))
