"""
Small real faces in 1280×720 and 1920×1080 frames, through the masker with real SCRFD weights.

Frames are composed by test/highres_frames.py from the sample photos (faces 8-60 px wide, a
third of them centred on tile borders); a face leaks when less than 90 % of its box is masked.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

from av_privacy_ros.detection import FaceDetector
from av_privacy_ros.masker import AVPrivacyMasker
from av_privacy_ros.scale_policy import intersection_over_smaller, ScaledDetection
import highres_frames as frames_mod
import numpy as np
import pytest

SIZES = [(1280, 720), (1920, 1080)]


@pytest.fixture(scope='module')
def patches(scrfd: Any) -> List[frames_mod.FacePatch]:
    """Face crops of the sample photos with the detector's native-size boxes."""
    return frames_mod.face_patches(scrfd)


class RecordingDetector(FaceDetector):
    """The real detector, recording the size of every image it is given."""

    def __init__(self, detector: Any) -> None:
        """Wrap ``detector``."""
        self.detector = detector
        self.calls: List[Tuple[int, int]] = []
        self.backend = detector.backend
        self.provider = detector.provider

    def input_size_for(self, width: int, height: int) -> Tuple[int, int]:
        """Return the wrapped detector's input size."""
        return self.detector.input_size_for(width, height)

    def detect(self, bgr: np.ndarray, conf_thresh: float, **kwargs: Any) -> Any:
        """Record the image size, then detect."""
        self.calls.append((bgr.shape[1], bgr.shape[0]))
        return self.detector.detect(bgr, conf_thresh, **kwargs)


def crowd(patches: List[frames_mod.FacePatch], width: int, height: int, scrfd: Any,
          seed: int = 5) -> Tuple[np.ndarray, np.ndarray]:
    """Return a frame with 40 faces 8-60 px wide (a third on tile borders) and their boxes."""
    rng = np.random.default_rng(seed)
    det_w, det_h = scrfd.input_size_for(width, height)
    grid = ScaledDetection().grid_for(width, height, (det_w, det_h))
    faces = frames_mod.layout(width, height, len(patches), list(rng.uniform(8.0, 60.0, 40)),
                              sorted({t.x1 - 32 for t in grid if t.x1 < width}),
                              sorted({t.y1 - 32 for t in grid if t.y1 < height}), seed=seed)
    return frames_mod.render(frames_mod.background(width, height, seed), patches, faces)


def leaks_by_policy(scrfd: Any, frame: np.ndarray, truth: np.ndarray,
                    policies: Tuple[str, ...]) -> Dict[str, frames_mod.LeakCounter]:
    """Return the leak counts of one frame anonymized under each policy."""
    counts = {}
    for policy in policies:
        masker = AVPrivacyMasker(detector=scrfd, seed=0, conf_thresh=0.3, scale_policy=policy)
        counts[policy] = frames_mod.LeakCounter()
        counts[policy].add(masker.process(frame).mask, truth)
    return counts


@pytest.mark.parametrize('size', SIZES)
def test_default_policy_masks_small_faces_as_well_as_full_size_detection(
        scrfd: Any, patches: List[frames_mod.FacePatch], size: Tuple[int, int]) -> None:
    """Per size bucket, the default leaks no more than full size; the 640-px pass leaks more."""
    frame, truth = crowd(patches, size[0], size[1], scrfd)
    counts = leaks_by_policy(scrfd, frame, truth, ('fixed', 'full'))
    default = frames_mod.LeakCounter()
    default.add(AVPrivacyMasker(detector=scrfd, seed=0, conf_thresh=0.3).process(frame).mask,
                truth)
    assert sum(default.faces.values()) >= 30
    for bucket, _low, _high in frames_mod.BUCKETS:
        assert default.leaks[bucket] <= counts['full'].leaks[bucket], bucket
    assert default.rate('20-50 px') <= 0.05
    assert counts['fixed'].leaks['<20 px'] >= default.leaks['<20 px'] + 3


@pytest.mark.parametrize('size', SIZES)
def test_faces_on_tile_borders_are_found_whole_and_once(
        scrfd: Any, patches: List[frames_mod.FacePatch], size: Tuple[int, int]) -> None:
    """A face cut by a tile border is masked whole and yields one box, not one per tile."""
    width, height = size
    det_w, det_h = scrfd.input_size_for(width, height)
    grid = ScaledDetection().grid_for(width, height, (det_w, det_h))
    edges_x = sorted({t.x1 for t in grid if t.x1 < width})
    edges_y = sorted({t.y1 for t in grid if t.y1 < height})
    faces = [frames_mod.PlacedFace(k % len(patches), 24.0 + 6 * (k % 5), x, 120.0 + 150 * k)
             for k, x in enumerate(edges_x)]
    faces += [frames_mod.PlacedFace(k % len(patches), 24.0 + 6 * (k % 5), 100.0 + 170 * k, y)
              for k, y in enumerate(edges_y)]
    frame, truth = frames_mod.render(frames_mod.background(width, height, 1), patches, faces)
    assert len(truth) == len(faces)
    tiles_only = RecordingDetector(scrfd)
    masker = AVPrivacyMasker(detector=tiles_only, seed=0, conf_thresh=0.3)
    result = masker.process(frame)
    assert len(tiles_only.calls) == 1  # the scaled frame and every tile on one canvas
    assert masker.scaled_detection.last_plan.tiles == list(range(len(grid)))  # type: ignore
    boxes = result.detections.boxes
    for face in truth:
        overlap = intersection_over_smaller(np.vstack([face[None], boxes]))[0, 1:]
        assert int((overlap >= 0.5).sum()) == 1, 'face %s found %d times' % (
            face, int((overlap >= 0.5).sum()))
        best = boxes[int(np.argmax(overlap))]
        inside = (min(best[2], face[2]) - max(best[0], face[0])) * \
            (min(best[3], face[3]) - max(best[1], face[1]))
        assert inside >= 0.9 * (face[2] - face[0]) * (face[3] - face[1])
    assert frames_mod.LeakCounter().add(result.mask, truth) == 0


def test_rotating_tiles_keep_small_faces_masked_between_visits_without_the_hold(
        scrfd: Any, patches: List[frames_mod.FacePatch]) -> None:
    """With the temporal hold off, faces found in a tile stay masked until it comes round."""
    frame, truth = crowd(patches, 1920, 1080, scrfd, seed=9)
    recorder = RecordingDetector(scrfd)
    masker = AVPrivacyMasker(detector=recorder, seed=0, conf_thresh=0.3, hold_frames=0)
    fixed = AVPrivacyMasker(detector=scrfd, seed=0, conf_thresh=0.3, hold_frames=0,
                            scale_policy='fixed')
    first = frames_mod.LeakCounter().add(masker.process(frame).mask, truth)
    plan = masker.scaled_detection.last_plan
    assert plan is not None and plan.tiles == list(range(len(plan.grid)))
    for _frame in range(len(plan.grid) + 1):
        assert frames_mod.LeakCounter().add(masker.process(frame).mask, truth) <= first
        assert len(masker.scaled_detection.last_plan.tiles) == 1  # type: ignore[union-attr]
    assert len(recorder.calls) == len(plan.grid) + 2  # one detector call per frame
    assert frames_mod.LeakCounter().add(fixed.process(frame).mask, truth) > first


def test_vga_frames_cost_one_detector_pass_as_before(scrfd: Any, t1_vga: np.ndarray) -> None:
    """At 640×480 the default policy calls the detector once per frame, on the whole frame."""
    recorder = RecordingDetector(scrfd)
    masker = AVPrivacyMasker(detector=recorder, seed=0)
    for _frame in range(3):
        result = masker.process(t1_vga)
    assert recorder.calls == [(640, 480)] * 3
    assert len(result.detections) == 6


def test_a_small_face_appearing_later_is_masked_in_the_frame_it_appears(
        scrfd: Any, patches: List[frames_mod.FacePatch]) -> None:
    """After the first full scan, the tile where a face walks in is scanned in that frame."""
    width, height = 1920, 1080
    grid = ScaledDetection().grid_for(width, height, scrfd.input_size_for(width, height))
    base = frames_mod.background(width, height, 4)
    tile = grid[len(grid) // 2 + 1]
    newcomer = [frames_mod.PlacedFace(0, 18.0, (tile.x0 + tile.x1) / 2.0,
                                      (tile.y0 + tile.y1) / 2.0, first_frame=3)]
    full = AVPrivacyMasker(detector=scrfd, seed=0, conf_thresh=0.3, scale_policy='full')
    frame, truth = frames_mod.render(base, patches, newcomer, 3)
    assert frames_mod.LeakCounter().add(full.process(frame).mask, truth) == 0  # detectable
    fixed = AVPrivacyMasker(detector=scrfd, seed=0, conf_thresh=0.3, scale_policy='fixed')
    assert frames_mod.LeakCounter().add(fixed.process(frame).mask, truth) == 1
    masker = AVPrivacyMasker(detector=scrfd, seed=0, conf_thresh=0.3)
    for index in range(5):
        frame, truth = frames_mod.render(base, patches, newcomer, index)
        result = masker.process(frame)
        assert frames_mod.LeakCounter().add(result.mask, truth) == 0, 'frame %d' % index
    assert len(truth) == 1


def test_faces_appearing_together_in_several_tiles_are_all_masked_when_they_appear(
        scrfd: Any, patches: List[frames_mod.FacePatch]) -> None:
    """Three small faces walking in at once, far apart: each is masked from its first frame."""
    width, height = 1920, 1080
    base = frames_mod.background(width, height, 6)
    walkers = [frames_mod.PlacedFace(k % len(patches), w, x, y, vx=1.0, first_frame=3)
               for k, (w, x, y) in enumerate([(24.0, 300.0, 200.0), (34.0, 1500.0, 850.0),
                                              (28.0, 1000.0, 560.0)])]
    walkers.append(frames_mod.PlacedFace(1 % len(patches), 40.0, 600.0, 900.0, vy=-1.0))
    fixed = AVPrivacyMasker(detector=scrfd, seed=0, conf_thresh=0.3, scale_policy='fixed')
    frame, truth = frames_mod.render(base, patches, walkers, 3)
    assert frames_mod.LeakCounter().add(fixed.process(frame).mask, truth) >= 2  # too small
    masker = AVPrivacyMasker(detector=scrfd, seed=0, conf_thresh=0.3, hold_frames=0)
    for index in range(7):
        frame, truth = frames_mod.render(base, patches, walkers, index)
        result = masker.process(frame)
        assert frames_mod.LeakCounter().add(result.mask, truth) == 0, 'frame %d' % index
        for face in truth:  # one box per face: window, tile and carried boxes merged
            overlap = intersection_over_smaller(np.vstack([face[None],
                                                           result.detections.boxes]))[0, 1:]
            assert int((overlap >= 0.5).sum()) == 1, 'frame %d' % index
    assert len(truth) == 4


@pytest.mark.parametrize('size', SIZES)
def test_leak_rates_per_size_bucket_on_a_moving_crowd_match_full_size_detection(
        scrfd: Any, patches: List[frames_mod.FacePatch], size: Tuple[int, int]) -> None:
    """Faces 8-60 px moving, a quarter walking in later: per bucket no worse than full size."""
    width, height = size
    rng = np.random.default_rng(11)
    grid = ScaledDetection().grid_for(width, height, scrfd.input_size_for(width, height))
    faces = frames_mod.layout(width, height, len(patches), list(rng.uniform(8.0, 60.0, 36)),
                              sorted({t.x1 - 32 for t in grid if t.x1 < width}),
                              sorted({t.y1 - 32 for t in grid if t.y1 < height}), seed=11,
                              speed=1.0, late_fraction=0.25, frames=8)
    base = frames_mod.background(width, height, 11)
    maskers = {policy: AVPrivacyMasker(detector=scrfd, seed=0, conf_thresh=0.3,
                                       scale_policy=policy) for policy in ('auto', 'full')}
    counts = {policy: frames_mod.LeakCounter() for policy in maskers}
    for index in range(8):
        frame, truth = frames_mod.render(base, patches, faces, index)
        for policy, masker in maskers.items():
            counts[policy].add(masker.process(frame).mask, truth)
    auto, full = counts['auto'], counts['full']
    assert auto.faces['20-50 px'] >= 60 and auto.faces['<20 px'] >= 40
    assert auto.leaks['20-50 px'] == 0
    assert auto.rate('<20 px') <= full.rate('<20 px') + 0.01


@pytest.mark.parametrize('size', SIZES)
def test_after_the_first_frame_every_detector_call_is_one_canvas_of_five_thirds_the_input(
        scrfd: Any, patches: List[frames_mod.FacePatch], size: Tuple[int, int]) -> None:
    """Frames with a tile and frames with change windows cost the same canvas, <= 5/3 input."""
    width, height = size
    det_w, det_h = scrfd.input_size_for(width, height)
    base = frames_mod.background(width, height, 8)
    faces = [frames_mod.PlacedFace(0, 22.0, width * 0.3, height * 0.4, first_frame=2),
             frames_mod.PlacedFace(1 % len(patches), 30.0, width * 0.7, height * 0.7)]
    recorder = RecordingDetector(scrfd)
    masker = AVPrivacyMasker(detector=recorder, seed=0, conf_thresh=0.3)
    kinds = []
    for index in range(5):
        masker.process(frames_mod.render(base, patches, faces, index)[0])
        plan = masker.scaled_detection.last_plan
        assert plan is not None
        kinds.append('windows' if plan.windows else 'tiles')
    assert kinds[2] == 'windows' and 'tiles' in kinds[1:]  # the walk-in, and the rotation
    canvases = set(recorder.calls[1:])
    assert len(recorder.calls) == 5 and len(canvases) == 1
    canvas_w, canvas_h = canvases.pop()
    assert canvas_w == det_w and canvas_w * canvas_h <= 5 / 3 * det_w * det_h
