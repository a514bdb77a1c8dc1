"""What the bag tool tells its user: the error it raises and the callbacks it reports through."""

from __future__ import annotations

from typing import Callable

ProgressCallback = Callable[[int, int], None]
"""Called with (colour frames done, colour frames in the bag) after each frame."""
LogCallback = Callable[[str], None]
"""Called with one line of text for the user."""


class BagError(Exception):
    """A problem the user can fix or must know about; the message says what and where."""


def one_line(exc: BaseException) -> str:
    """Return an exception's text on one line (its type name when it has no text)."""
    return ' '.join(('%s' % exc).split()) or type(exc).__name__
