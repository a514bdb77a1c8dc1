"""
Frame keys, their alignment, and reading mask frames from image folders and rosbags.

A frame key is an index (``frame_000123.png`` → 123) or a stamp in nanoseconds. Every read of
a bag in the evaluation goes through :func:`bag_images` (the one place that opens bags).
"""

from __future__ import annotations

import os
from pathlib import Path
import re
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

MATCH_MODES = ('index', 'stamp')
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff')

PathLike = Union[str, Path]

_SEC_NSEC = re.compile(r'(\d+)[._-](\d{9})(?!\d)')
_DECIMAL = re.compile(r'(\d+)\.(\d+)')
_DIGITS = re.compile(r'\d+')


def frame_key(name: str, mode: str = 'index') -> int:
    """
    Return the frame key in a file name (or a bare value): an index or a stamp in ns.

    ``index``: the last number in the name (``frame_000123.png`` → 123). ``stamp``: seconds and
    nanoseconds (``1700000000_123456789``), decimal seconds (``1700000000.25``) or integer
    nanoseconds (``1700000000123456789``).
    """
    stem = str(name)
    for ext in IMAGE_EXTENSIONS:
        if stem.lower().endswith(ext):
            stem = stem[:-len(ext)]
            break
    stem = os.path.basename(stem)
    if mode == 'index':
        numbers = _DIGITS.findall(stem)
        if not numbers:
            raise ValueError('no frame number in %r (name files like frame_000123.png)' % name)
        return int(numbers[-1])
    if mode != 'stamp':
        raise ValueError('frame matching must be one of %s, got %r' % (MATCH_MODES, mode))
    matches = list(_SEC_NSEC.finditer(stem))
    if matches:
        sec, nsec = matches[-1].groups()
        return int(sec) * 1_000_000_000 + int(nsec)
    matches = list(_DECIMAL.finditer(stem))
    if matches:
        sec, frac = matches[-1].groups()
        return int(sec) * 1_000_000_000 + int((frac + '000000000')[:9])
    numbers = _DIGITS.findall(stem)
    if not numbers:
        raise ValueError('no stamp in %r (name files like 1700000000_123456789.png)' % name)
    return int(numbers[-1])


def stamp_positions(reference_keys: Sequence[int], ours_keys: Sequence[int],
                    tolerance_ns: int) -> Tuple[Dict[int, int], Dict[int, int]]:
    """
    Map stamps to positions on the reference timeline.

    Reference stamps get their rank; each of our stamps gets the rank of the nearest reference
    stamp within ``tolerance_ns`` and is left out otherwise. Returns (ref key → position,
    ours key → position).
    """
    ref_sorted = sorted(set(reference_keys))
    ref_pos = {k: i for i, k in enumerate(ref_sorted)}
    ours_pos: Dict[int, int] = {}
    if not ref_sorted:
        return ref_pos, ours_pos
    ref_array = np.asarray(ref_sorted, dtype=np.int64)
    for key in ours_keys:
        i = int(np.searchsorted(ref_array, key))
        candidates = [j for j in (i - 1, i) if 0 <= j < len(ref_sorted)]
        j = min(candidates, key=lambda c: abs(int(ref_array[c]) - key))
        if abs(int(ref_array[j]) - key) <= tolerance_ns:
            ours_pos[key] = j
    return ref_pos, ours_pos


def in_range(key: int, start: Optional[int], stop: Optional[int]) -> bool:
    """Return whether ``start <= key < stop`` (a missing bound is open)."""
    return (start is None or key >= start) and (stop is None or key < stop)


def read_mask(path: PathLike) -> np.ndarray:
    """Read a mask image as bool H×W: any nonzero colour channel is face."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError('cannot read mask image %s' % path)
    if image.ndim == 3:
        image = image[:, :, :3].max(axis=2) if image.shape[2] >= 3 else image[:, :, 0]
    return image != 0


def list_frames(folder: PathLike, mode: str, what: str = 'mask',
                extensions: Sequence[str] = ('.png',)) -> List[Tuple[int, Path]]:
    """Return (key, path) of the image files in ``folder``, sorted by key; keys must be unique."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError('%s folder %s does not exist' % (what, folder))
    frames: Dict[int, Path] = {}
    for path in folder.iterdir():
        if path.suffix.lower() not in extensions or not path.is_file():
            continue
        key = frame_key(path.name, mode)
        if key in frames:
            raise ValueError('%s files %s and %s have the same frame key %d'
                             % (what, frames[key].name, path.name, key))
        frames[key] = path
    return sorted(frames.items())


def bag_images(bag: PathLike, topic: str) -> Iterator[Any]:
    """
    Yield the messages of an image topic in a rosbag2 (or rosbag1), in bag order.

    The one place the evaluation opens a bag, through the bag tool's reader
    (:func:`av_privacy_ros.bag.reader.open_bag`), so both tools read a bag with the same
    message definitions; the messages need ``encoding``, ``height``, ``width``, ``step``,
    ``data`` and ``header.stamp``. A missing, unreadable or corrupt bag, or a missing topic,
    raises ValueError naming the topics the bag has.
    """
    from ..bag.errors import BagError
    from ..bag.reader import iter_raw, open_bag

    bag = Path(bag)
    if not bag.exists():
        raise ValueError('bag %s does not exist' % bag)
    try:
        reader = open_bag(bag)
    except BagError as exc:
        raise ValueError(str(exc)) from exc
    try:
        connections = [c for c in reader.connections if c.topic == topic]
        if not connections:
            raise ValueError('bag %s has no topic %s (topics: %s)'
                             % (bag, topic, ', '.join(sorted({c.topic for c in
                                                              reader.connections}))))
        unparsed: Dict[str, str] = dict(getattr(reader, 'unparsed', {}))
        for conn in connections:
            if conn.msgtype in unparsed:
                raise ValueError('bag %s: the definition of %s (topic %s) cannot be read: %s'
                                 % (bag, conn.msgtype, topic, unparsed[conn.msgtype]))
        try:
            for conn, _, raw in iter_raw(reader, bag, connections):
                yield reader.deserialize(raw, conn.msgtype)
        except BagError as exc:
            raise ValueError(str(exc)) from exc
    finally:
        reader.close()


def read_bag_masks(bag: PathLike, topic: str, mode: str) -> Dict[int, np.ndarray]:
    """Read a mono8 mask topic from a rosbag2 (or rosbag1) as {frame key: bool mask}."""
    masks: Dict[int, np.ndarray] = {}
    for index, msg in enumerate(bag_images(bag, topic)):
        encoding = str(getattr(msg, 'encoding', '')).lower()
        if encoding not in ('mono8', '8uc1'):
            raise ValueError('mask topic %s must be mono8, got %r' % (topic, msg.encoding))
        height, width, step = int(msg.height), int(msg.width), int(msg.step)
        data = np.frombuffer(bytes(msg.data), np.uint8)
        if step < width or data.size < height * step:
            raise ValueError('mask message %d on %s is truncated' % (index, topic))
        mask = data[:height * step].reshape(height, step)[:, :width] != 0
        key = index if mode == 'index' else (int(msg.header.stamp.sec) * 1_000_000_000
                                             + int(msg.header.stamp.nanosec))
        masks[key] = mask
    return masks
