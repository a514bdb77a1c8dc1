"""
Find the bags of an archive and the mirrored output path of each.

A bag is a rosbag2 folder (a folder holding ``metadata.yaml``; nothing inside it is searched
further) or a ROS 1 ``.bag`` file.  Hidden files and folders (a leading dot, such as the
``.NAME.partial-PID`` staging folders of ``anonymize_bag``) are never bags.
"""

from __future__ import annotations

from dataclasses import dataclass
import os
from pathlib import Path
from typing import Dict, List, Tuple

ROS1_SUFFIX = '.bag'
METADATA = 'metadata.yaml'


@dataclass(frozen=True)
class BagInput:
    """One input bag: where it is, its key in the manifest, and what identifies its content."""

    path: Path
    relative: str
    """POSIX path relative to the input folder: the bag's key in the manifest."""
    size: int
    """Bytes of the bag (all files of a rosbag2 folder)."""
    mtime_ns: int
    """Latest modification time of its files, in nanoseconds."""

    @property
    def ros1(self) -> bool:
        """Return True for a ROS 1 ``.bag`` file."""
        return self.path.is_file() and self.path.suffix == ROS1_SUFFIX

    def output_relative(self) -> str:
        """Return the output folder relative to the output folder (a ROS 1 file loses .bag)."""
        if self.relative.endswith(ROS1_SUFFIX) and self.ros1:
            return self.relative[:-len(ROS1_SUFFIX)]
        return self.relative


def _identity(path: Path) -> Tuple[int, int]:
    """Return (total bytes, latest mtime in ns) of a file or of the files of a folder."""
    if path.is_file():
        stat = path.stat()
        return stat.st_size, stat.st_mtime_ns
    size, mtime = 0, 0
    for root, _, files in os.walk(path):
        for name in files:
            stat = (Path(root) / name).stat()
            size += stat.st_size
            mtime = max(mtime, stat.st_mtime_ns)
    return size, mtime


def check_folders(input_dir: Path, output_dir: Path) -> None:
    """
    Refuse folders that would mix inputs and outputs.

    :raises ValueError: when the input folder does not exist, or when one folder is the other or
        inside it (a rerun would then take outputs for inputs, or write into the inputs).
    """
    if not input_dir.is_dir():
        raise ValueError('input folder %s does not exist or is not a folder' % input_dir)
    src, dst = input_dir.resolve(), output_dir.resolve()
    if src == dst or src in dst.parents or dst in src.parents:
        raise ValueError('the output folder %s must be outside the input folder %s (and the '
                         'input outside the output)' % (output_dir, input_dir))


def find_bags(input_dir: Path) -> List[BagInput]:
    """
    Return every bag under ``input_dir``, sorted by relative path.

    :raises ValueError: when ``input_dir`` is itself one rosbag2 bag, or when two inputs would
        write the same output (``drive.bag`` beside a rosbag2 folder ``drive``).
    """
    input_dir = Path(input_dir)
    if (input_dir / METADATA).is_file():
        raise ValueError('%s is itself one rosbag2 bag, not a folder of bags; use anonymize_bag '
                         'for a single bag' % input_dir)
    found: List[BagInput] = []
    for root, dirs, files in os.walk(input_dir):
        here = Path(root)
        if METADATA in files:
            dirs[:] = []  # a rosbag2 folder: its files belong to this bag
            found.append(_bag(input_dir, here))
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith('.'))
        for name in sorted(files):
            if name.endswith(ROS1_SUFFIX) and not name.startswith('.'):
                found.append(_bag(input_dir, here / name))
    found.sort(key=lambda bag: bag.relative)
    owners: Dict[str, str] = {}
    for bag in found:
        out = bag.output_relative()
        if out in owners:
            raise ValueError('inputs %s and %s would both be written to %s; rename one'
                             % (owners[out], bag.relative, out))
        owners[out] = bag.relative
    return found


def _bag(input_dir: Path, path: Path) -> BagInput:
    size, mtime = _identity(path)
    relative = path.relative_to(input_dir).as_posix()
    return BagInput(path=path, relative=relative, size=size, mtime_ns=mtime)
