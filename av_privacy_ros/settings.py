"""
The pipeline's settings: one frozen :class:`PipelineSettings`, validated once, from the table.

Every field is one parameter of :data:`av_privacy_ros.params.PARAMETERS` (its ``param``
metadata names it): the default is the table's default and :func:`params.validate` checks the
value against the table's bounds when the object is built, so no other module keeps a copy of
a bound. The masker, the tracker and the mosaic take these values as they are. The field
names are the keyword arguments of the seed API (``conf_thresh``, ``anon_block`` ...);
:meth:`PipelineSettings.from_values` and :meth:`PipelineSettings.to_values` map them to and
from the node's dotted parameter names.

Pure Python (no rclpy, no onnxruntime).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace as dataclass_replace
from pathlib import PurePath
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from . import params


def _setting(param: str) -> Any:
    """Return a dataclass field for table parameter ``param``, with the table's default."""
    default = params.PARAMETERS_BY_NAME[param].default
    frozen_default = tuple(default) if isinstance(default, list) else default
    return field(default=frozen_default, metadata={'param': param})


@dataclass(frozen=True)
class PipelineSettings:
    """
    Every setting of the anonymization pipeline, validated against the parameter table.

    Build one with keywords (``PipelineSettings(conf_thresh=0.3)``), from the node's parameter
    names (:meth:`from_values`), or change one with :meth:`replace`; each returns a new,
    validated object, and an invalid value raises ValueError naming the parameter and its
    bound. Fields of read-only parameters (detector, scale policy, seed) are fixed for the
    life of a masker; the others may change while frames are processed
    (``AVPrivacyMasker.update``). ``model_path`` and ``trt_cache_dir`` '' mean the default
    search and folder, ``det_width``/``det_height`` 0 follow the frame, ``seed`` -1 draws
    from the OS.
    """

    # Detector (read-only parameters: a change needs a new detector).
    backend: str = _setting('detector.backend')
    model_path: str = _setting('detector.model_path')
    allow_download: bool = _setting('detector.allow_download')
    providers: Tuple[str, ...] = _setting('detector.providers')
    trt_fp16: bool = _setting('detector.trt_fp16')
    trt_cache_dir: str = _setting('detector.trt_cache_dir')
    det_width: int = _setting('detector.det_width')
    det_height: int = _setting('detector.det_height')
    scale_policy: str = _setting('detector.scale_policy')
    tile_overlap: int = _setting('detector.tile_overlap')
    tiles_per_frame: int = _setting('detector.tiles_per_frame')
    seed: int = _setting('seed')
    # Live settings.
    conf_thresh: float = _setting('detector.conf_thresh')
    mask_mode: str = _setting('mask.mode')
    pad_ratio: float = _setting('mask.pad_ratio')
    dilate_kernel: int = _setting('mask.dilate_kernel')
    depth_near_margin: float = _setting('mask.depth_near_margin')
    depth_far_margin: float = _setting('mask.depth_far_margin')
    anon_block: int = _setting('anonymizer.block')
    anon_noise: int = _setting('anonymizer.noise')
    noise_mode: str = _setting('anonymizer.noise_mode')
    cells_across: int = _setting('anonymizer.cells_across')
    epsilon: float = _setting('anonymizer.epsilon')
    dp_pixels: int = _setting('anonymizer.dp_pixels')
    hold_frames: int = _setting('tracking.hold_frames')
    grow_px_per_frame: float = _setting('tracking.grow_px_per_frame')
    walking_speed: float = _setting('tracking.walking_speed')
    frame_rate: float = _setting('tracking.frame_rate')
    enable_depth_anon: bool = _setting('depth.enable_noise')
    depth_noise_std: float = _setting('depth.noise_std')

    def __post_init__(self) -> None:
        """Validate every field against the table (the only check) and normalise its type."""
        for name, param in FIELD_PARAMS.items():
            value = _table_value(name, getattr(self, name))
            reason = params.validate(param, value)
            if reason is not None:
                raise ValueError('%s (setting %s)' % (reason, name))
            value = params.coerce(param, value)
            if isinstance(value, list):
                value = tuple(value)
            elif params.PARAMETERS_BY_NAME[param].type_name == 'int':
                value = int(value)
            object.__setattr__(self, name, value)

    # -- building -----------------------------------------------------------------------------
    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> 'PipelineSettings':
        """
        Return the settings of the node's parameter values (dotted names, as in the YAML).

        Names of the table that are not pipeline settings (QoS, sync, ...) are ignored; missing
        names take the table's default; an unknown name or a bad value raises ValueError.
        """
        unknown = sorted(name for name in values if name not in params.PARAMETERS_BY_NAME)
        if unknown:
            raise ValueError('unknown parameter %s' % ', '.join(repr(name) for name in unknown))
        return cls(**{name: values[param] for name, param in FIELD_PARAMS.items()
                      if param in values})

    def replace(self, **changes: Any) -> 'PipelineSettings':
        """
        Return a validated copy with ``changes`` (field names) applied.

        ``det_size=(width, height)`` or None is accepted for ``det_width``/``det_height``, and
        None for ``model_path``, ``trt_cache_dir`` and ``seed``, as the seed API wrote them.
        """
        if 'det_size' in changes:
            size = changes.pop('det_size')
            width, height = (0, 0) if size is None else _size_pair(size)
            changes.setdefault('det_width', width)
            changes.setdefault('det_height', height)
        unknown = sorted(name for name in changes if name not in FIELD_PARAMS)
        if unknown:
            raise ValueError('unknown setting %s (settings are %s)' % (
                ', '.join(repr(name) for name in unknown), ', '.join(FIELD_PARAMS)))
        return dataclass_replace(self, **changes)

    def with_live_from(self, other: 'PipelineSettings') -> 'PipelineSettings':
        """Return these settings with every live (not read-only) field taken from ``other``."""
        return dataclass_replace(self, **{name: getattr(other, name) for name in LIVE_FIELDS})

    # -- reading ------------------------------------------------------------------------------
    def to_values(self) -> Dict[str, params.ParamValue]:
        """Return the settings under the node's parameter names (the inverse of from_values)."""
        values: Dict[str, params.ParamValue] = {}
        for name, param in FIELD_PARAMS.items():
            value = getattr(self, name)
            values[param] = list(value) if isinstance(value, tuple) else value
        return values

    def fixed_changes(self, other: 'PipelineSettings') -> List[str]:
        """Return the parameter names of read-only fields whose values differ in ``other``."""
        return [FIELD_PARAMS[name] for name in FIXED_FIELDS
                if getattr(self, name) != getattr(other, name)]

    def privacy_weakenings(self) -> List[str]:
        """Return one sentence per setting that weakens privacy (see params.privacy_weakenings)."""
        return params.privacy_weakenings(self.to_values())

    def masker_keywords(self) -> Dict[str, Any]:
        """Return the seed API's keyword arguments of AVPrivacyMasker for these settings."""
        return {
            'backend': self.backend,
            'model_path': self.model_path or None,
            'allow_download': self.allow_download,
            'providers': list(self.providers),
            'trt_fp16': self.trt_fp16,
            'trt_cache_dir': self.trt_cache_dir or None,
            'conf_thresh': self.conf_thresh,
            'det_size': self.det_size,
            'anon_block': self.anon_block,
            'anon_noise': self.anon_noise,
            'noise_mode': self.noise_mode,
            'cells_across': self.cells_across,
            'epsilon': self.epsilon,
            'dp_pixels': self.dp_pixels,
            'hold_frames': self.hold_frames,
            'grow_px_per_frame': self.grow_px_per_frame,
            'walking_speed': self.walking_speed,
            'frame_rate': self.frame_rate,
            'dilate_kernel': self.dilate_kernel,
            'depth_near_margin': self.depth_near_margin,
            'depth_far_margin': self.depth_far_margin,
            'enable_depth_anon': self.enable_depth_anon,
            'depth_noise_std': self.depth_noise_std,
            'seed': self.rng_seed,
            'scale_policy': self.scale_policy,
            'tile_overlap': self.tile_overlap,
            'tiles_per_frame': self.tiles_per_frame,
        }

    def process_keywords(self) -> Dict[str, Any]:
        """Return the mask arguments of AVPrivacyMasker.process for these settings."""
        return {'use_depth_for_mask': self.use_depth_for_mask, 'pad_ratio': self.pad_ratio,
                'oval_boxes': self.oval_boxes}

    @property
    def det_size(self) -> Optional[Tuple[int, int]]:
        """Return the detector input (width, height), or None to follow the frame."""
        if self.det_width > 0 and self.det_height > 0:
            return self.det_width, self.det_height
        return None

    @property
    def rng_seed(self) -> Optional[int]:
        """Return the noise seed, or None to draw one from the OS."""
        return None if self.seed < 0 else self.seed

    @property
    def use_depth_for_mask(self) -> bool:
        """Return True when masks follow the depth image (mask_mode depth)."""
        return self.mask_mode == 'depth'

    @property
    def oval_boxes(self) -> bool:
        """Return True for oval masks, False for rectangles (mask_mode rect)."""
        return self.mask_mode != 'rect'


def _table_value(name: str, value: Any) -> Any:
    """Return ``value`` as the table writes it (seed API spellings and numpy numbers mapped)."""
    if isinstance(value, np.generic):
        value = value.item()
    if name in ('model_path', 'trt_cache_dir'):
        if value is None:
            return ''
        if isinstance(value, PurePath):
            return str(value)
    if name == 'seed' and value is None:
        return -1
    return value


def _size_pair(size: Any) -> Tuple[Any, Any]:
    """Return (width, height) of a det_size, or raise ValueError."""
    try:
        width, height = size
    except (TypeError, ValueError):
        raise ValueError('det_size must be None or (width, height), got %r' % (size,)) from None
    if width == 0 or height == 0:
        raise ValueError('det_size must be None or two sizes above 0, got %r' % (size,))
    return width, height


FIELD_PARAMS: Dict[str, str] = {
    spec.name: spec.metadata['param'] for spec in fields(PipelineSettings)}
"""Field name -> parameter name, in field order."""

FIXED_FIELDS: Tuple[str, ...] = tuple(
    name for name, param in FIELD_PARAMS.items() if params.PARAMETERS_BY_NAME[param].read_only)
"""Fields of read-only parameters: they need a new masker (detector, scale policy, seed)."""

LIVE_FIELDS: Tuple[str, ...] = tuple(name for name in FIELD_PARAMS if name not in FIXED_FIELDS)
"""Fields that may change while frames are processed (AVPrivacyMasker.update)."""
