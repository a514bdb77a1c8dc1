"""
Temporal hold: a face the detector misses stays masked for ``hold_frames`` frames, no longer.

The sequences are the real group photo (6 faces) moving a few pixels per frame, run through the
real SCRFD detector; on chosen frames the detector is made to miss every face.
"""

from __future__ import annotations

from typing import List, Set, Tuple

from av_privacy_ros import AVPrivacyMasker
from av_privacy_ros.detection import Detections, FaceDetector
from av_privacy_ros.settings import PipelineSettings
from av_privacy_ros.tracking import box_iou, FaceTracker, grow_px_from_speed
import cv2
import numpy as np
import pytest

STEP = (3, 2)  # pixels per frame the scene moves (x, y)


def shifted(image: np.ndarray, frame: int) -> np.ndarray:
    """Return ``image`` moved by ``frame × STEP`` pixels, as a camera sees a moving group."""
    height, width = image.shape[:2]
    matrix = np.float32([[1, 0, frame * STEP[0]], [0, 1, frame * STEP[1]]])
    return cv2.warpAffine(image, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE)


class MissingFacesDetector(FaceDetector):
    """The real detector, made to miss every face on chosen calls (what a detector miss is)."""

    def __init__(self, real, missed_calls: Set[int]) -> None:
        """Wrap ``real``; calls whose index is in ``missed_calls`` return no faces."""
        self.real = real
        self.missed_calls = set(missed_calls)
        self.truth: List[Detections] = []
        self.backend = real.backend
        self.provider = real.provider

    def detect(self, bgr: np.ndarray, conf_thresh: float) -> Detections:
        """Detect with the real detector; drop the faces on a missed call, keep the truth."""
        found = self.real.detect(bgr, conf_thresh)
        self.truth.append(found)
        if len(self.truth) - 1 in self.missed_calls:
            return Detections.empty()
        return found


def uncovered_faces(mask: np.ndarray, boxes: np.ndarray) -> int:
    """Return how many face boxes have at least one pixel outside the mask."""
    height, width = mask.shape
    count = 0
    for x1, y1, x2, y2 in boxes:
        x0, y0 = max(0, int(np.floor(x1))), max(0, int(np.floor(y1)))
        x3, y3 = min(width, int(np.ceil(x2))), min(height, int(np.ceil(y2)))
        if not mask[y0:y3, x0:x3].all():
            count += 1
    return count


def run_gap(scrfd, photo: np.ndarray, hold_frames: int, gap: int,
            grow_px: float = 6.0) -> Tuple[List[int], list]:
    """
    Run 2 detected frames, ``gap`` missed frames and 1 detected frame through a masker.

    Returns the number of faces left unmasked in each frame and the frame results.
    """
    missed = set(range(2, 2 + gap))
    detector = MissingFacesDetector(scrfd, missed)
    masker = AVPrivacyMasker(detector=detector, seed=0, hold_frames=hold_frames,
                             grow_px_per_frame=grow_px)
    leaks, results = [], []
    for frame in range(gap + 3):
        result = masker.process(shifted(photo, frame))
        assert not result.failed_closed, result.error
        truth = detector.truth[-1]
        assert len(truth) == 6, 'the real detector should find the 6 faces of every frame'
        leaks.append(uncovered_faces(result.mask, truth.boxes))
        results.append(result)
    return leaks, results


@pytest.mark.parametrize('hold_frames', [6, 3])
def test_missed_faces_stay_masked_for_exactly_hold_frames(scrfd, t1_full, hold_frames):
    """Gaps of up to hold_frames frames show no face; a gap one frame longer shows them once."""
    unmasked_frames = {}
    for gap in range(1, hold_frames + 2):
        leaks, results = run_gap(scrfd, t1_full, hold_frames, gap)
        unmasked_frames[gap] = [frame for frame, leak in enumerate(leaks) if leak]
        # Detected faces are masked in the very frame they are detected.
        assert leaks[0] == 0 and leaks[-1] == 0
        assert [t.source for t in results[0].tracks] == ['detected'] * 6
    expected = {gap: [] for gap in range(1, hold_frames + 1)}
    expected[hold_frames + 1] = [1 + hold_frames + 1]  # the last frame of the gap
    assert unmasked_frames == expected


def test_held_boxes_grow_by_the_speed_bound(scrfd, t1_full):
    """A held face keeps its track id and its box grows grow_px_per_frame on every side."""
    _, results = run_gap(scrfd, t1_full, hold_frames=4, gap=4, grow_px=10.0)
    last_detected = {t.track_id: t.box for t in results[1].tracks}
    assert len(last_detected) == 6
    for missed, result in enumerate(results[2:6], start=1):
        assert len(result.detections) == 0 and len(result.mask_boxes) == 6
        assert result.held_count == 6
        for track in result.tracks:
            assert track.source == 'held' and track.missed == missed
            grown = last_detected[track.track_id] + np.array([-10, -10, 10, 10]) * missed
            np.testing.assert_allclose(track.box, grown, atol=1e-3)
    # Detected again: same ids, detected boxes, nothing held.
    final = results[6]
    assert sorted(t.track_id for t in final.tracks) == sorted(last_detected)
    assert all(t.source == 'detected' for t in final.tracks)
    overlap = box_iou(final.mask_boxes, final.boxes)
    assert np.allclose(overlap.max(axis=1), 1.0)  # each masked box is one of the detections


def test_growth_from_walking_speed_and_depth(scrfd, t1_full):
    """With depth and a focal length, a near face's held box grows at the walking speed."""
    assert grow_px_from_speed(1.5, 30.0, 600.0, 3.0) == pytest.approx(10.0)
    assert np.isnan(grow_px_from_speed(1.5, 30.0, 600.0, np.array([0.0]))[0])
    detector = MissingFacesDetector(scrfd, {1})
    masker = AVPrivacyMasker(detector=detector, seed=0, grow_px_per_frame=2.0,
                             walking_speed=1.5, frame_rate=30.0, focal_px=600.0)
    depth = np.full(t1_full.shape[:2], 1000, np.uint16)  # everyone 1 m away
    first = masker.process(t1_full, depth)
    held = masker.process(t1_full, depth)
    assert held.held_count == 6
    before = {t.track_id: t.box for t in first.tracks}
    for track in held.tracks:  # 1.5 m/s / 30 Hz × 600 px / 1 m = 30 px per frame
        np.testing.assert_allclose(track.box - before[track.track_id], [-30, -30, 30, 30],
                                   atol=1e-3)


def test_reset_and_single_images(scrfd, t1_full):
    """Unrelated images: held faces carry over until reset_tracking() or a new frame size."""
    # The tracker's hold alone: scale_policy auto would also carry faces found in its tiles
    # (as detections; see test_scale_policy_frames.py).
    masker = AVPrivacyMasker(detector=scrfd, seed=0, scale_policy='fixed')
    blank = np.full_like(t1_full, 128)
    masker.process(t1_full)
    carried = masker.process(blank)
    assert carried.held_count == 6 and carried.mask.any() and len(carried.boxes) == 0
    masker.reset_tracking()
    masker.process(t1_full)
    masker.reset_tracking()
    clean = masker.process(blank)
    assert not clean.mask.any() and clean.tracks == []
    np.testing.assert_array_equal(clean.image, blank)
    # A new frame size is a new stream: nothing is held over.
    masker.process(t1_full)
    small = masker.process(np.full((240, 320, 3), 128, np.uint8))
    assert small.tracks == [] and not small.mask.any()
    # hold_frames 0: stateless apart from the noise.
    masker.configure(hold_frames=0)
    masker.process(t1_full)
    assert not masker.process(blank).mask.any()
    _, _, mask, boxes, _ = masker.process_arrays(t1_full)
    assert len(boxes) == 6 and uncovered_faces(mask, boxes) == 0


def test_backward_pass_boxes_are_masked_with_the_private_mosaic(scrfd, t1_full):
    """Boxes added after the fact (bag backward pass) are masked; other pixels stay."""
    detector = MissingFacesDetector(scrfd, {0})
    masker = AVPrivacyMasker(detector=detector, seed=0)
    missed = masker.process(t1_full)
    assert not missed.mask.any()
    truth = detector.truth[0].boxes
    fixed = masker.mask_extra_boxes(t1_full, missed, truth)
    assert uncovered_faces(fixed.mask, truth) == 0
    assert [t.source for t in fixed.tracks] == ['backward'] * 6
    np.testing.assert_array_equal(fixed.image[~fixed.mask], t1_full[~fixed.mask])
    assert (fixed.image[fixed.mask] != t1_full[fixed.mask]).any(axis=1).mean() > 0.9


def test_tracker_ids_follow_faces_and_new_faces_are_masked_at_once():
    """Ids follow the boxes whatever the detection order; a new face is masked in frame one."""
    tracker = FaceTracker(PipelineSettings(hold_frames=2, grow_px_per_frame=5.0), seed=1)
    boxes = np.array([[100, 100, 160, 180], [300, 100, 360, 180], [500, 300, 540, 350]],
                     np.float32)
    first = tracker.update(boxes[:2])
    assert first.ids.tolist() == [1, 2] and first.sources == ['detected', 'detected']
    moved = boxes + np.float32([4, 3, 4, 3])
    second = tracker.update(moved[[2, 1, 0]])  # new face listed first, order reversed
    by_id = dict(zip(second.ids.tolist(), second.boxes))
    np.testing.assert_array_equal(by_id[1], moved[0])
    np.testing.assert_array_equal(by_id[2], moved[1])
    np.testing.assert_array_equal(by_id[3], moved[2])  # masked in its first frame
    assert second.sources == ['detected'] * 3
    # A face lost for hold_frames + 1 frames is gone; the other faces go on.
    for missed in (1, 2):
        frame = tracker.update(moved[:2])
        assert frame.sources == ['detected', 'detected', 'held']
        np.testing.assert_allclose(frame.boxes[2], moved[2] + np.float32([-5, -5, 5, 5]) * missed)
    assert tracker.update(moved[:2]).ids.tolist() == [1, 2]
    tracker.reset()
    assert tracker.track_count == 0
    assert tracker.update(np.zeros((0, 4), np.float32)).boxes.shape == (0, 4)


def test_fast_motion_is_matched_by_centre_distance():
    """A face that jumps further than IoU matching allows, within reach, keeps its track."""
    tracker = FaceTracker(PipelineSettings(hold_frames=3, grow_px_per_frame=8.0), seed=1)
    start = np.array([[100, 100, 140, 150]], np.float32)
    seed = tracker.update(start).grids[0].seed
    tracker.update(np.zeros((0, 4), np.float32))  # missed once
    jumped = start + np.float32([35, 0, 35, 0])
    assert box_iou(start, jumped)[0, 0] < 0.1
    frame = tracker.update(jumped)
    assert frame.ids.tolist() == [1] and frame.grids[0].seed == seed  # same noise
    assert frame.sources == ['detected']


def test_invalid_settings_are_refused():
    """Bad tracker settings raise ValueError with the setting's name; so does bad input."""
    with pytest.raises(ValueError, match='hold_frames'):
        PipelineSettings(hold_frames=-1)
    with pytest.raises(ValueError, match='hold_frames'):
        PipelineSettings(hold_frames=2.5)
    with pytest.raises(ValueError, match='grow_px_per_frame'):
        PipelineSettings(grow_px_per_frame=float('nan'))
    with pytest.raises(ValueError, match='scores'):
        FaceTracker().update(np.zeros((2, 4), np.float32), np.zeros(3, np.float32))
