"""AVPrivacyMasker end to end on the real photo: faces gone, fail-closed, bad input."""

from __future__ import annotations

from pathlib import Path

from av_privacy_ros import AVPrivacyMasker
from av_privacy_ros.detection import (CenterFaceDetector, Detections, FaceDetector,
                                      ScrfdDetector)
from av_privacy_ros.params import masker_kwargs, parameters_from_yaml_text, resolve
import cv2
import numpy as np
import pytest


@pytest.fixture(scope='module')
def masker(scrfd_path: Path) -> AVPrivacyMasker:
    """Return a CPU masker on SCRFD-500M with a fixed seed."""
    return AVPrivacyMasker(device='cpu', backend='scrfd', model_path=scrfd_path, seed=7)


def test_anonymized_frame_shows_no_face_to_either_detector(
        masker: AVPrivacyMasker, scrfd: ScrfdDetector, t1_vga: np.ndarray) -> None:
    """The 6 faces are found, masked and anonymized; neither detector finds one afterwards."""
    result = masker.process(t1_vga)
    assert not result.failed_closed
    assert len(result.detections) == 6
    assert len(scrfd.detect(result.image, 0.5)) == 0
    centerface = CenterFaceDetector(['CPUExecutionProvider'])
    assert len(centerface.detect(result.image, 0.5)) == 0
    assert np.array_equal(result.image[~result.mask], t1_vga[~result.mask])
    for x1, y1, x2, y2 in result.boxes.astype(int):
        face_before = t1_vga[y1:y2, x1:x2]
        face_after = result.image[y1:y2, x1:x2]
        assert np.any(face_before != face_after, axis=2).mean() > 0.9
    assert set(result.times) >= {'detect', 'mask', 'anonymize', 'total'}
    assert masker.backend == 'scrfd' and masker.provider == 'CPUExecutionProvider'


def test_seed_api_process_arrays_and_paths(masker: AVPrivacyMasker, t1_vga: np.ndarray,
                                           tmp_path: Path) -> None:
    """The seed's tuple API and file API give the same kind of result."""
    depth = np.full(t1_vga.shape[:2], 4000, np.uint16)
    image, depth_out, mask, boxes, times = masker.process_arrays(t1_vga, depth)
    assert image.shape == t1_vga.shape and mask.dtype == np.bool_ and boxes.shape == (6, 4)
    assert depth_out is not None and depth_out.dtype == np.uint16
    assert np.array_equal(depth_out, depth), 'depth noise is off by default'
    assert times['total'] >= times['detect'] > 0
    cv2.imwrite(str(tmp_path / 'frame.png'), t1_vga)
    cv2.imwrite(str(tmp_path / 'depth.png'), depth)
    image2, depth2, _, boxes2, _ = masker.process_paths(tmp_path / 'frame.png',
                                                        tmp_path / 'depth.png')
    assert boxes2.shape == (6, 4) and depth2 is not None and depth2.dtype == np.uint16
    with pytest.raises(ValueError, match='cannot read image'):
        masker.process_paths(tmp_path / 'missing.png')
    assert masker.detect_faces(t1_vga).shape == (6, 4)


def test_depth_noise_and_depth_guided_masks(masker: AVPrivacyMasker,
                                            t1_vga: np.ndarray) -> None:
    """With depth anonymization on, depth changes only under the mask."""
    depth = np.full(t1_vga.shape[:2], 4000, np.uint16)
    for x1, y1, x2, y2 in masker.detect_faces(t1_vga).astype(int):
        cv2.ellipse(depth, ((x1 + x2) // 2, (y1 + y2) // 2), ((x2 - x1) // 2, (y2 - y1) // 2),
                    0, 0, 360, 1500, -1)
    masker.configure(enable_depth_anon=True)
    try:
        result = masker.process(t1_vga, depth, use_depth_for_mask=True)
    finally:
        masker.configure(enable_depth_anon=False)
    assert np.array_equal(result.depth[~result.mask], depth[~result.mask])
    assert np.any(result.depth[result.mask] != depth[result.mask])
    box_mask = masker.build_mask_from_boxes(t1_vga.shape[:2], result.boxes)
    assert result.mask.sum() < box_mask.sum(), 'the 4 m background is left out'


class _FailingDetector(FaceDetector):
    """A real detector that starts failing, as a broken GPU driver or session would."""

    backend = 'scrfd'
    provider = 'CPUExecutionProvider'

    def __init__(self, inner: ScrfdDetector) -> None:
        self.inner = inner
        self.fail = False

    def detect(self, bgr: np.ndarray, conf_thresh: float) -> Detections:
        if self.fail:
            raise RuntimeError('CUDA error: an illegal memory access was encountered')
        return self.inner.detect(bgr, conf_thresh)


class _OwnDetector:
    """A detector of the user's own: any object with a name, a provider and ``detect``."""

    backend = 'own'
    provider = 'CPUExecutionProvider'

    def __init__(self, inner: ScrfdDetector) -> None:
        self.inner = inner

    def detect(self, bgr: np.ndarray, conf_thresh: float) -> Detections:
        return self.inner.detect(bgr, conf_thresh)


def test_any_object_with_the_detector_interface_is_a_face_detector(
        scrfd: ScrfdDetector, t1_vga: np.ndarray) -> None:
    """The detector interface is structural: the masker runs and names a detector of any kind."""
    own = _OwnDetector(scrfd)
    assert isinstance(own, FaceDetector) and isinstance(scrfd, FaceDetector)
    assert not isinstance(object(), FaceDetector)
    masker = AVPrivacyMasker(detector=own, seed=1)
    result = masker.process(t1_vga)
    assert masker.backend == 'own' and not result.failed_closed
    centres = ((result.boxes[:, :2] + result.boxes[:, 2:]) / 2).astype(int)
    assert len(result.detections) == 6 and result.mask[centres[:, 1], centres[:, 0]].all()


def test_detector_failure_fails_closed(scrfd: ScrfdDetector, t1_vga: np.ndarray) -> None:
    """When detection raises, the whole frame is anonymized; the original never comes back."""
    detector = _FailingDetector(scrfd)
    masker = AVPrivacyMasker(detector=detector, seed=1)
    assert not masker.process(t1_vga).failed_closed
    detector.fail = True
    depth = np.full(t1_vga.shape[:2], 2000, np.uint16)
    result = masker.process(t1_vga, depth)
    assert result.failed_closed and 'illegal memory access' in result.error
    assert result.mask.all()
    assert np.any(result.image != t1_vga, axis=2).mean() > 0.9
    assert len(scrfd.detect(result.image, 0.3)) == 0
    assert np.any(result.depth != depth)
    image, _, mask, boxes, _ = masker.process_arrays(t1_vga)
    assert mask.all() and not np.array_equal(image, t1_vga) and len(boxes) == 0


@pytest.mark.parametrize('image, depth, kwargs, message', [
    (np.zeros((48, 64), np.uint8), None, {}, 'H×W×3'),
    (np.zeros((48, 64, 4), np.uint8), None, {}, 'H×W×3'),
    (np.zeros((48, 64, 3), np.float32), None, {}, 'uint8'),
    (np.zeros((0, 64, 3), np.uint8), None, {}, 'empty'),
    ([[1, 2, 3]], None, {}, 'numpy array'),
    (np.zeros((48, 64, 3), np.uint8), np.zeros((24, 32), np.uint16), {}, 'align depth'),
    (np.zeros((48, 64, 3), np.uint8), np.zeros((48, 64), np.int32), {}, 'uint16'),
    (np.zeros((48, 64, 3), np.uint8), None, {'use_depth_for_mask': True}, 'need a depth'),
])
def test_bad_input_is_a_clear_error(masker: AVPrivacyMasker, image: np.ndarray,
                                    depth: np.ndarray, kwargs: dict, message: str) -> None:
    """Malformed frames raise ValueError with a sentence that says what is wrong."""
    with pytest.raises(ValueError, match=message):
        masker.process(image, depth, **kwargs)


def test_live_settings_are_validated(masker: AVPrivacyMasker) -> None:
    """configure() applies valid settings and rejects invalid ones with the reason."""
    masker.configure(conf_thresh=0.4)
    assert masker.conf_thresh == 0.4
    with pytest.raises(ValueError, match='conf_thresh'):
        masker.configure(conf_thresh=1.5)
    with pytest.raises(ValueError, match='unknown setting'):
        masker.configure(colour='red')
    masker.configure(conf_thresh=0.5)


def test_parameter_table_builds_a_masker(scrfd_path: Path, t1_vga: np.ndarray) -> None:
    """A node params YAML maps onto AVPrivacyMasker; bad values are refused with a reason."""
    text = ('/**:\n  ros__parameters:\n    detector:\n      backend: scrfd\n'
            '      model_path: %s\n      providers: [cpu]\n      conf_thresh: 0.3\n'
            '    anonymizer:\n      block: 16\n' % scrfd_path)
    values = resolve(parameters_from_yaml_text(text))
    masker = AVPrivacyMasker(**masker_kwargs(values))
    assert masker.conf_thresh == 0.3 and masker.anon_block == 16
    assert len(masker.process(t1_vga).detections) == 6
    with pytest.raises(ValueError, match='conf_thresh must be <= 0.5, got 2.0 .the privacy floor'):
        parameters_from_yaml_text('/**:\n  ros__parameters:\n    detector:\n'
                                  '      conf_thresh: 2.0\n')
    with pytest.raises(ValueError, match='unknown parameter'):
        parameters_from_yaml_text('/**:\n  ros__parameters:\n    detektor:\n      x: 1\n')
