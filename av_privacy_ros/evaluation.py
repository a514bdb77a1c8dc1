"""
Evaluate our face masks against reference masks, ground-truth boxes and timings.

``evaluate_masks SESSIONS`` reads a sessions file (YAML or CSV), aligns our masks with the
reference masks of each session (e.g. SAM masks of the same recording), and writes a per-frame
CSV, a Markdown (optionally HTML) report and PNG plots. With ``--produce`` it first runs the
anonymization pipeline over each session's images, so one command goes from raw frames to the
report. The report has four parts:

* Dice and Recall per session, environment, face count and overall;
* speed (FPS, latency percentiles per stage) from the per-frame timings;
* privacy (per-face coverage of ground-truth boxes, leak rate, leak runs, faces the detector
  still finds in the anonymized frames) when ground-truth boxes are given.

The metric, alignment and aggregation functions at the top of this module are pure numpy and
take no files; the I/O, the pipeline run, the plots and the report follow them.
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass, field
import html
import json
import math
import os
from pathlib import Path
import re
import sys
import time
from typing import (Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple,
                    Union)

import cv2
import numpy as np
import yaml

MATCH_MODES = ('index', 'stamp')
#: Face size classes by sqrt(box width * box height) in pixels, as COCO's 32² / 96² areas.
SMALL_FACE_PX = 32.0
LARGE_FACE_PX = 96.0
SIZE_CLASSES = ('small', 'medium', 'large')
#: IoU above which a detection in an anonymized frame counts as finding a ground-truth face.
RESIDUAL_IOU = 0.3
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff')
STAT_KEYS = ('n', 'mean', 'std', 'median', 'p5')
#: Stage order of the speed table; stages the pipeline reports beyond these follow them.
TIMING_STAGES = ('detect', 'track', 'mask', 'anonymize', 'depth', 'total')

PathLike = Union[str, Path]


# ----------------------------------------------------------------------------------------------
# Pure metrics (numpy only)
# ----------------------------------------------------------------------------------------------
def dice_recall(ours: np.ndarray, reference: np.ndarray) -> Tuple[float, float, bool]:
    """
    Return (Dice, Recall, both_empty) of two same-size masks (nonzero = face).

    Dice = 2|A∩B| / (|A| + |B|) and Recall = |A∩B| / |B| with A = ours and B = reference.
    Both empty: Dice 1, Recall 1 and ``both_empty`` True (agreement: no face, none masked).
    Reference empty but ours not: Dice 0, Recall 1 (no face pixel was missed). Ours empty but
    the reference not: Dice 0, Recall 0.
    """
    a = _as_bool(ours)
    b = _as_bool(reference)
    if a.shape != b.shape:
        raise ValueError('masks differ in size: ours %s, reference %s' % (a.shape, b.shape))
    area_a = int(np.count_nonzero(a))
    area_b = int(np.count_nonzero(b))
    return _dice_recall_counts(int(np.count_nonzero(a & b)) if area_a and area_b else 0,
                               area_a, area_b)


def _dice_recall_counts(inter: int, area_a: int, area_b: int) -> Tuple[float, float, bool]:
    if area_a == 0 and area_b == 0:
        return 1.0, 1.0, True
    dice = 2.0 * inter / float(area_a + area_b)
    recall = inter / float(area_b) if area_b else 1.0
    return dice, recall, False


def summarize(values: Iterable[float]) -> Dict[str, float]:
    """
    Return n, mean, std (population, ddof=0), median and 5th percentile of ``values``.

    NaN values are ignored; with no values every statistic but ``n`` is NaN.
    """
    array = np.asarray(list(values), dtype=np.float64).reshape(-1)
    array = array[~np.isnan(array)]
    if array.size == 0:
        return {'n': 0, 'mean': math.nan, 'std': math.nan, 'median': math.nan,
                'p5': math.nan}
    return {'n': int(array.size), 'mean': float(array.mean()), 'std': float(array.std()),
            'median': float(np.median(array)), 'p5': float(np.percentile(array, 5))}


def pair_positions(reference: Iterable[int], ours: Iterable[int], shift: int
                   ) -> List[Tuple[int, int]]:
    """Return the (reference, ours) position pairs for ``shift``: ours p + shift is ref p."""
    ours_set = set(ours)
    return [(p, p + shift) for p in sorted(reference) if p + shift in ours_set]


def shift_frame_dice(reference: Mapping[int, np.ndarray], ours: Mapping[int, np.ndarray],
                     max_shift: int) -> Dict[int, Dict[int, float]]:
    """
    Return {shift: {reference position: Dice}} for every shift in [-max_shift, max_shift].

    A shift s pairs reference frame p with our frame p + s (our masks lag by s frames).
    Shifts without any pair are left out.
    """
    if max_shift < 0:
        raise ValueError('the shift search range must be >= 0, got %d' % max_shift)
    ref_bool = {p: _as_bool(m) for p, m in reference.items()}
    ours_bool = {p: _as_bool(m) for p, m in ours.items()}
    ref_area = {p: int(np.count_nonzero(m)) for p, m in ref_bool.items()}
    ours_area = {p: int(np.count_nonzero(m)) for p, m in ours_bool.items()}
    per_shift: Dict[int, Dict[int, float]] = {}
    for shift in range(-max_shift, max_shift + 1):
        pairs = pair_positions(ref_bool, ours_bool, shift)
        if not pairs:
            continue
        dice: Dict[int, float] = {}
        for ref_pos, ours_pos in pairs:
            a_area, b_area = ours_area[ours_pos], ref_area[ref_pos]
            inter = (int(np.count_nonzero(ours_bool[ours_pos] & ref_bool[ref_pos]))
                     if a_area and b_area else 0)
            dice[ref_pos] = _dice_recall_counts(inter, a_area, b_area)[0]
        per_shift[shift] = dice
    return per_shift


def shift_scores(reference: Mapping[int, np.ndarray], ours: Mapping[int, np.ndarray],
                 max_shift: int) -> Dict[int, Tuple[float, int]]:
    """
    Return {shift: (mean Dice, number of pairs)} for every shift in [-max_shift, max_shift].

    A shift s pairs reference frame p with our frame p + s (our masks lag by s frames).
    Shifts without any pair are left out.
    """
    return {shift: (sum(dice.values()) / len(dice), len(dice))
            for shift, dice in shift_frame_dice(reference, ours, max_shift).items()}


def _as_bool(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    return mask if mask.dtype == np.bool_ else mask != 0


SHIFT_MARGIN = 0.02


def best_shift(scores: Mapping[int, Tuple[float, int]], min_pair_fraction: float = 0.5,
               frame_dice: Optional[Mapping[int, Mapping[int, float]]] = None,
               margin: float = SHIFT_MARGIN) -> int:
    """
    Return the frame shift to score with: 0 unless another shift is clearly better.

    A shift must pair at least ``min_pair_fraction`` of the best-paired shift's frames, so a
    shift that overlaps in a handful of frames cannot win by chance. Shift 0 (the frames as
    named) is kept unless another shift raises the mean Dice by at least ``margin``; with
    ``frame_dice`` ({shift: {reference position: Dice}}) that gain is measured over the
    reference frames both shifts pair, so a shift cannot win by dropping the frames where our
    masks are weakest. Among shifts that beat 0, the largest gain wins; ties go to the smaller
    absolute shift, then to the positive one.
    """
    if not scores:
        raise ValueError('no shift pairs any of our frames with a reference frame')
    most = max(n for _, n in scores.values())
    eligible = [s for s, (_, n) in scores.items() if n >= min_pair_fraction * most]
    if 0 not in eligible:
        return min(eligible, key=lambda s: (-round(scores[s][0], 12), abs(s), -s))

    def gain(shift: int) -> float:
        if frame_dice is None:
            return scores[shift][0] - scores[0][0]
        shared = set(frame_dice.get(shift, {})) & set(frame_dice.get(0, {}))
        if not shared:
            return -math.inf
        return sum(frame_dice[shift][p] - frame_dice[0][p] for p in shared) / len(shared)

    gains = {s: gain(s) for s in eligible if s != 0}
    better = [s for s, g in gains.items() if g >= margin - 1e-12]
    if not better:
        return 0
    return min(better, key=lambda s: (-round(gains[s], 12), abs(s), -s))


def box_coverage(mask: np.ndarray, box: Sequence[float]) -> float:
    """
    Return the fraction of the pixels of ``box`` (x1, y1, x2, y2) that ``mask`` covers.

    The box is rounded outwards to whole pixels and clipped to the image; a box wholly outside
    the image returns NaN.
    """
    height, width = mask.shape[:2]
    x1 = max(int(math.floor(box[0])), 0)
    y1 = max(int(math.floor(box[1])), 0)
    x2 = min(int(math.ceil(box[2])), width)
    y2 = min(int(math.ceil(box[3])), height)
    if x2 <= x1 or y2 <= y1:
        return math.nan
    return float(np.count_nonzero(mask[y1:y2, x1:x2])) / float((x2 - x1) * (y2 - y1))


def face_size(box: Sequence[float]) -> float:
    """Return the size of a face box in pixels: sqrt(width * height)."""
    return math.sqrt(max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0))


def size_class(box: Sequence[float]) -> str:
    """Return 'small' (< 32 px), 'medium' (32-96 px) or 'large' (>= 96 px) for a face box."""
    size = face_size(box)
    if size < SMALL_FACE_PX:
        return 'small'
    if size < LARGE_FACE_PX:
        return 'medium'
    return 'large'


def box_iou(box: Sequence[float], others: np.ndarray) -> np.ndarray:
    """Return the IoU of one box with each row of an N×4 array of boxes."""
    others = np.asarray(others, dtype=np.float64).reshape(-1, 4)
    if others.size == 0:
        return np.zeros((0,), np.float64)
    ix1 = np.maximum(box[0], others[:, 0])
    iy1 = np.maximum(box[1], others[:, 1])
    ix2 = np.minimum(box[2], others[:, 2])
    iy2 = np.minimum(box[3], others[:, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area = max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0)
    areas = (np.clip(others[:, 2] - others[:, 0], 0, None)
             * np.clip(others[:, 3] - others[:, 1], 0, None))
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def centres_in_mask(mask: np.ndarray, boxes: np.ndarray) -> int:
    """Return how many boxes have their centre pixel inside ``mask``."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if boxes.size == 0:
        return 0
    height, width = mask.shape[:2]
    cx = np.clip(((boxes[:, 0] + boxes[:, 2]) / 2).astype(np.int64), 0, width - 1)
    cy = np.clip(((boxes[:, 1] + boxes[:, 3]) / 2).astype(np.int64), 0, height - 1)
    return int(np.count_nonzero(mask[cy, cx]))


def longest_run(positions: Iterable[int]) -> Tuple[int, Optional[int]]:
    """Return (length, first position) of the longest run of consecutive integer positions."""
    best, best_start = 0, None
    run, run_start, previous = 0, None, None
    for pos in sorted(set(positions)):
        if previous is not None and pos == previous + 1:
            run += 1
        else:
            run, run_start = 1, pos
        if run > best:
            best, best_start = run, run_start
        previous = pos
    return best, best_start


def latency_stats(seconds: Iterable[float]) -> Dict[str, float]:
    """Return n, mean, p50, p95, p99 and max in milliseconds, and FPS = 1 / mean."""
    array = np.asarray(list(seconds), dtype=np.float64).reshape(-1)
    array = array[~np.isnan(array)] * 1000.0
    if array.size == 0:
        return {'n': 0, 'mean_ms': math.nan, 'p50_ms': math.nan, 'p95_ms': math.nan,
                'p99_ms': math.nan, 'max_ms': math.nan, 'fps': math.nan}
    p50, p95, p99 = np.percentile(array, [50, 95, 99])
    mean = float(array.mean())
    return {'n': int(array.size), 'mean_ms': mean, 'p50_ms': float(p50),
            'p95_ms': float(p95), 'p99_ms': float(p99), 'max_ms': float(array.max()),
            'fps': 1000.0 / mean if mean > 0 else math.inf}


def group_rows(rows: Sequence[Mapping[str, Any]], key: Callable[[Mapping[str, Any]], Any]
               ) -> Dict[Any, List[Mapping[str, Any]]]:
    """Group rows by ``key(row)``, keeping the first-seen order of the groups."""
    groups: Dict[Any, List[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(key(row), []).append(row)
    return groups


def aggregate_frames(rows: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
    """
    Aggregate per-frame rows (dice, recall, both_empty) into Dice/Recall statistics.

    Returns ``frames``, ``both_empty``, ``dice`` and ``recall`` (summaries over every frame,
    both-empty frames counting as 1) and ``dice_faces`` (Dice over the frames where at least
    one mask has a face).
    """
    return {
        'frames': len(rows),
        'both_empty': sum(1 for r in rows if r['both_empty']),
        'dice': summarize(r['dice'] for r in rows),
        'recall': summarize(r['recall'] for r in rows),
        'dice_faces': summarize(r['dice'] for r in rows if not r['both_empty']),
    }


def aggregate_tables(rows: Sequence[Mapping[str, Any]]) -> Dict[str, Dict[str, Dict[str, Any]]]:
    """Return aggregates per session, environment, face count and overall (``all``)."""
    return {
        'session': {k: aggregate_frames(v)
                    for k, v in group_rows(rows, lambda r: r['session']).items()},
        'environment': {k: aggregate_frames(v)
                        for k, v in group_rows(rows, lambda r: r['environment']).items()},
        'faces': {k: aggregate_frames(v)
                  for k, v in group_rows(rows, lambda r: str(r['faces'])).items()},
        'overall': {'all': aggregate_frames(rows)},
    }


def privacy_summary(faces: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
    """
    Summarize per-face records (coverage, leaked, size_class, track, position, residual).

    Returns face and leak counts, leak rate, coverage statistics, per-size counts, the longest
    run of consecutive frames with a leak (any face), and the longest leak run per track.
    """
    valid = [f for f in faces if not math.isnan(f['coverage'])]
    leaked = [f for f in valid if f['leaked']]
    by_size = {}
    for name in SIZE_CLASSES:
        members = [f for f in valid if f['size_class'] == name]
        hits = sum(1 for f in members if f['leaked'])
        by_size[name] = {'faces': len(members), 'leaked': hits,
                         'rate': hits / len(members) if members else math.nan}
    frame_run, frame_start = longest_run(f['position'] for f in leaked)
    tracks: Dict[Any, Tuple[int, Optional[int]]] = {}
    for track, members in group_rows([f for f in leaked if f['track'] is not None],
                                     lambda f: f['track']).items():
        tracks[track] = longest_run(m['position'] for m in members)
    residual = [f for f in valid if f.get('residual') is not None]
    return {
        'faces': len(valid),
        'outside': len(faces) - len(valid),
        'leaked': len(leaked),
        'leak_rate': len(leaked) / len(valid) if valid else math.nan,
        'coverage': summarize(f['coverage'] for f in valid),
        'by_size': by_size,
        'frames_with_leak': len({f['position'] for f in leaked}),
        'longest_frame_run': frame_run,
        'longest_frame_run_start': frame_start,
        'track_runs': tracks,
        'residual_checked': len(residual),
        'residual_detected': sum(1 for f in residual if f['residual']),
    }


# ----------------------------------------------------------------------------------------------
# Frame keys and alignment
# ----------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------
# Sessions and files
# ----------------------------------------------------------------------------------------------
SESSION_FIELDS = ('id', 'environment', 'faces', 'ours', 'ours_topic', 'reference', 'start',
                  'stop', 'boxes', 'images', 'depth', 'timings')


@dataclass
class Session:
    """One recording session of the sessions file; paths are resolved against the file."""

    name: str
    environment: str = ''
    faces: str = ''
    ours: Optional[Path] = None
    ours_topic: Optional[str] = None
    reference: Optional[Path] = None
    start: Optional[float] = None
    stop: Optional[float] = None
    boxes: Optional[Path] = None
    images: Optional[Path] = None
    depth: Optional[Path] = None
    timings: Optional[Path] = None


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == '')


def _number(value: Any, what: str) -> Optional[float]:
    if _blank(value):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError('%s must be a number, got %r' % (what, value)) from None


def parse_sessions(entries: Sequence[Mapping[str, Any]], base: Path) -> List[Session]:
    """Validate session entries (dicts from YAML or CSV) and resolve their paths."""
    sessions: List[Session] = []
    seen = set()
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, Mapping):
            raise ValueError('session %d is not a mapping of fields' % number)
        unknown = sorted(set(map(str, entry)) - set(SESSION_FIELDS))
        if unknown:
            raise ValueError('session %d: unknown fields %s (known: %s)'
                             % (number, ', '.join(unknown), ', '.join(SESSION_FIELDS)))
        sid = '' if _blank(entry.get('id')) else str(entry['id']).strip()
        if not sid:
            raise ValueError('session %d has no id' % number)
        if sid in seen:
            raise ValueError('session id %r appears twice' % sid)
        seen.add(sid)

        def path_of(name: str) -> Optional[Path]:
            value = entry.get(name)
            if _blank(value):
                return None
            path = Path(str(value).strip()).expanduser()
            return path if path.is_absolute() else base / path

        session = Session(
            name=sid,
            environment='' if _blank(entry.get('environment')) else str(entry['environment']),
            faces='' if _blank(entry.get('faces')) else str(entry['faces']).strip(),
            ours=path_of('ours'), reference=path_of('reference'), boxes=path_of('boxes'),
            images=path_of('images'), depth=path_of('depth'), timings=path_of('timings'),
            ours_topic=None if _blank(entry.get('ours_topic')) else str(entry['ours_topic']),
            start=_number(entry.get('start'), 'session %s: start' % sid),
            stop=_number(entry.get('stop'), 'session %s: stop' % sid))
        if session.start is not None and session.stop is not None \
                and session.stop <= session.start:
            raise ValueError('session %s: stop (%s) must be after start (%s)'
                             % (sid, entry.get('stop'), entry.get('start')))
        sessions.append(session)
    if not sessions:
        raise ValueError('the sessions file lists no sessions')
    return sessions


def load_sessions(path: PathLike) -> List[Session]:
    """Read a sessions file: YAML (a list, or ``sessions:`` with a list) or CSV with a header."""
    path = Path(path)
    try:
        text = path.read_text(encoding='utf-8')
    except OSError as exc:
        raise ValueError('cannot read sessions file %s: %s' % (path, exc.strerror)) from exc
    base = path.resolve().parent
    if path.suffix.lower() == '.csv':
        reader = csv.DictReader(line for line in text.splitlines()
                                if line.strip() and not line.lstrip().startswith('#'))
        entries = [{k.strip(): v for k, v in row.items() if k is not None and not _blank(v)}
                   for row in reader]
        return parse_sessions(entries, base)
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError('sessions file %s is not valid YAML: %s' % (path, exc)) from exc
    if isinstance(document, Mapping):
        document = document.get('sessions')
    if not isinstance(document, list):
        raise ValueError('sessions file %s must hold a list of sessions (or sessions: [...])'
                         % path)
    return parse_sessions(document, base)


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


def read_bag_masks(bag: PathLike, topic: str, mode: str) -> Dict[int, np.ndarray]:
    """Read a mono8 mask topic from a rosbag2 (or rosbag1) with rosbags' AnyReader."""
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import get_typestore, Stores

    bag = Path(bag)
    if not bag.exists():
        raise ValueError('bag %s does not exist' % bag)
    masks: Dict[int, np.ndarray] = {}
    with AnyReader([bag], default_typestore=get_typestore(Stores.ROS2_HUMBLE)) as reader:
        connections = [c for c in reader.connections if c.topic == topic]
        if not connections:
            raise ValueError('bag %s has no topic %s (topics: %s)'
                             % (bag, topic, ', '.join(sorted({c.topic for c in
                                                              reader.connections}))))
        for index, (conn, _, raw) in enumerate(reader.messages(connections=connections)):
            msg = reader.deserialize(raw, conn.msgtype)
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


def read_boxes(path: PathLike, mode: str) -> List[Dict[str, Any]]:
    """
    Read ground-truth face boxes: CSV (frame,x1,y1,x2,y2[,track]) or JSON.

    JSON is a list of ``{"frame": f, "box": [x1, y1, x2, y2], "track": t}`` objects (or with
    x1..y2 keys), or a mapping from frame to a list of such objects or of bare boxes.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding='utf-8')
    except OSError as exc:
        raise ValueError('cannot read boxes file %s: %s' % (path, exc.strerror)) from exc
    records: List[Tuple[Any, Any, Any]] = []  # (frame, box, track)
    if path.suffix.lower() == '.json':
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError('boxes file %s is not valid JSON: %s' % (path, exc)) from exc
        if isinstance(document, Mapping):
            for frame, items in document.items():
                for item in items or []:
                    if isinstance(item, Mapping):
                        records.append((frame, _box_of(item), item.get('track')))
                    else:
                        records.append((frame, item, None))
        elif isinstance(document, list):
            for item in document:
                if not isinstance(item, Mapping) or 'frame' not in item:
                    raise ValueError('boxes file %s: every entry needs a frame' % path)
                records.append((item['frame'], _box_of(item), item.get('track')))
        else:
            raise ValueError('boxes file %s must hold a list or a mapping' % path)
    else:
        reader = csv.DictReader(line for line in text.splitlines() if line.strip())
        fields = [f.strip() for f in reader.fieldnames or []]
        missing = [f for f in ('frame', 'x1', 'y1', 'x2', 'y2') if f not in fields]
        if missing:
            raise ValueError('boxes file %s lacks columns %s (need frame,x1,y1,x2,y2[,track])'
                             % (path, ', '.join(missing)))
        for row in reader:
            row = {k.strip(): v for k, v in row.items() if k is not None}
            track = row.get('track', row.get('track_id'))
            records.append((row['frame'], [row['x1'], row['y1'], row['x2'], row['y2']],
                            None if _blank(track) else track))
    boxes = []
    for number, (frame, box, track) in enumerate(records, start=1):
        try:
            values = [float(v) for v in box]
        except (TypeError, ValueError):
            raise ValueError('boxes file %s, box %d: coordinates must be numbers, got %r'
                             % (path, number, box)) from None
        if len(values) != 4 or not all(math.isfinite(v) for v in values) \
                or values[2] <= values[0] or values[3] <= values[1]:
            raise ValueError('boxes file %s, box %d: need x1 < x2 and y1 < y2, got %r'
                             % (path, number, box))
        key = box_frame_key(frame, mode, '%s, box %d' % (path, number))
        boxes.append({'frame': key, 'box': values,
                      'track': None if _blank(track) else str(track)})
    return boxes


def box_frame_key(value: Any, mode: str, where: str = 'boxes') -> int:
    """
    Return the frame key of a boxes-file ``frame`` value.

    Index mode: an integer (``12``, ``12.0``) or a file name (``frame_000012.png``). Stamp
    mode: integer nanoseconds, decimal seconds (a JSON number or text), or a file name.
    """
    if isinstance(value, bool) or value is None:
        raise ValueError('%s: frame must be a number or a file name, got %r' % (where, value))
    if isinstance(value, (int, float)):
        if mode == 'index':
            if not float(value).is_integer():
                raise ValueError('%s: frame index must be whole, got %r' % (where, value))
            return int(value)
        return int(value) if isinstance(value, int) else int(round(value * 1e9))
    text = str(value).strip()
    if mode == 'index' and re.fullmatch(r'\d+\.0*', text):
        return int(text.split('.')[0])
    return frame_key(text, mode)


def _box_of(item: Mapping[str, Any]) -> Any:
    if 'box' in item:
        return item['box']
    return [item.get('x1'), item.get('y1'), item.get('x2'), item.get('y2')]


def read_timings(path: PathLike, mode: str) -> Dict[int, Dict[str, Any]]:
    """
    Read a timings CSV written by ``--produce`` into {frame key: row}.

    Every ``<stage>_ms`` column becomes ``row['stages'][stage]`` in seconds.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding='utf-8')
    except OSError as exc:
        raise ValueError('cannot read timings file %s: %s' % (path, exc.strerror)) from exc
    rows: Dict[int, Dict[str, Any]] = {}
    for row in csv.DictReader(text.splitlines()):
        if _blank(row.get('frame')):
            raise ValueError('timings file %s: every row needs a frame' % path)
        parsed: Dict[str, Any] = dict(row)
        parsed['stages'] = {}
        for column, value in row.items():
            if column and column.endswith('_ms') and not _blank(value):
                try:
                    parsed['stages'][column[:-3]] = float(value) / 1000.0
                except ValueError:
                    raise ValueError('timings file %s: %s must be a number, got %r'
                                     % (path, column, value)) from None
        rows[int(row['frame'])] = parsed
    return rows


def order_stages(stages: Iterable[str]) -> List[str]:
    """Return pipeline stage names in TIMING_STAGES order, others after them, total last."""
    names = list(dict.fromkeys(stages))
    known = [s for s in TIMING_STAGES if s in names and s != 'total']
    extra = [s for s in names if s not in TIMING_STAGES]
    return known + extra + (['total'] if 'total' in names else [])


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """Write dict rows to a CSV file with a fixed column order (floats with 6 digits)."""
    with open(path, 'w', newline='', encoding='utf-8') as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row in rows:
            writer.writerow([_csv_value(row.get(name)) for name in header])


def _csv_value(value: Any) -> Any:
    if value is None:
        return ''
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return '' if math.isnan(value) else '%.6g' % value
    return value


def safe_name(text: str) -> str:
    """Return ``text`` reduced to characters that are safe in a file name."""
    return re.sub(r'[^A-Za-z0-9_.-]+', '_', text).strip('._') or 'session'


# ----------------------------------------------------------------------------------------------
# Running our pipeline (--produce)
# ----------------------------------------------------------------------------------------------
def held_box_count(result: Any) -> Optional[int]:
    """
    Return how many boxes the temporal hold added to a frame, or None without tracking.

    Uses the result's ``held_count`` when it has one, else counts the ``tracks`` whose
    ``source`` is ``'held'``; results without ``tracks`` (no temporal tracking) give None.
    """
    count = getattr(result, 'held_count', None)
    if isinstance(count, (int, np.integer)) and not isinstance(count, bool):
        return int(count)
    tracks = getattr(result, 'tracks', None)
    if tracks is None:
        return None
    return sum(1 for track in tracks if getattr(track, 'source', None) == 'held')


@dataclass
class Produced:
    """What ``--produce`` made for one session."""

    masks: Path
    timings: Path
    residual: Dict[int, np.ndarray] = field(default_factory=dict)


def build_masker(params_file: Optional[PathLike]) -> Tuple[Any, Dict[str, Any]]:
    """Return (AVPrivacyMasker, process kwargs) configured from a node params YAML file."""
    from . import params
    from .masker import AVPrivacyMasker

    overrides = params.load_params_file(params_file) if params_file else {}
    values = params.resolve(overrides or {})
    masker = AVPrivacyMasker(**params.masker_kwargs(values))
    return masker, params.process_kwargs(values)


def _write_image(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image):
        raise ValueError('cannot write %s' % path)


def produce_session(session: Session, masker: Any, process_kw: Mapping[str, Any],
                    out_dir: Path, mode: str, save_anonymized: bool = False,
                    residual: bool = True, log: Callable[[str], None] = print) -> Produced:
    """
    Run the pipeline over a session's images; save masks, timings and optionally frames.

    Masks are written as ``<image stem>.png`` (0/255), so they keep the image's frame key.
    The timings CSV has one row per frame with the stage times in milliseconds, the number of
    faces found, the held boxes (temporal tracking), whether the frame failed closed, and the
    faces the detector still finds in the anonymized frame (``residual``).
    """
    if session.images is None:
        raise ValueError('session %s: --produce needs an images folder' % session.name)
    frames = list_frames(session.images, mode, 'image', IMAGE_EXTENSIONS)
    if not frames:
        raise ValueError('session %s: no images in %s' % (session.name, session.images))
    depths = dict(list_frames(session.depth, mode, 'depth', ('.png', '.tif', '.tiff'))) \
        if session.depth is not None else {}
    mask_dir = out_dir / 'masks'
    anon_dir = out_dir / 'anonymized'
    mask_dir.mkdir(parents=True, exist_ok=True)
    if save_anonymized:
        anon_dir.mkdir(parents=True, exist_ok=True)
    produced = Produced(mask_dir, out_dir / 'timings.csv')
    reset = getattr(masker, 'reset_tracking', None)
    if callable(reset):
        reset()  # faces held from the previous session must not leak into this one
    rows = []
    stages: List[str] = []
    warmed = False
    for number, (key, image_path) in enumerate(frames, start=1):
        bgr = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError('session %s: cannot read image %s' % (session.name, image_path))
        depth = None
        if session.depth is not None:
            if key not in depths:
                raise ValueError('session %s: no depth image for %s in %s'
                                 % (session.name, image_path.name, session.depth))
            depth = cv2.imread(str(depths[key]), cv2.IMREAD_UNCHANGED)
            if depth is None:
                raise ValueError('session %s: cannot read depth image %s'
                                 % (session.name, depths[key]))
        if not warmed:
            masker.warmup(bgr.shape[1], bgr.shape[0])
            warmed = True
        result = masker.process(bgr, depth, **process_kw)
        stem = image_path.name[:-len(image_path.suffix)]
        _write_image(mask_dir / (stem + '.png'), result.mask.astype(np.uint8) * 255)
        if save_anonymized:
            _write_image(anon_dir / (stem + '.png'), result.image)
        row: Dict[str, Any] = {'frame': key, 'file': image_path.name,
                               'faces': len(result.detections),
                               'held_boxes': held_box_count(result),
                               'failed_closed': bool(result.failed_closed)}
        for stage, seconds in result.times.items():
            row[stage + '_ms'] = seconds * 1000.0
            if stage not in stages:
                stages.append(stage)
        if residual:
            found = masker.detect(result.image).boxes
            produced.residual[key] = found
            row['residual'] = len(found)
            row['residual_in_mask'] = centres_in_mask(result.mask, found)
        rows.append(row)
        if number % 100 == 0:
            log('  %s: %d / %d frames' % (session.name, number, len(frames)))
    write_csv(produced.timings, ['frame', 'file'] + [s + '_ms' for s in order_stages(stages)]
              + ['faces', 'held_boxes', 'failed_closed', 'residual', 'residual_in_mask'], rows)
    return produced


# ----------------------------------------------------------------------------------------------
# Evaluation of one session
# ----------------------------------------------------------------------------------------------
@dataclass
class SessionResult:
    """Everything the report needs about one session."""

    session: Session
    mode: str = 'index'
    frames: List[Dict[str, Any]] = field(default_factory=list)
    faces: List[Dict[str, Any]] = field(default_factory=list)
    timings: Dict[int, Dict[str, Any]] = field(default_factory=dict)
    shift: Optional[int] = None
    shift_scores: Dict[int, Tuple[float, int]] = field(default_factory=dict)
    ours_frames: int = 0
    reference_frames: int = 0
    reference_without_ours: int = 0
    dropped_by_shift: List[int] = field(default_factory=list)
    ours_unmatched: int = 0
    boxes_without_mask: int = 0
    residual_available: bool = False


def _resize_to(mask: np.ndarray, shape: Tuple[int, int]) -> np.ndarray:
    resized = cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]),
                         interpolation=cv2.INTER_NEAREST)
    return resized != 0


def load_ours(session: Session, mode: str, produced: Optional[Produced]) -> Dict[int, np.ndarray]:
    """Return our masks of a session as {frame key: bool mask}."""
    if produced is not None:
        return {k: read_mask(p) for k, p in list_frames(produced.masks, mode, 'our mask')}
    if session.ours is None:
        if session.reference is None and session.boxes is None:
            return {}  # a speed-only session (timings)
        raise ValueError('session %s: give our masks (ours) or use --produce' % session.name)
    if session.ours_topic:
        return read_bag_masks(session.ours, session.ours_topic, mode)
    return {k: read_mask(p) for k, p in list_frames(session.ours, mode, 'our mask')}


def _range_key(value: Optional[float], mode: str) -> Optional[int]:
    if value is None:
        return None
    return int(round(value * 1e9)) if mode == 'stamp' else int(math.ceil(value))


def evaluate_session(session: Session, ours: Mapping[int, np.ndarray], mode: str = 'index',
                     max_shift: int = 3, resize: bool = False, leak_threshold: float = 0.9,
                     stamp_tolerance_ns: int = 5_000_000,
                     reference: Optional[Mapping[int, np.ndarray]] = None,
                     boxes: Optional[Sequence[Mapping[str, Any]]] = None,
                     timings: Optional[Mapping[int, Mapping[str, Any]]] = None,
                     residual: Optional[Mapping[int, np.ndarray]] = None) -> SessionResult:
    """
    Align our masks with the reference, score every frame, and check ground-truth boxes.

    ``start``/``stop`` of the session restrict the reference frames (frame index, or seconds
    in stamp mode). Masks of another size than the reference raise ValueError unless
    ``resize`` is true, which scales ours to the reference size (nearest neighbour).
    """
    result = SessionResult(session, mode, timings=dict(timings or {}), ours_frames=len(ours))
    ours_keys = sorted(ours)
    if mode == 'stamp':
        ours_position = {k: i for i, k in enumerate(ours_keys)}
    else:
        ours_position = {k: k for k in ours_keys}
    if reference is not None:
        start = _range_key(session.start, mode)
        stop = _range_key(session.stop, mode)
        ref = {k: m for k, m in reference.items() if in_range(k, start, stop)}
        result.reference_frames = len(ref)
        if not ref:
            raise ValueError('session %s: no reference mask between start and stop'
                             % session.name)
        shapes = {m.shape for m in ref.values()}
        if len(shapes) > 1:
            raise ValueError('session %s: reference masks differ in size: %s'
                             % (session.name, sorted(shapes)))
        ref_shape = shapes.pop()
        if mode == 'stamp':
            ref_pos, ours_pos = stamp_positions(list(ref), ours_keys, stamp_tolerance_ns)
        else:
            ref_pos, ours_pos = {k: k for k in ref}, {k: k for k in ours_keys}
        result.ours_unmatched = len(ours_keys) - len(ours_pos)
        ours_by_pos: Dict[int, np.ndarray] = {}
        ours_key_at: Dict[int, int] = {}
        for key, pos in ours_pos.items():
            mask = ours[key]
            if mask.shape != ref_shape:
                if not resize:
                    raise ValueError(
                        'session %s: our mask for frame %d is %dx%d but the reference is '
                        '%dx%d; pass --resize to scale our masks to the reference size'
                        % (session.name, key, mask.shape[1], mask.shape[0], ref_shape[1],
                           ref_shape[0]))
                mask = _resize_to(mask, ref_shape)
            ours_by_pos[pos] = mask
            ours_key_at[pos] = key
        ref_by_pos = {ref_pos[k]: m for k, m in ref.items()}
        ref_key_at = {ref_pos[k]: k for k in ref}
        frame_dice = shift_frame_dice(ref_by_pos, ours_by_pos, max_shift)
        result.shift_scores = {shift: (sum(d.values()) / len(d), len(d))
                               for shift, d in frame_dice.items()}
        if not result.shift_scores:
            raise ValueError('session %s: none of our %d masks matches a reference frame '
                             'within a shift of %d frames (check the frame names and --match)'
                             % (session.name, len(ours), max_shift))
        result.shift = best_shift(result.shift_scores, frame_dice=frame_dice)
        pairs = pair_positions(ref_by_pos, ours_by_pos, result.shift)
        result.reference_without_ours = len(ref_by_pos) - len(pairs)
        paired = {ref_p for ref_p, _ in pairs}
        result.dropped_by_shift = sorted(ref_key_at[p] for p in frame_dice.get(0, {})
                                         if p not in paired)
        for ref_p, ours_p in pairs:
            a, b = ours_by_pos[ours_p], ref_by_pos[ref_p]
            dice, recall, both_empty = dice_recall(a, b)
            ours_key = ours_key_at[ours_p]
            timing = result.timings.get(ours_key, {})
            result.frames.append({
                'session': session.name, 'environment': session.environment,
                'faces': session.faces, 'frame': ref_key_at[ref_p], 'ours_frame': ours_key,
                'shift': result.shift, 'dice': dice, 'recall': recall,
                'both_empty': both_empty, 'ours_pixels': int(np.count_nonzero(a)),
                'reference_pixels': int(np.count_nonzero(b)),
                'detected': timing.get('faces'), 'held_boxes': timing.get('held_boxes'),
                'total_ms': (timing['stages']['total'] * 1000.0
                             if 'total' in timing.get('stages', {}) else None)})
    if boxes:
        result.residual_available = residual is not None
        if mode == 'stamp':
            _, box_pos = stamp_positions(ours_keys, [b['frame'] for b in boxes],
                                         stamp_tolerance_ns)
            box_key = {k: ours_keys[p] for k, p in box_pos.items()}
        else:
            box_key = {b['frame']: b['frame'] for b in boxes if b['frame'] in ours}
        for item in boxes:
            key = box_key.get(item['frame'])
            if key is None:
                result.boxes_without_mask += 1
                continue
            coverage = box_coverage(ours[key], item['box'])
            found: Optional[bool] = None
            if residual is not None and key in residual:
                iou = box_iou(item['box'], residual[key])
                found = bool(iou.size and iou.max() >= RESIDUAL_IOU)
            result.faces.append({
                'session': session.name, 'frame': key, 'position': ours_position[key],
                'track': item['track'], 'x1': item['box'][0], 'y1': item['box'][1],
                'x2': item['box'][2], 'y2': item['box'][3], 'size': face_size(item['box']),
                'size_class': size_class(item['box']), 'coverage': coverage,
                'leaked': (not math.isnan(coverage)) and coverage < leak_threshold,
                'residual': found})
    return result


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------
Block = Tuple[Any, ...]


def _f(value: Any, digits: int = 3) -> str:
    if value is None:
        return '-'
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return '-'
        if math.isinf(value):
            return 'inf'
        return '%.*f' % (digits, value)
    return str(value)


def _pct(value: float) -> str:
    return '-' if value is None or math.isnan(value) else '%.1f %%' % (100.0 * value)


def metric_table(groups: Mapping[Any, Mapping[str, Any]], label: str) -> Block:
    """Return a table block of Dice/Recall aggregates, one row per group."""
    header = [label, 'frames', 'both empty', 'Dice mean', 'Dice std', 'Dice median',
              'Dice p5', 'Recall mean', 'Recall std', 'Recall median', 'Recall p5',
              'Dice (face frames)']
    rows = []
    for name, agg in groups.items():
        rows.append([str(name) or '-', str(agg['frames']), str(agg['both_empty'])]
                    + [_f(agg['dice'][k]) for k in ('mean', 'std', 'median', 'p5')]
                    + [_f(agg['recall'][k]) for k in ('mean', 'std', 'median', 'p5')]
                    + [_f(agg['dice_faces']['mean'])])
    return ('table', header, rows)


def speed_blocks(results: Sequence[SessionResult]) -> List[Block]:
    """Return the speed section: latency percentiles per stage, per session and overall."""
    timed = [r for r in results if r.timings]
    if not timed:
        return []
    header = ['session', 'stage', 'frames', 'mean ms', 'p50 ms', 'p95 ms', 'p99 ms',
              'max ms', 'FPS']
    rows = []
    groups: List[Tuple[str, List[Mapping[str, Any]]]] = [
        (r.session.name, list(r.timings.values())) for r in timed]
    if len(timed) > 1:
        groups.append(('all', [t for r in timed for t in r.timings.values()]))
    failed = 0
    stages = order_stages(s for r in timed for t in r.timings.values() for s in t['stages'])
    for name, values in groups:
        for stage in stages:
            stats = latency_stats(t['stages'].get(stage, math.nan) for t in values)
            if stats['n'] == 0:
                continue
            rows.append([name, stage if stage != 'total' else 'end to end', str(stats['n'])]
                        + [_f(stats[k], 2) for k in ('mean_ms', 'p50_ms', 'p95_ms', 'p99_ms',
                                                     'max_ms')]
                        + [_f(stats['fps'], 1) if stage == 'total' else ''])
    for r in timed:
        failed += sum(1 for t in r.timings.values()
                      if str(t.get('failed_closed', '0')).lower() in ('1', 'true'))
    return [('h', 2, 'Speed'),
            ('p', 'Latency per pipeline stage from the per-frame timings (one frame at a time, '
                  'after a warm-up frame). FPS = 1 / mean end-to-end latency. Frames that '
                  'failed closed (anonymized over the whole frame): %d.' % failed),
            ('table', header, rows)]


def privacy_blocks(results: Sequence[SessionResult], leak_threshold: float) -> List[Block]:
    """Return the privacy section from the per-face coverage records."""
    with_boxes = [r for r in results if r.faces or r.boxes_without_mask]
    if not with_boxes:
        return []
    blocks: List[Block] = [
        ('h', 2, 'Privacy'),
        ('p', 'Each ground-truth face box is checked against our mask of the same frame. '
              'Coverage = fraction of the box pixels inside our mask; a face leaks when its '
              'coverage is below %.2f. Sizes: sqrt(box width × box height) — small < %d px, '
              'medium %d-%d px, large ≥ %d px.' % (leak_threshold, SMALL_FACE_PX,
                                                   SMALL_FACE_PX, LARGE_FACE_PX, LARGE_FACE_PX))]
    header = ['session', 'faces', 'leaked', 'leak rate', 'coverage mean', 'coverage p5',
              'frames with a leak', 'longest leak run (frames)', 'residual detected']
    rows = []
    summaries = [(r.session.name, privacy_summary(r.faces), r) for r in with_boxes]
    everything = [f for r in with_boxes for f in r.faces]
    for name, summary, r in summaries:
        residual = ('%d / %d' % (summary['residual_detected'], summary['residual_checked'])
                    if r.residual_available else 'n/a')
        rows.append([name, str(summary['faces']), str(summary['leaked']),
                     _pct(summary['leak_rate']), _f(summary['coverage']['mean']),
                     _f(summary['coverage']['p5']), str(summary['frames_with_leak']),
                     str(summary['longest_frame_run']), residual])
    if len(summaries) > 1:
        total = privacy_summary(everything)
        residual_any = any(r.residual_available for r in with_boxes)
        rows.append(['all', str(total['faces']), str(total['leaked']), _pct(total['leak_rate']),
                     _f(total['coverage']['mean']), _f(total['coverage']['p5']),
                     str(total['frames_with_leak']),
                     str(max(s['longest_frame_run'] for _, s, _ in summaries)),
                     ('%d / %d' % (total['residual_detected'], total['residual_checked'])
                      if residual_any else 'n/a')])
    blocks.append(('table', header, rows))
    total = privacy_summary(everything)
    size_rows = []
    ranges = {'small': '< %d px' % SMALL_FACE_PX,
              'medium': '%d-%d px' % (SMALL_FACE_PX, LARGE_FACE_PX),
              'large': '≥ %d px' % LARGE_FACE_PX}
    for name in SIZE_CLASSES:
        item = total['by_size'][name]
        size_rows.append([name, ranges[name], str(item['faces']), str(item['leaked']),
                          _pct(item['rate'])])
    blocks += [('h', 3, 'Leaked faces by size'),
               ('table', ['size', 'range', 'faces', 'leaked', 'leak rate'], size_rows)]
    run_rows = []
    for name, summary, _ in summaries:
        for track, (length, first) in summary['track_runs'].items():
            run_rows.append((length, name, track, first))
    if run_rows:
        run_rows.sort(key=lambda item: (-item[0], item[1], str(item[2])))
        blocks += [('h', 3, 'Longest runs of consecutive leaked frames per track'),
                   ('table', ['session', 'track', 'frames', 'first frame', 'last frame'],
                    [[s, str(t), str(n), str(f), str(f + n - 1)]
                     for n, s, t, f in run_rows[:25]])]
        if len(run_rows) > 25:
            blocks.append(('p', '%d more tracks leaked; see faces.csv.' % (len(run_rows) - 25)))
    notes = []
    missing = sum(r.boxes_without_mask for r in with_boxes)
    if missing:
        notes.append('%d ground-truth boxes are on frames without our mask and were skipped.'
                     % missing)
    outside = total['outside']
    if outside:
        notes.append('%d boxes lie wholly outside the image and were skipped.' % outside)
    if any(r.residual_available for r in with_boxes):
        notes.append('Residual detected: ground-truth faces the detector still finds (IoU ≥ '
                     '%.1f) in the anonymized frame.' % RESIDUAL_IOU)
    else:
        notes.append('Residual detectability needs --produce (the anonymized frames).')
    blocks.append(('p', ' '.join(notes)))
    return blocks


DEFINITIONS = (
    'Dice = 2|A∩B| / (|A| + |B|) and Recall = |A∩B| / |B|, with A = our mask and B = the '
    'reference mask of the same frame. A frame where both masks are empty counts as agreement '
    '(Dice 1, Recall 1) and is counted in the "both empty" column; "Dice (face frames)" '
    'leaves those frames out. Reference empty but ours not: Dice 0, Recall 1; ours empty but '
    'the reference not: Dice 0, Recall 0. std is the population standard deviation; p5 the '
    '5th percentile (linear interpolation). A shift s pairs reference frame f with our frame '
    'f + s; shift 0 is used unless another shift raises the mean Dice by at least %.2f over '
    'the frames both pair, then the shift with the largest gain.' % SHIFT_MARGIN)


def frame_list(frames: Sequence[int], limit: int = 10) -> str:
    """Return frame numbers as a short text: '9, 10, 11', '-' for none, the rest counted."""
    if not frames:
        return '-'
    text = ', '.join(str(f) for f in frames[:limit])
    if len(frames) > limit:
        text += ' and %d more' % (len(frames) - limit)
    return text


def build_report(results: Sequence[SessionResult], settings: Mapping[str, Any],
                 plots: Mapping[str, str]) -> List[Block]:
    """Return the report as blocks: ('h', level, text), ('p', text), ('table', ...), ('img')."""
    blocks: List[Block] = [
        ('h', 1, 'Mask evaluation report'),
        ('p', 'Sessions: %d. Frame matching: %s; shift search ±%d frames; resize: %s; leak '
              'threshold %.2f.' % (len(results), settings['match'], settings['max_shift'],
                                   'yes' if settings['resize'] else 'no',
                                   settings['leak_threshold']))]
    rows = [r for result in results for r in result.frames]
    scored = [r for r in results if r.shift is not None]
    if scored:
        align_rows = []
        for r in scored:
            at_zero = r.shift_scores.get(0, (math.nan, 0))[0]
            align_rows.append([r.session.name, r.session.environment or '-',
                               r.session.faces or '-', str(r.ours_frames),
                               str(r.reference_frames), str(len(r.frames)), '%+d' % r.shift,
                               _f(at_zero), _f(r.shift_scores[r.shift][0]),
                               str(r.reference_without_ours),
                               frame_list(r.dropped_by_shift), str(r.ours_unmatched)])
        blocks += [('h', 2, 'Alignment'),
                   ('p', 'Shift 0 (frames paired as named) is kept unless another shift raises '
                         'the mean Dice by at least %.2f over the reference frames both shifts '
                         'pair. "Dropped by the shift" names the reference frames that shift 0 '
                         'pairs with one of ours and the chosen shift does not score.'
                         % SHIFT_MARGIN),
                   ('table', ['session', 'environment', 'faces', 'our frames',
                              'reference frames', 'pairs', 'shift', 'mean Dice at 0',
                              'mean Dice at shift', 'reference without ours',
                              'dropped by the shift', 'ours unmatched'], align_rows)]
        tables = aggregate_tables(rows)
        blocks += [('h', 2, 'Dice and Recall'),
                   ('h', 3, 'Overall'), metric_table(tables['overall'], 'group'),
                   ('h', 3, 'Per environment'), metric_table(tables['environment'],
                                                             'environment'),
                   ('h', 3, 'Per face count'), metric_table(tables['faces'], 'faces'),
                   ('h', 3, 'Per session'), metric_table(tables['session'], 'session')]
        for key in ('environment', 'faces'):
            if key in plots:
                blocks.append(('img', plots[key], 'Dice and Recall per %s'
                               % ('face count' if key == 'faces' else key)))
        for r in scored:
            name = 'time:' + r.session.name
            if name in plots:
                blocks.append(('img', plots[name], 'Dice over time, session %s' % r.session.name))
    blocks += speed_blocks(results)
    blocks += privacy_blocks(results, settings['leak_threshold'])
    blocks += [('h', 2, 'Definitions'), ('p', DEFINITIONS)]
    return blocks


def render_markdown(blocks: Sequence[Block]) -> str:
    """Render report blocks as Markdown."""
    lines: List[str] = []
    for block in blocks:
        if block[0] == 'h':
            lines += ['#' * block[1] + ' ' + block[2], '']
        elif block[0] == 'p':
            lines += [block[1], '']
        elif block[0] == 'table':
            header, rows = block[1], block[2]
            lines.append('| ' + ' | '.join(header) + ' |')
            lines.append('|' + '---|' * len(header))
            lines += ['| ' + ' | '.join(cell.replace('|', '/') for cell in row) + ' |'
                      for row in rows]
            lines.append('')
        elif block[0] == 'img':
            lines += ['![%s](%s)' % (block[2], block[1]), '']
    return '\n'.join(lines)


def render_html(blocks: Sequence[Block]) -> str:
    """Render report blocks as a standalone HTML page."""
    parts = ['<!DOCTYPE html>', '<html><head><meta charset="utf-8">',
             '<title>Mask evaluation report</title>',
             '<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;'
             'margin-bottom:1em}td,th{border:1px solid #999;padding:2px 6px;text-align:right}'
             'td:first-child{text-align:left}img{max-width:100%}</style>', '</head><body>']
    esc = html.escape
    for block in blocks:
        if block[0] == 'h':
            parts.append('<h%d>%s</h%d>' % (block[1], esc(block[2]), block[1]))
        elif block[0] == 'p':
            parts.append('<p>%s</p>' % esc(block[1]))
        elif block[0] == 'table':
            parts.append('<table><tr>' + ''.join('<th>%s</th>' % esc(h) for h in block[1])
                         + '</tr>')
            for row in block[2]:
                parts.append('<tr>' + ''.join('<td>%s</td>' % esc(c) for c in row) + '</tr>')
            parts.append('</table>')
        elif block[0] == 'img':
            parts.append('<p><img src="%s" alt="%s"></p>' % (esc(block[1]), esc(block[2])))
    parts.append('</body></html>')
    return '\n'.join(parts)


# ----------------------------------------------------------------------------------------------
# Plots (matplotlib, Agg)
# ----------------------------------------------------------------------------------------------
def _pyplot() -> Any:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def plot_distributions(rows: Sequence[Mapping[str, Any]], key: str, label: str,
                       path: Path) -> None:
    """Save box plots of Dice and Recall grouped by ``key`` (environment or faces)."""
    plt = _pyplot()
    groups = group_rows(rows, lambda r: str(r[key]) or '-')
    names = list(groups)
    fig, axes = plt.subplots(1, 2, figsize=(4 + 1.2 * len(names), 4), squeeze=False)
    for ax, metric in zip(axes[0], ('dice', 'recall')):
        data = [[r[metric] for r in groups[n]] for n in names]
        ax.boxplot(data, showmeans=True)
        ax.set_xticks(range(1, len(names) + 1))
        ax.set_xticklabels(['%s\n(n=%d)' % (n, len(groups[n])) for n in names])
        ax.set_ylim(-0.02, 1.02)
        ax.set_title('%s per %s' % (metric.capitalize(), label))
        ax.set_xlabel(label)
        ax.grid(axis='y', alpha=0.3)
    fig.tight_layout()
    fig.savefig(str(path), dpi=100)
    plt.close(fig)


def plot_over_time(result: SessionResult, path: Path) -> None:
    """Save Dice (and Recall) per frame over the frames of one session."""
    plt = _pyplot()
    frames: List[float] = [r['frame'] for r in result.frames]
    xlabel = 'reference frame'
    if result.mode == 'stamp' and frames:
        first = frames[0]
        frames = [(f - first) / 1e9 for f in frames]
        xlabel = 'seconds since the first reference frame'
    fig, ax = plt.subplots(figsize=(8, 3))
    empty = [x for x, r in zip(frames, result.frames) if r['both_empty']]
    if empty:
        ax.plot(empty, [0.0] * len(empty), '|', color='grey', markersize=10,
                label='both empty')
    ax.plot(frames, [r['recall'] for r in result.frames], color='tab:orange', lw=0.8,
            alpha=0.7, label='Recall')
    ax.plot(frames, [r['dice'] for r in result.frames], color='tab:blue', lw=1.2,
            label='Dice')
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_title('Session %s (shift %+d)' % (result.session.name, result.shift or 0))
    ax.legend(loc='lower left')
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(str(path), dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------
FRAME_COLUMNS = ['session', 'environment', 'faces', 'frame', 'ours_frame', 'shift', 'dice',
                 'recall', 'both_empty', 'ours_pixels', 'reference_pixels', 'detected',
                 'held_boxes', 'total_ms']
FACE_COLUMNS = ['session', 'frame', 'track', 'x1', 'y1', 'x2', 'y2', 'size', 'size_class',
                'coverage', 'leaked', 'residual']


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser of evaluate_masks."""
    parser = argparse.ArgumentParser(
        prog='evaluate_masks',
        description='Compare our face masks with reference masks (Dice, Recall), check '
                    'ground-truth face boxes for leaks, and report speed.')
    parser.add_argument('sessions', help='sessions file (.yaml/.yml or .csv)')
    parser.add_argument('-o', '--output', default='evaluation_output',
                        help='output folder (default: %(default)s)')
    parser.add_argument('--max-shift', type=int, default=3,
                        help='search frame offsets in [-k, k] per session (default: '
                             '%%(default)s; 0 disables); shift 0 is kept unless another shift '
                             'raises the mean Dice by %.2f over the frames both pair'
                             % SHIFT_MARGIN)
    parser.add_argument('--match', choices=MATCH_MODES, default='index',
                        help='match frames by the index or the stamp in the file names '
                             '(default: %(default)s)')
    parser.add_argument('--stamp-tolerance', type=float, default=0.005,
                        help='seconds two stamps may differ and still match (default: '
                             '%(default)s)')
    parser.add_argument('--resize', action='store_true',
                        help='scale our masks to the reference size instead of failing')
    parser.add_argument('--leak-threshold', type=float, default=0.9,
                        help='a face leaks when our mask covers less than this fraction of '
                             'its ground-truth box (default: %(default)s)')
    parser.add_argument('--html', action='store_true', help='also write report.html')
    parser.add_argument('--no-plots', action='store_true', help='skip the PNG plots')
    parser.add_argument('--produce', action='store_true',
                        help="run the anonymizer over each session's images first")
    parser.add_argument('--params-file', default=None,
                        help='node parameters YAML for --produce (default: the defaults)')
    parser.add_argument('--save-anonymized', action='store_true',
                        help='with --produce, also save the anonymized frames')
    parser.add_argument('--no-residual', action='store_true',
                        help='with --produce, skip re-detecting faces in anonymized frames')
    return parser


def run(args: argparse.Namespace, log: Callable[[str], None] = print) -> Dict[str, Path]:
    """Run the evaluation described by parsed arguments; return the files written."""
    if args.max_shift < 0:
        raise ValueError('--max-shift must be >= 0, got %d' % args.max_shift)
    if not 0.0 < args.leak_threshold <= 1.0:
        raise ValueError('--leak-threshold must be in (0, 1], got %s' % args.leak_threshold)
    if args.stamp_tolerance < 0:
        raise ValueError('--stamp-tolerance must be >= 0, got %s' % args.stamp_tolerance)
    sessions = load_sessions(args.sessions)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    masker, process_kw = (build_masker(args.params_file) if args.produce else (None, {}))
    tolerance_ns = int(round(args.stamp_tolerance * 1e9))
    results: List[SessionResult] = []
    for session in sessions:
        started = time.perf_counter()
        produced = None
        if args.produce:
            if session.ours is not None:
                log('%s: --produce writes new masks; the ours folder is not used'
                    % session.name)
            produced = produce_session(session, masker, process_kw,
                                       out / 'produced' / safe_name(session.name), args.match,
                                       save_anonymized=args.save_anonymized,
                                       residual=not args.no_residual, log=log)
        ours = load_ours(session, args.match, produced)
        reference = None
        if session.reference is not None:
            reference = {k: read_mask(p)
                         for k, p in list_frames(session.reference, args.match, 'reference')}
        boxes = read_boxes(session.boxes, args.match) if session.boxes else None
        timings_path = produced.timings if produced else session.timings
        timings = read_timings(timings_path, args.match) if timings_path else None
        if reference is None and not boxes and not timings:
            raise ValueError('session %s has nothing to evaluate: give reference masks, '
                             'ground-truth boxes or timings' % session.name)
        result = evaluate_session(
            session, ours, args.match, args.max_shift, args.resize, args.leak_threshold,
            tolerance_ns, reference, boxes, timings,
            produced.residual if produced and not args.no_residual else None)
        results.append(result)
        log('%s: %d frames scored, shift %s%s, %.1f s'
            % (session.name, len(result.frames),
               '-' if result.shift is None else '%+d' % result.shift,
               ' (drops reference frames %s)' % frame_list(result.dropped_by_shift)
               if result.dropped_by_shift else '',
               time.perf_counter() - started))
    written: Dict[str, Path] = {}
    rows = [r for result in results for r in result.frames]
    if rows:
        written['frames'] = out / 'frames.csv'
        write_csv(written['frames'], FRAME_COLUMNS, rows)
    faces = [f for result in results for f in result.faces]
    if faces:
        written['faces'] = out / 'faces.csv'
        write_csv(written['faces'], FACE_COLUMNS, faces)
    plots: Dict[str, str] = {}
    if rows and not args.no_plots:
        for key, label in (('environment', 'environment'), ('faces', 'face count')):
            name = 'dice_recall_by_%s.png' % key
            plot_distributions(rows, key, label, out / name)
            plots[key] = name
            written['plot_' + key] = out / name
        for result in results:
            if result.frames:
                name = 'dice_over_time_%s.png' % safe_name(result.session.name)
                plot_over_time(result, out / name)
                plots['time:' + result.session.name] = name
                written['plot_time_' + result.session.name] = out / name
    settings = {'match': args.match, 'max_shift': args.max_shift, 'resize': args.resize,
                'leak_threshold': args.leak_threshold}
    blocks = build_report(results, settings, plots)
    written['report'] = out / 'report.md'
    written['report'].write_text(render_markdown(blocks), encoding='utf-8')
    if args.html:
        written['html'] = out / 'report.html'
        written['html'].write_text(render_html(blocks), encoding='utf-8')
    return written


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Evaluate masks from the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        written = run(args, log=lambda text: print(text, file=sys.stderr))
    except ValueError as exc:
        print('evaluate_masks: error: %s' % exc, file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - e.g. a corrupt model: one line, no traceback
        print('evaluate_masks: error: %s: %s' % (type(exc).__name__, ' '.join(str(exc).split())),
              file=sys.stderr)
        return 2
    print('report: %s' % written['report'])
    return 0


if __name__ == '__main__':
    sys.exit(main())
