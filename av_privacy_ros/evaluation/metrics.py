"""
Pure mask and face metrics of the evaluation (numpy only, no files).

Dice and Recall of two masks, the frame-shift search, face-box coverage and size classes,
leak runs, latency statistics, and the aggregation of per-frame rows into tables.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

#: Face size classes by sqrt(box width * box height) in pixels, as COCO's 32² / 96² areas.
SMALL_FACE_PX = 32.0
LARGE_FACE_PX = 96.0
SIZE_CLASSES = ('small', 'medium', 'large')
STAT_KEYS = ('n', 'mean', 'std', 'median', 'p5')


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
