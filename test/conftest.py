"""Shared fixtures: the real sample image and the real SCRFD weights (skipped when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_MODELS = REPO.parent / 'shared' / 'models'


def scrfd_model_path() -> Path:
    """Return det_500m.onnx from $AV_PRIVACY_MODELS or ../shared/models, or skip the test."""
    for folder in (os.environ.get('AV_PRIVACY_MODELS'), str(SHARED_MODELS)):
        if folder and (Path(folder) / 'det_500m.onnx').is_file():
            return (Path(folder) / 'det_500m.onnx').resolve()
    pytest.skip('SCRFD weights not found: ../shared/models/det_500m.onnx is absent (a fresh '
                'clone has no research-licensed weights; CI provides them)')


@pytest.fixture(scope='session')
def scrfd_path() -> Path:
    """Path of the real SCRFD-500M weights."""
    return scrfd_model_path()


@pytest.fixture(scope='session')
def scrfd(scrfd_path: Path) -> object:
    """Return a real SCRFD-500M detector on the CPU provider."""
    from av_privacy_ros.detection import ScrfdDetector
    return ScrfdDetector(scrfd_path, ['CPUExecutionProvider'])


@pytest.fixture(scope='session')
def t1_full() -> np.ndarray:
    """Return insightface's real group photo (1280×886, 6 faces) as BGR."""
    from insightface.data import get_image
    return np.ascontiguousarray(get_image('t1'))


@pytest.fixture(scope='session')
def t1_vga(t1_full: np.ndarray) -> np.ndarray:
    """Return the group photo resized to 640×480."""
    return cv2.resize(t1_full, (640, 480), interpolation=cv2.INTER_AREA)
