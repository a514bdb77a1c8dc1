"""
Depth output of one camera: noise under the mask of the depth's colour frame.

When that mask is unknown the noise covers the whole frame; the raw depth is never written on
an error path when noise is asked for.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional

import numpy as np

from .context import RunContext
from .frames import DepthRecord
from .image_codecs import encode_depth_message
from .pairing import MessageKey
from .writer import Slot
from ..anonymize import anonymize_depth
from ..masker import AVPrivacyMasker

DepthWrite = Callable[[DepthRecord, Optional[np.ndarray]], None]


class DepthOutput:
    """Writes one camera's depth messages once their mask is known."""

    def __init__(self, topic: Optional[str], ctx: RunContext, masker: AVPrivacyMasker) -> None:
        """Write depth of ``topic`` with the noise generator of ``masker``."""
        self.topic = topic
        self.ctx = ctx
        self.masker = masker

    def write(self, record: DepthRecord, mask: Optional[np.ndarray],
              depth_out: Optional[np.ndarray] = None) -> None:
        """Write a depth message with noise under ``mask`` (whole frame when None)."""
        ctx = self.ctx
        if not ctx.depth_noise or record.slot.state != Slot.PENDING:
            return
        depth = record.depth
        if depth is None:
            record.slot.drop()
            return
        summary = ctx.summary
        try:
            if mask is None or mask.shape != depth.shape[:2]:
                whole = np.ones(depth.shape[:2], np.bool_)
                depth_out = anonymize_depth(depth, whole, max(ctx.depth_std, 0.05),
                                            self.masker.rng)
                summary.depth_failed_closed += 1
            elif not mask.any():
                record.slot.ready(record.cdr)
                summary.messages_copied += 1
                return
            elif depth_out is None or depth_out.shape != depth.shape:
                depth_out = anonymize_depth(depth, mask, ctx.depth_std, self.masker.rng)
            record.slot.ready(encode_depth_message(ctx.dst_ts, record.msg, depth_out))
            summary.depth_anonymized += 1
        except Exception as exc:  # noqa: BLE001 - never write raw depth on an error path
            summary.note_error('%s: depth not written: %s' % (self.topic, exc))
            summary.dropped(self.topic)
            record.slot.drop()


class BorrowedMasks:
    """
    Final masks of colour frames that unpaired depth messages use (the nearest colour frame).

    A mask is kept only until every depth message that needs it has been written.
    """

    def __init__(self, write: DepthWrite) -> None:
        """Write depth messages with ``write(record, mask)``."""
        self.write = write
        self.users: Dict[MessageKey, int] = {}
        self.final: Dict[MessageKey, Optional[np.ndarray]] = {}
        self.waiting: Dict[MessageKey, List[DepthRecord]] = {}

    def settle(self, key: MessageKey, mask: Optional[np.ndarray]) -> None:
        """Record the final mask (None: not written) of colour frame ``key``."""
        users = self.users.get(key, 0)
        for record in self.waiting.pop(key, []):
            self.write(record, mask)
            users -= 1
        if users > 0:
            self.final[key] = mask
            self.users[key] = users
        else:
            self.users.pop(key, None)

    def use(self, source: Optional[MessageKey], record: DepthRecord) -> None:
        """Write an unpaired depth message with the mask of colour frame ``source``."""
        if source is None:
            self.write(record, None)
        elif source in self.final:
            self.write(record, self.final[source])
            left = self.users.get(source, 1) - 1
            if left <= 0:
                self.final.pop(source, None)
                self.users.pop(source, None)
            else:
                self.users[source] = left
        else:
            self.waiting.setdefault(source, []).append(record)

    def finish(self) -> None:
        """Write the depth still waiting for a mask that never came, over the whole frame."""
        for key in list(self.waiting):
            for record in self.waiting.pop(key):
                self.write(record, None)
