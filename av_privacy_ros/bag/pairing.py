"""
Which depth goes with which colour.

Depth topics pair with colour topics by camera name, depth messages with colour messages by
header stamp.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Set, Tuple

MessageKey = Tuple[int, int]
"""A message of one topic: (receive timestamp, how many before it had the same timestamp)."""

# Topic-name words that say what an image is, not which camera it comes from.
_KIND_TOKENS = frozenset((
    'image', 'images', 'img', 'raw', 'rect', 'color', 'colour', 'rgb', 'bgr', 'depth',
    'aligned', 'to', 'registered', 'compressed', 'compresseddepth', 'theora', 'ffmpeg',
    'zstd', 'mono', 'data'))


def camera_tokens(topic: str) -> Tuple[str, ...]:
    """
    Return the words of a topic name that identify its camera.

    Words that describe the image kind (image, raw, color, rgb, depth, aligned, compressed, ...)
    are dropped, so ``/camera/color/image_raw`` and ``/camera/aligned_depth_to_color/image_raw``
    both give ``('camera',)``, and ``/carla/ego/rgb_front/image`` and
    ``/carla/ego/depth_front/image`` both give ``('carla', 'ego', 'front')``.
    """
    words = topic.lower().replace('-', '_').replace('/', '_').split('_')
    return tuple(word for word in words if word and word not in _KIND_TOKENS)


def is_depth_name(topic: str) -> bool:
    """Return True when a topic name says it carries depth (a ``depth`` word)."""
    words = topic.lower().replace('/', '_').split('_')
    return 'depth' in words or 'compresseddepth' in words


def _common_prefix(a: Sequence[str], b: Sequence[str]) -> int:
    count = 0
    for x, y in zip(a, b):
        if x != y:
            break
        count += 1
    return count


def _depth_preference(topic: str) -> Tuple[int, int, str]:
    words = set(topic.lower().replace('/', '_').split('_'))
    aligned = bool(words & {'aligned', 'registered'})
    return (0 if aligned else 1, len(topic), topic)


def pair_depth_topics(colour_topics: Sequence[str], depth_topics: Sequence[str]
                      ) -> Dict[str, str]:
    """
    Pair colour topics with depth topics of the same camera; return colour -> depth.

    A depth topic pairs with the colour topic whose camera words (see :func:`camera_tokens`)
    are equal; when several depth topics match, one aligned or registered to colour is
    preferred, then the shortest name.  Colour topics are served in the given order (put raw
    topics before compressed ones), and each depth topic pairs at most once.  A colour topic
    with no exact match takes the depth topic with the longest common leading camera words,
    when there is exactly one such topic.
    """
    pairs: Dict[str, str] = {}
    taken: Set[str] = set()
    for colour in colour_topics:
        key = camera_tokens(colour)
        exact = [d for d in depth_topics if d not in taken and camera_tokens(d) == key]
        if exact:
            best = min(exact, key=_depth_preference)
            pairs[colour] = best
            taken.add(best)
    for colour in colour_topics:
        if colour in pairs:
            continue
        key = camera_tokens(colour)
        scored = [(_common_prefix(key, camera_tokens(d)), d) for d in depth_topics
                  if d not in taken]
        scored = [(score, d) for score, d in scored if score > 0]
        if not scored:
            continue
        top = max(score for score, _ in scored)
        best_list = [d for score, d in scored if score == top]
        if len(best_list) == 1:
            pairs[colour] = best_list[0]
            taken.add(best_list[0])
    return pairs


def pair_stamps(colour: Sequence[Optional[int]], depth: Sequence[Optional[int]],
                slop_ns: int) -> Tuple[Dict[int, int], Dict[int, Optional[int]]]:
    """
    Pair colour and depth messages by header stamp; return (colour -> depth, depth -> source).

    Pairs are the closest stamps within ``slop_ns`` (inclusive), each message used at most once
    (closest pairs first).  ``source`` maps every depth message to the colour message whose mask
    it uses: its pair, or else the colour message nearest in stamp (None when there is none).
    Messages with an unknown stamp (None) are never paired.
    """
    order = sorted((s, i) for i, s in enumerate(colour) if s is not None)
    c_stamps = [s for s, _ in order]
    candidates: List[Tuple[int, int, int]] = []
    for j, stamp in enumerate(depth):
        if stamp is None:
            continue
        lo = bisect.bisect_left(c_stamps, stamp - slop_ns)
        hi = bisect.bisect_right(c_stamps, stamp + slop_ns)
        for k in range(lo, hi):
            candidates.append((abs(c_stamps[k] - stamp), order[k][1], j))
    candidates.sort()
    c_to_d: Dict[int, int] = {}
    d_to_c: Dict[int, Optional[int]] = {}
    for _, i, j in candidates:
        if i in c_to_d or j in d_to_c:
            continue
        c_to_d[i] = j
        d_to_c[j] = i
    for j, stamp in enumerate(depth):
        if j in d_to_c:
            continue
        if stamp is None or not c_stamps:
            d_to_c[j] = None
            continue
        k = bisect.bisect_left(c_stamps, stamp)
        near = [x for x in (k - 1, k) if 0 <= x < len(c_stamps)]
        best = min(near, key=lambda x: abs(c_stamps[x] - stamp))
        d_to_c[j] = order[best][1]
    return c_to_d, d_to_c


class MessageKeys:
    """Gives each message of one topic its :data:`MessageKey`, in reading order."""

    def __init__(self) -> None:
        self._seen: Dict[int, int] = {}

    def next_key(self, timestamp: int) -> MessageKey:
        """Return the key of the next message received at ``timestamp``."""
        count = self._seen.get(timestamp, 0)
        self._seen[timestamp] = count + 1
        return (timestamp, count)


@dataclass
class StampPairing:
    """The pairing of one camera's colour and depth messages, found in a first pass."""

    colour_to_depth: Dict[MessageKey, MessageKey] = field(default_factory=dict)
    depth_to_colour: Dict[MessageKey, Optional[MessageKey]] = field(default_factory=dict)
    paired_depth: Set[MessageKey] = field(default_factory=set)

    @classmethod
    def from_stamps(cls, colour: Sequence[Tuple[MessageKey, Optional[int]]],
                    depth: Sequence[Tuple[MessageKey, Optional[int]]],
                    slop_ns: int) -> 'StampPairing':
        """Pair (key, header stamp) lists of colour and depth messages (see pair_stamps)."""
        c_to_d, d_to_c = pair_stamps([s for _, s in colour], [s for _, s in depth], slop_ns)
        colour_to_depth = {colour[i][0]: depth[j][0] for i, j in c_to_d.items()}
        depth_to_colour = {depth[j][0]: (colour[i][0] if i is not None else None)
                           for j, i in d_to_c.items()}
        return cls(colour_to_depth, depth_to_colour, set(colour_to_depth.values()))

    def mask_users(self) -> Dict[MessageKey, int]:
        """Return, per colour message, how many unpaired depth messages use its mask."""
        users: Dict[MessageKey, int] = {}
        for dkey, ckey in self.depth_to_colour.items():
            if ckey is not None and dkey not in self.paired_depth:
                users[ckey] = users.get(ckey, 0) + 1
        return users
