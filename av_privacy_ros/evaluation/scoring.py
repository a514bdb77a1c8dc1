"""Scoring of one session: align our masks with the reference, score frames, check face boxes."""

from __future__ import annotations

from dataclasses import dataclass, field
import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np

from .frames import in_range, list_frames, read_bag_masks, read_mask, stamp_positions
from .metrics import (best_shift, box_coverage, dice_recall, face_size, pair_positions,
                      shift_frame_dice, size_class)
from .produce import Produced
from .sessions import Session
from ..boxes import box_iou

#: IoU above which a detection in an anonymized frame counts as finding a ground-truth face.
RESIDUAL_IOU = 0.3


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
    result = SessionResult(session, mode, ours_frames=len(ours),
                           timings={k: dict(v) for k, v in (timings or {}).items()})
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
            mask_key = box_key.get(item['frame'])
            if mask_key is None:
                result.boxes_without_mask += 1
                continue
            coverage = box_coverage(ours[mask_key], item['box'])
            found: Optional[bool] = None
            if residual is not None and mask_key in residual:
                iou = box_iou([item['box']], residual[mask_key])
                found = bool(iou.size and iou.max() >= RESIDUAL_IOU)
            result.faces.append({
                'session': session.name, 'frame': mask_key, 'position': ours_position[mask_key],
                'track': item['track'], 'x1': item['box'][0], 'y1': item['box'][1],
                'x2': item['box'][2], 'y2': item['box'][3], 'size': face_size(item['box']),
                'size_class': size_class(item['box']), 'coverage': coverage,
                'leaked': (not math.isnan(coverage)) and coverage < leak_threshold,
                'residual': found})
    return result
