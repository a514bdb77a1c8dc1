"""
Large test frames with small real faces: crops of the sample photos pasted at known sizes.

Faces come from insightface's real sample photos (the group photo ``t1`` and the portrait
``Tom_Hanks_54745``). Ground truth: the detector's own boxes on the unscaled source photo,
detected at native resolution with a score of at least 0.5; a crop around each box (the box
plus 60 % of its size on each side) is resized so the box is ``width`` pixels wide and pasted
on a face-free background, and the box is scaled and shifted with it. A face is leaked when
less than 90 % of its box is covered by the mask.

Used by test/test_scale_policy*.py and scripts/bench_highres.py.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

import cv2
import numpy as np

SOURCE_IMAGES = ('t1', 'Tom_Hanks_54745')
CROP_PAD = 0.6  # context around a face box, as a fraction of its size on each side
LEAK_COVERAGE = 0.9
BUCKETS = (('<20 px', 0.0, 20.0), ('20-50 px', 20.0, 50.0), ('>50 px', 50.0, 1e9))


@dataclass(frozen=True)
class FacePatch:
    """A crop of a real photo around one face and the face box inside the crop."""

    image: np.ndarray
    box: np.ndarray  # x1, y1, x2, y2 in crop pixels


@dataclass
class PlacedFace:
    """A face to paste: which patch, its box width in pixels, its centre and its motion."""

    patch: int
    width: float
    cx: float
    cy: float
    vx: float = 0.0
    vy: float = 0.0
    first_frame: int = 0


def _source_image(name: str) -> np.ndarray:
    from insightface.data import get_image
    try:
        return np.ascontiguousarray(get_image(name))
    except Exception:  # noqa: BLE001 - a sample missing from the wheel is just not used
        import insightface
        path = Path(insightface.__file__).parent / 'data' / 'images' / (name + '.png')
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise
        return image


def face_patches(detector: Any, names: Sequence[str] = SOURCE_IMAGES) -> List[FacePatch]:
    """Return a patch per face the detector finds at native size in the source photos."""
    patches: List[FacePatch] = []
    for name in names:
        try:
            image = _source_image(name)
        except Exception:  # noqa: BLE001 - not every insightface wheel has every sample
            continue
        height, width = image.shape[:2]
        size = (int(math.ceil(width / 32.0)) * 32, int(math.ceil(height / 32.0)) * 32)
        found = detector.detect(image, 0.5, input_size=size)
        for x1, y1, x2, y2 in found.boxes:
            pad = CROP_PAD * max(x2 - x1, y2 - y1)
            cx1, cy1 = int(max(0, x1 - pad)), int(max(0, y1 - pad))
            cx2, cy2 = int(min(width, x2 + pad)), int(min(height, y2 + pad))
            patches.append(FacePatch(image[cy1:cy2, cx1:cx2].copy(),
                                     np.array([x1 - cx1, y1 - cy1, x2 - cx1, y2 - cy1],
                                              np.float32)))
    if not patches:
        raise RuntimeError('no faces found in the sample photos %s' % ', '.join(names))
    return patches


def background(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Return a face-free street-like background: smooth colour blobs with fine texture."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(40, 200, (max(2, height // 80), max(2, width // 80), 3), np.uint8)
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    texture = rng.normal(0.0, 6.0, (height, width, 1))
    return np.clip(image.astype(np.float32) + texture, 0, 255).astype(np.uint8)


def paste(frame: np.ndarray, patch: FacePatch, width: float, cx: float,
          cy: float) -> Optional[np.ndarray]:
    """Paste ``patch`` so its face box is ``width`` px wide centred at (cx, cy); return the box."""
    box_w = float(patch.box[2] - patch.box[0])
    scale = width / box_w
    crop_h, crop_w = patch.image.shape[:2]
    new_w, new_h = max(1, int(round(crop_w * scale))), max(1, int(round(crop_h * scale)))
    scale_x, scale_y = new_w / float(crop_w), new_h / float(crop_h)
    resized = cv2.resize(patch.image, (new_w, new_h), interpolation=cv2.INTER_AREA)
    box = patch.box * np.array([scale_x, scale_y, scale_x, scale_y], np.float32)
    ox = int(round(cx - (box[0] + box[2]) / 2.0))
    oy = int(round(cy - (box[1] + box[3]) / 2.0))
    box = box + np.array([ox, oy, ox, oy], np.float32)
    height, width_px = frame.shape[:2]
    if box[0] < 0 or box[1] < 0 or box[2] > width_px or box[3] > height:
        return None  # only whole faces are ground truth
    x0, y0 = max(0, ox), max(0, oy)
    x1, y1 = min(width_px, ox + new_w), min(height, oy + new_h)
    frame[y0:y1, x0:x1] = resized[y0 - oy:y1 - oy, x0 - ox:x1 - ox]
    return box


def render(base: np.ndarray, patches: Sequence[FacePatch], faces: Sequence[PlacedFace],
           frame_index: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Return the frame at ``frame_index`` and the N×4 ground-truth boxes of its faces."""
    frame = base.copy()
    boxes = []
    for face in faces:
        if frame_index < face.first_frame:
            continue
        box = paste(frame, patches[face.patch], face.width, face.cx + face.vx * frame_index,
                    face.cy + face.vy * frame_index)
        if box is not None:
            boxes.append(box)
    return frame, np.asarray(boxes, np.float32).reshape(-1, 4)


def layout(width: int, height: int, patches: int, widths: Sequence[float],
           border_xs: Sequence[float] = (), border_ys: Sequence[float] = (),
           seed: int = 0, speed: float = 0.0, late_fraction: float = 0.0,
           frames: int = 1) -> List[PlacedFace]:
    """
    Place one face per entry of ``widths`` without overlaps (crops included).

    Faces are spread over the frame at random (``seed``); every third is centred on one of
    ``border_xs`` / ``border_ys`` (tile borders) when given. ``speed`` > 0 gives each face a
    random motion of up to that many px per frame; ``late_fraction`` of the faces appear only
    after the first frame (at a random frame in the first half of ``frames``).
    """
    rng = np.random.default_rng(seed)
    placed: List[PlacedFace] = []
    taken: List[Tuple[float, float, float]] = []
    for number, face_w in enumerate(widths):
        reach = face_w * (0.5 + CROP_PAD) + 2 + speed * frames
        for _attempt in range(200):
            cx = float(rng.uniform(reach, width - reach))
            cy = float(rng.uniform(reach, height - reach))
            if number % 3 == 0 and (border_xs or border_ys):
                if number % 2 == 0 and border_xs:
                    cx = float(border_xs[int(rng.integers(len(border_xs)))])
                elif border_ys:
                    cy = float(border_ys[int(rng.integers(len(border_ys)))])
            if all(math.hypot(cx - x, cy - y) > reach + r for x, y, r in taken):
                break
        else:
            continue
        taken.append((cx, cy, reach))
        vx, vy = (rng.uniform(-speed, speed, 2) if speed > 0 else (0.0, 0.0))
        late = late_fraction > 0 and rng.random() < late_fraction
        first = int(rng.integers(1, max(2, frames // 2))) if late else 0
        placed.append(PlacedFace(int(rng.integers(patches)), float(face_w), cx, cy,
                                 float(vx), float(vy), first))
    return placed


def coverage(mask: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Return the fraction of each box's pixels that the mask covers."""
    result = np.zeros(len(boxes), np.float64)
    height, width = mask.shape[:2]
    for k, (x1, y1, x2, y2) in enumerate(np.asarray(boxes).reshape(-1, 4)):
        xa, ya = int(max(0, math.floor(x1))), int(max(0, math.floor(y1)))
        xb, yb = int(min(width, math.ceil(x2))), int(min(height, math.ceil(y2)))
        if xb <= xa or yb <= ya:
            continue
        result[k] = float(mask[ya:yb, xa:xb].mean())
    return result


def bucket_of(boxes: np.ndarray) -> List[str]:
    """Return the size bucket name of each box (by its width)."""
    names = []
    for x1, _y1, x2, _y2 in np.asarray(boxes).reshape(-1, 4):
        width = float(x2 - x1)
        names.append(next(name for name, low, high in BUCKETS if low <= width < high))
    return names


class LeakCounter:
    """Count faces and leaked faces (mask coverage under 90 %) per size bucket."""

    def __init__(self) -> None:
        """Start with no faces."""
        self.faces = {name: 0 for name, _low, _high in BUCKETS}
        self.leaks = {name: 0 for name, _low, _high in BUCKETS}

    def add(self, mask: np.ndarray, boxes: np.ndarray) -> int:
        """Count one frame's faces against its mask; return how many leaked."""
        return self.add_flags(boxes, coverage(mask, boxes) < LEAK_COVERAGE)

    def add_flags(self, boxes: np.ndarray, leaked: np.ndarray) -> int:
        """Count faces with known leak flags; return how many leaked."""
        leaked = np.asarray(leaked, np.bool_)
        for name, leak in zip(bucket_of(boxes), leaked):
            self.faces[name] += 1
            self.leaks[name] += int(leak)
        return int(leaked.sum())

    def rate(self, name: str) -> float:
        """Return the leaked fraction of the faces in bucket ``name`` (0 without faces)."""
        return self.leaks[name] / float(self.faces[name]) if self.faces[name] else 0.0
