"""The package builds with colcon as an ament_python package and installs what ROS needs."""

from pathlib import Path
import shutil
import subprocess
import sys

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = 'av_privacy_ros'
IGNORED = shutil.ignore_patterns('.venv', '.git', 'build', 'install', 'log', 'demo_output',
                                 'bench_output', 'evaluation_output', '__pycache__',
                                 '*.egg-info', '.pytest_cache')


def test_colcon_build_installs_executables_launch_and_config(tmp_path: Path) -> None:
    """`colcon build` puts the console scripts where `ros2 run` looks, and the share files."""
    colcon = Path(sys.executable).with_name('colcon')
    if not colcon.exists():
        pytest.skip('colcon is not installed in this environment (make venv installs it)')
    source = tmp_path / 'src' / PACKAGE
    shutil.copytree(REPO, source, ignore=IGNORED)
    run = subprocess.run([str(colcon), 'build', '--base-paths', 'src'], cwd=tmp_path,
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr
    prefix = tmp_path / 'install' / PACKAGE
    executables = {p.name for p in (prefix / 'lib' / PACKAGE).iterdir()}
    assert {'anonymizer_node', 'anonymize_bag', 'evaluate_masks',
            'sample_camera'} <= executables
    share = prefix / 'share' / PACKAGE
    assert (share / 'package.xml').is_file()
    assert (prefix / 'share' / 'ament_index' / 'resource_index' / 'packages' / PACKAGE).is_file()
    for name in (p.name for p in (REPO / 'launch').glob('*.launch.py')):
        assert (share / 'launch' / name).is_file(), name
    for config in (REPO / 'config').iterdir():
        assert (share / 'config' / config.name).is_file(), config.name
