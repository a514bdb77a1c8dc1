"""
The backward pass: a face found late is masked in the frames before it too.

The last processed frames of a colour topic are held back, and a face that appears without an
overlapping face in the frame before is also masked in them.
"""

from __future__ import annotations

from collections import deque
from typing import Deque, List, Optional

import numpy as np

from .context import RunContext
from .frames import Frame
from ..boxes import box_iou, grow_boxes
from ..masker import AVPrivacyMasker, FrameResult

NEW_FACE_IOU = 0.3
"""A face whose best IoU with the previous frame's faces is below this is a new face."""
BACKWARD_GROWTH = 0.05
"""Each buffered frame further back grows a new face's box by this fraction per side."""
BACKWARD_MAX_AGE_NS = 1_000_000_000
"""Buffered frames older than this (receive time) are written: it bounds the memory held."""


def _no_boxes() -> np.ndarray:
    return np.zeros((0, 4), np.float32)


class BackwardBuffer:
    """Processed frames not yet written, and the faces masked in the newest one."""

    def __init__(self, size: int) -> None:
        """Hold up to ``size`` frames (0: none, every frame is written at once)."""
        self.size = size
        self.frames: Deque[Frame] = deque()
        self.prev_boxes = _no_boxes()

    def forget_faces(self) -> None:
        """Forget the previous frame's faces (it was not written)."""
        self.prev_boxes = _no_boxes()

    def add(self, frame: Frame, boxes: np.ndarray, masked_boxes: np.ndarray) -> List[Frame]:
        """
        Hold a processed frame; return the frames now due for writing, oldest first.

        ``boxes`` are the faces detected in ``frame``; those new since the frame before mark
        every held frame with their box, grown per frame back.  ``masked_boxes`` (detected
        or held) are what the next frame is compared with.
        """
        if self.size > 0 and len(boxes):
            iou = box_iou(boxes, self.prev_boxes)
            best = iou.max(axis=1) if iou.shape[1] else np.zeros(len(boxes), np.float32)
            new = boxes[best < NEW_FACE_IOU]
            if len(new):
                for back, older in enumerate(reversed(self.frames), start=1):
                    older.extra_boxes.append(grow_boxes(new, BACKWARD_GROWTH * back))
        self.prev_boxes = masked_boxes
        self.frames.append(frame)
        due: List[Frame] = []
        while len(self.frames) > self.size:
            due.append(self.frames.popleft())
        return due

    def expired(self, now_ns: int) -> List[Frame]:
        """Return (and let go) the frames received more than BACKWARD_MAX_AGE_NS before now."""
        due: List[Frame] = []
        while self.frames and self.frames[0].slot.timestamp < now_ns - BACKWARD_MAX_AGE_NS:
            due.append(self.frames.popleft())
        return due

    def drain(self) -> List[Frame]:
        """Return (and let go) every held frame (end of the bag)."""
        due = list(self.frames)
        self.frames.clear()
        return due


def mask_backward_boxes(masker: AVPrivacyMasker, frame: Frame, result: FrameResult,
                        ctx: RunContext, topic: str) -> Optional[FrameResult]:
    """
    Mask the boxes the backward pass added to ``frame``; return the new result.

    Returns ``result`` when they add no masked area, None when nothing safe can be written.
    """
    pad, oval = ctx.process_kwargs['pad_ratio'], ctx.process_kwargs['oval_boxes']
    extra = np.concatenate(frame.extra_boxes)
    assert frame.bgr is not None
    try:
        extra_mask = masker.build_mask_from_boxes(frame.bgr.shape[:2], extra, pad, oval)
        adds_area = bool(np.any(extra_mask & ~result.mask))
    except Exception:  # noqa: BLE001 - cannot tell: mask them anyway
        adds_area = True
    if not adds_area:
        return result
    summary = ctx.summary
    try:
        again = masker.mask_extra_boxes(frame.bgr, result, extra, frame.depth, pad, oval)
    except Exception as exc:  # noqa: BLE001 - nothing safe left to write
        summary.note_error('%s: frame not written: %s' % (topic, exc))
        return None
    if again.failed_closed:
        summary.frames_failed_closed += 1
        summary.note_error('%s: frame failed closed: %s' % (topic, again.error))
    else:
        summary.frames_masked_backward += 1
    return again
