"""Two tqdm bars for an archive run: bags finished, and colour frames anonymized."""

from __future__ import annotations

import sys
from typing import Any, Optional


class ArchiveProgress:
    """The bars; the frame total grows as workers open bags and count their frames."""

    def __init__(self, bags: int, enabled: bool = True) -> None:
        """Show the bars on stderr when ``enabled``."""
        self._bags: Optional[Any] = None
        self._frames: Optional[Any] = None
        if enabled and bags:
            from tqdm import tqdm
            self._bags = tqdm(total=bags, unit='bag', desc='bags  ', position=0,
                              file=sys.stderr, dynamic_ncols=True)
            self._frames = tqdm(total=0, unit='frame', desc='frames', position=1,
                                file=sys.stderr, dynamic_ncols=True)

    def update(self, bags_done: int, frames_done: int, frames_total: int) -> None:
        """Move the bars to the given counts."""
        if self._bags is None or self._frames is None:
            return
        self._bags.update(bags_done - self._bags.n)
        if frames_total != self._frames.total:
            self._frames.total = frames_total
            self._frames.refresh()
        self._frames.update(frames_done - self._frames.n)

    def close(self) -> None:
        """Remove the bars."""
        for bar in (self._frames, self._bags):
            if bar is not None:
                bar.close()
        self._bags = self._frames = None
