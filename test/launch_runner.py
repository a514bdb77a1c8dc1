"""
Run a package's launch file the way ``ros2 launch PACKAGE FILE name:=value ...`` does.

There is no ``ros2`` command-line tool without a ROS installation (ros2cli is not on PyPI), so
the launch tests start this script instead: it finds ``FILE`` in the share folder of
``PACKAGE`` through ``AMENT_PREFIX_PATH`` (as ros2launch does), includes it with the given
launch arguments and runs it with :class:`launch.LaunchService`.  Ctrl-C (SIGINT) shuts the
launched processes down, as it does for ``ros2 launch``.

Usage::

    python launch_runner.py av_privacy_ros anonymizer.launch.py image_topic:=/cam/image
"""

from __future__ import annotations

import os
import sys
from typing import List, Optional, Sequence, Tuple


def find_launch_file(package: str, file_name: str) -> str:
    """Return the path of ``file_name`` inside the share folder of ``package``."""
    from ament_index_python.packages import get_package_share_directory
    share = get_package_share_directory(package)
    for folder, _, files in sorted(os.walk(share)):
        if file_name in files:
            return os.path.join(folder, file_name)
    raise FileNotFoundError('%s has no launch file %s in %s' % (package, file_name, share))


def parse_launch_arguments(texts: Sequence[str]) -> List[Tuple[str, str]]:
    """Return the (name, value) pairs of ``name:=value`` arguments."""
    pairs = []
    for text in texts:
        name, separator, value = text.partition(':=')
        if not separator or not name:
            raise ValueError('A launch argument must look like name:=value, got %r.' % text)
        pairs.append((name, value))
    return pairs


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the launch file until it ends or SIGINT; return the launch service's status."""
    from launch import LaunchService
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    package, file_name, arguments = args[0], args[1], parse_launch_arguments(args[2:])
    path = find_launch_file(package, file_name)
    service = LaunchService(argv=args[2:])
    service.include_launch_description(IncludeLaunchDescription(
        PythonLaunchDescriptionSource(path), launch_arguments=arguments))
    return service.run()


if __name__ == '__main__':
    sys.exit(main())
