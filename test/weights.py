"""
Where the tests find the SCRFD weights, and what a skip tells a user who has none.

The tests look where the tools look (``av_privacy_ros.detection.find_scrfd_model``: the
``$AV_PRIVACY_MODELS`` folder, then insightface's ``~/.insightface/models/buffalo_sc``), and
then in ``../shared/models`` beside the repository, where the project's CI keeps a copy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from av_privacy_ros.detection import find_scrfd_model, SCRFD_MODEL_NAME

REPO = Path(__file__).resolve().parents[1]
CI_MODELS = REPO.parent / 'shared' / 'models'

HOW_TO_GET_SCRFD = (
    'SCRFD weights not found (looked for $AV_PRIVACY_MODELS/{name}, '
    '~/.insightface/models/buffalo_sc/{name} and ../shared/models/{name}). On a machine with '
    'internet, get them once with: python -c "from insightface.utils.storage import '
    'ensure_available; ensure_available(\'models\', \'buffalo_sc\')" (or start the node with '
    '-p detector.allow_download:=true). InsightFace licenses these weights for non-commercial '
    'research only; without them the tools use CenterFace (MIT).'.format(name=SCRFD_MODEL_NAME))


def scrfd_weights() -> Optional[Path]:
    """Return the SCRFD-500M weights file, or None when none is found."""
    found = find_scrfd_model()
    if found is not None:
        return found.resolve()
    candidate = CI_MODELS / SCRFD_MODEL_NAME
    return candidate.resolve() if candidate.is_file() else None
