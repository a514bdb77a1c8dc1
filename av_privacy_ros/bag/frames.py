"""The messages a camera holds between reading and writing: colour frames and depth records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

import numpy as np

from .pairing import MessageKey
from .topics import IMAGE_TYPE
from .writer import Slot
from ..masker import FrameResult


@dataclass
class DepthRecord:
    """A depth message whose output waits for the mask of its colour frame."""

    key: MessageKey
    slot: Slot
    msg: Any
    cdr: Any
    depth: Optional[np.ndarray]


@dataclass
class Frame:
    """A colour frame between reading and writing."""

    key: MessageKey
    slot: Slot
    mask_slot: Optional[Slot]
    msgtype: str = IMAGE_TYPE
    msg: Any = None
    cdr: Any = None
    bgr: Optional[np.ndarray] = None
    codec: Any = None
    depth: Optional[np.ndarray] = None
    depth_rec: Optional[DepthRecord] = None
    wants_depth: bool = False
    result: Optional[FrameResult] = None
    extra_boxes: List[np.ndarray] = field(default_factory=list)

    def drop_outputs(self) -> None:
        """Write neither the frame nor its mask."""
        self.slot.drop()
        if self.mask_slot is not None:
            self.mask_slot.drop()

    def release(self) -> None:
        """Forget the pixels and messages once the frame is written (memory is bounded)."""
        self.bgr = self.depth = self.msg = self.cdr = self.result = None
