"""Run ament_flake8 (ROS 2 Python style) over the package, launch files, scripts and tests."""

from pathlib import Path

from ament_flake8.main import main_with_errors
import pytest

REPO = Path(__file__).resolve().parents[1]
CHECKED = ['av_privacy_ros', 'launch', 'scripts', 'test', 'setup.py']


@pytest.mark.flake8
@pytest.mark.linter
def test_flake8() -> None:
    """The code follows ament_flake8's rules (99 columns, single quotes, import order)."""
    paths = [str(REPO / p) for p in CHECKED if (REPO / p).exists()]
    rc, errors = main_with_errors(argv=paths)
    assert rc == 0, 'Found %d code style errors / warnings:\n' % len(errors) + '\n'.join(errors)
