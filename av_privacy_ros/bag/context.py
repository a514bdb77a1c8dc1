"""The shared state of one anonymize_bag run that every camera uses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional

from .errors import ProgressCallback
from .summary import BagSummary
from .writer import OutputQueue


@dataclass
class RunContext:
    """Output queue, output typestore, counts, settings and progress of one run."""

    out: OutputQueue
    dst_ts: Any
    summary: BagSummary
    process_kwargs: Dict[str, Any]
    need_depth_input: bool
    depth_noise: bool
    depth_std: float
    jpeg_quality: int
    backward_frames: int
    total_frames: int
    progress: Optional[ProgressCallback] = None
    bar: Any = None
    done: int = 0

    def frame_done(self) -> None:
        """Count one colour frame handled (written or not) and report progress."""
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
        if self.progress is not None:
            self.progress(self.done, self.total_frames)
