"""Shared fixtures: the real sample image and the real SCRFD weights (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from weights import HOW_TO_GET_SCRFD, scrfd_weights


def scrfd_model_path() -> Path:
    """Return the SCRFD weights where the tools look for them (or ../shared/models), or skip."""
    path = scrfd_weights()
    if path is None:
        pytest.skip(HOW_TO_GET_SCRFD)
    return path


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
