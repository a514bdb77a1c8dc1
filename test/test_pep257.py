"""Run ament_pep257 (docstring conventions) over the package, launch files, scripts and tests."""

from pathlib import Path

from ament_pep257.main import main
import pytest

REPO = Path(__file__).resolve().parents[1]
CHECKED = ['av_privacy_ros', 'launch', 'scripts', 'test', 'setup.py']


@pytest.mark.linter
@pytest.mark.pep257
def test_pep257() -> None:
    """Docstrings follow the ROS 2 pep257 configuration."""
    paths = [str(REPO / p) for p in CHECKED if (REPO / p).exists()]
    rc = main(argv=paths)
    assert rc == 0, 'Found docstring style errors / warnings'
