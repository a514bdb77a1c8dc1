"""
``--produce``: run the anonymization pipeline over a session's images.

Writes our masks (one PNG per image, keeping the image's frame key), a timings CSV and
optionally the anonymized frames, and re-detects faces in the anonymized frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, TYPE_CHECKING

import cv2
import numpy as np

from .frames import IMAGE_EXTENSIONS, list_frames, PathLike
from .metrics import centres_in_mask
from .sessions import order_stages, Session, write_csv

if TYPE_CHECKING:
    from ..masker import FrameResult


def held_box_count(result: FrameResult) -> int:
    """Return how many masked faces the temporal hold added to a frame (0 without tracking)."""
    return int(result.held_count)


@dataclass
class Produced:
    """What ``--produce`` made for one session."""

    masks: Path
    timings: Path
    residual: Dict[int, np.ndarray] = field(default_factory=dict)


def build_masker(params_file: Optional[PathLike]) -> Tuple[Any, Dict[str, Any]]:
    """Return (AVPrivacyMasker, process kwargs) configured from a node params YAML file."""
    from .. import params
    from ..masker import AVPrivacyMasker
    from ..settings import PipelineSettings

    overrides = params.load_params_file(params_file) if params_file else {}
    settings = PipelineSettings.from_values(overrides)
    masker = AVPrivacyMasker(settings)
    return masker, settings.process_keywords()


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
