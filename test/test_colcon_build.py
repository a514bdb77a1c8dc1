"""The package builds with colcon as an ament_python package and installs what ROS needs."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = 'av_privacy_ros'


def test_colcon_build_installs_executables_launch_and_config(colcon_install: Path) -> None:
    """`colcon build` puts the console scripts where `ros2 run` looks, and the share files."""
    prefix = colcon_install
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
