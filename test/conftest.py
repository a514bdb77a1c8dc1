"""Shared fixtures: the real sample image, the real SCRFD weights, one colcon build per run."""

from __future__ import annotations

from pathlib import Path
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
from weights import HOW_TO_GET_SCRFD, scrfd_weights

REPO = Path(__file__).resolve().parents[1]
PACKAGE = 'av_privacy_ros'
COLCON_IGNORED = shutil.ignore_patterns(
    '.venv', '.git', 'build', 'install', 'log', 'demo_output', 'bench_output',
    'evaluation_output', '__pycache__', '*.egg-info', '.pytest_cache', 'sample_data')


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


@pytest.fixture(scope='session')
def colcon_install(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """
    Return the install prefix of the package after `colcon build` in a scratch workspace.

    Built once per test run: the colcon build test checks what it installs, and the launch tests
    run the launch files from it, as `ros2 launch` does after `source install/setup.bash`.
    """
    colcon = Path(sys.executable).with_name('colcon')
    if not colcon.exists():
        pytest.skip('colcon is not installed in this environment (make venv installs it)')
    workspace = tmp_path_factory.mktemp('colcon_ws')
    shutil.copytree(REPO, workspace / 'src' / PACKAGE, ignore=COLCON_IGNORED)
    run = subprocess.run([str(colcon), 'build', '--base-paths', 'src'], cwd=workspace,
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr
    return workspace / 'install' / PACKAGE
