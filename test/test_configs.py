"""
Check the shipped configuration files against the node's parameter table and the launch files.

``config/anonymizer.yaml`` is generated from :data:`av_privacy_ros.params.PARAMETERS`: a
parameter added to the table without regenerating the file fails here. Regenerate it with::

    .venv/bin/python test/test_configs.py

Every other ``config/*.yaml`` may set any subset of the parameters, but only declared names with
values the table accepts. ``carla_objects.json`` must give the CARLA colour and depth cameras the
same pose, field of view and size; the Fast DDS profile must have a shared-memory segment large
enough for uncompressed frames.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import sys
import textwrap
from typing import Any, Dict, List, Mapping, Tuple
import xml.etree.ElementTree as ElementTree

from av_privacy_ros import params
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / 'config'
ANONYMIZER_YAML = CONFIG / 'anonymizer.yaml'
REGENERATE = '.venv/bin/python test/test_configs.py'
COMMENT_WIDTH = 99
MIN_SHM_SEGMENT_BYTES = 16 * 1024 * 1024
FASTDDS_NS = '{http://www.eprosima.com}'
RCL_DOMAIN_ID = 101 + os.getpid() % 100  # per test process, as test/anonymizer_harness.py

HEADER = """\
# Parameters of the av_privacy_ros anonymizer node: every parameter, set to its default.
#
# Generated from the parameter table in av_privacy_ros/params.py; after changing the table run
#   {regenerate}
# (test/test_configs.py fails while this file and the table differ).
#
# Use a copy with your own values:
#   ros2 launch av_privacy_ros anonymizer.launch.py params_file:=/path/to/copy.yaml
# A file may list only the parameters it changes; the others keep these defaults.
# 'live' parameters can also be changed while the node runs (ros2 param set /anonymizer NAME
# VALUE); 'read-only' ones are read once at start. The launch files set use_depth and
# use_sim_time from their launch arguments.
#
# The defaults are privacy first: a missed face is a leak, a false positive costs a few mosaic
# cells. A frame that cannot be processed (or arrives before the detector is ready) is
# published anonymized over its whole area (fail_mode 'anonymize') or not at all ('drop'),
# never as it came in.
"""


def _yaml_scalar(value: Any) -> str:
    """Return ``value`` written as a YAML scalar that keeps its ROS parameter type."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        if 'e' in text or 'E' in text:  # YAML 1.1 needs 1.0e-05, not 1e-05
            mantissa, exponent = text.lower().split('e')
            if '.' not in mantissa:
                mantissa += '.0'
            if exponent[0] not in '+-':
                exponent = '+' + exponent
            text = mantissa + 'e' + exponent
        return text
    if isinstance(value, (list, tuple)):
        return '[' + ', '.join(_yaml_scalar(item) for item in value) + ']'
    return "'" + str(value).replace("'", "''") + "'"


def _comment_lines(spec: params.ParamSpec, indent: str) -> List[str]:
    width = COMMENT_WIDTH - len(indent) - 2
    lines = textwrap.wrap(spec.description, width=width)
    facts = spec.type_name
    if spec.range_text():
        facts += ', ' + ('one of ' if spec.choices else '') + spec.range_text()
    facts += '; ' + ('read-only' if spec.read_only else 'live')
    lines += textwrap.wrap(facts, width=width)
    return [indent + '# ' + line for line in lines]


def _grouped(specs: Tuple[params.ParamSpec, ...]) -> Dict[str, Any]:
    """Nest the specs by the dotted parts of their names, keeping the table order."""
    tree: Dict[str, Any] = {}
    for spec in specs:
        node = tree
        parts = spec.name.split('.')
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            assert isinstance(node, dict), 'parameter %s is also a group' % part
        node[parts[-1]] = spec
    return tree


def _render_tree(tree: Mapping[str, Any], depth: int) -> List[str]:
    indent = '  ' * depth
    lines: List[str] = []
    for key, item in tree.items():
        if isinstance(item, params.ParamSpec):
            lines += _comment_lines(item, indent)
            lines.append('%s%s: %s' % (indent, key, _yaml_scalar(item.default)))
        else:
            if lines:
                lines.append('')
            lines.append('%s%s:' % (indent, key))
            lines += _render_tree(item, depth + 1)
    return lines


def render_anonymizer_yaml() -> str:
    """Return the text of config/anonymizer.yaml for the current parameter table."""
    lines = HEADER.format(regenerate=REGENERATE).splitlines()
    lines += ['/**:', '  ros__parameters:']
    lines += _render_tree(_grouped(params.PARAMETERS), 2)
    return '\n'.join(lines) + '\n'


def _yaml_files() -> List[Path]:
    return sorted(CONFIG.glob('*.yaml'))


def _ros_parameters(path: Path) -> Dict[str, Any]:
    """Return the nested ros__parameters mapping of a node params file."""
    document = yaml.safe_load(path.read_text(encoding='utf-8'))
    assert isinstance(document, dict) and list(document) == ['/**'], (
        '%s must have one top-level section "/**" (it applies to the node under any name and '
        'namespace), found %s' % (path.name, list(document or {})))
    section = document['/**']
    assert isinstance(section, dict) and list(section) == ['ros__parameters'], (
        '%s: "/**" must hold only ros__parameters' % path.name)
    assert isinstance(section['ros__parameters'], dict)
    return section['ros__parameters']


def _leaf_keys(tree: Mapping[str, Any], prefix: str = '') -> List[str]:
    keys: List[str] = []
    for key, value in tree.items():
        if isinstance(value, Mapping):
            keys += _leaf_keys(value, prefix + str(key) + '.')
        else:
            keys.append(prefix + str(key))
    return keys


# --- config/anonymizer.yaml --------------------------------------------------------------------

def test_anonymizer_yaml_is_generated_from_the_parameter_table() -> None:
    """The shipped file lists every parameter of the table, with its description and default."""
    expected = render_anonymizer_yaml()
    actual = ANONYMIZER_YAML.read_text(encoding='utf-8')
    if actual != expected:
        listed = set(_leaf_keys(_ros_parameters(ANONYMIZER_YAML)))
        missing = [name for name in params.names() if name not in listed]
        extra = sorted(listed - set(params.names()))
        pytest.fail('config/anonymizer.yaml is out of date with av_privacy_ros/params.py '
                    '(missing %s, unknown %s, or changed defaults/descriptions); regenerate it '
                    'with: %s' % (missing, extra, REGENERATE))


def test_anonymizer_yaml_loads_to_exactly_the_defaults() -> None:
    """Loading the generic file through the node's reader gives every default, nothing else."""
    loaded = params.load_params_file(ANONYMIZER_YAML)
    assert sorted(loaded) == sorted(params.names())
    assert loaded == params.defaults()


def test_anonymizer_yaml_documents_every_parameter_in_a_comment() -> None:
    """Each parameter line is preceded by a comment with its description and live/read-only."""
    lines = ANONYMIZER_YAML.read_text(encoding='utf-8').splitlines()
    documented = 0
    for index, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith('#') or stripped.endswith(':'):
            continue
        comment = []
        back = index - 1
        while back >= 0 and lines[back].strip().startswith('#'):
            comment.insert(0, lines[back].strip().lstrip('# '))
            back -= 1
        text = ' '.join(comment)
        assert comment and ('live' in text or 'read-only' in text), (
            'config/anonymizer.yaml line %d (%s) has no comment' % (index + 1, stripped))
        documented += 1
    assert documented == len(params.PARAMETERS)


def test_privacy_first_defaults_in_the_generic_file() -> None:
    """The generic file fails closed and detects at the measured privacy-first threshold."""
    loaded = params.load_params_file(ANONYMIZER_YAML)
    assert loaded['fail_mode'] == 'anonymize'
    assert loaded['detector.conf_thresh'] <= 0.3


def test_yaml_scalars_keep_their_parameter_types() -> None:
    """Rendered values read back (by PyYAML, like the node's reader) with the same type."""
    for value in (True, False, 0, -1, 2 ** 31 - 1, 0.3, 1.0, 1e-05, 2.5e12, '', "it's",
                  'auto', ['tensorrt', 'cuda', 'cpu']):
        back = yaml.safe_load('v: ' + _yaml_scalar(value))['v']
        assert back == value and type(back) is type(value), (value, back)


# --- every config/*.yaml -------------------------------------------------------------------------

@pytest.mark.parametrize('path', _yaml_files(), ids=lambda p: p.name)
def test_every_key_is_a_declared_parameter_with_an_accepted_value(path: Path) -> None:
    """Each key is a parameter the node declares, and its value is in the parameter's range."""
    tree = _ros_parameters(path)
    for name in _leaf_keys(tree):
        assert name in params.PARAMETERS_BY_NAME, (
            '%s: %s is not a parameter of the anonymizer node' % (path.name, name))
    flat = params.flatten(tree)
    for name, value in flat.items():
        reason = params.validate(name, value)
        assert reason is None, '%s: %s' % (path.name, reason)
    # The node's own reader agrees (it raises ValueError naming the file otherwise).
    assert set(params.load_params_file(path)) == set(flat)


@pytest.mark.parametrize('path', _yaml_files(), ids=lambda p: p.name)
def test_groups_are_nested_not_dotted(path: Path) -> None:
    """Groups are written as nested mappings (detector: conf_thresh:), never as dotted keys."""
    def walk(tree: Mapping[str, Any]) -> None:
        for key, value in tree.items():
            assert '.' not in str(key), '%s: write %r as nested groups' % (path.name, key)
            if isinstance(value, Mapping):
                walk(value)
    walk(_ros_parameters(path))


def test_realsense_jetson_config_uses_tensorrt_with_a_fallback_and_depth_masks() -> None:
    """Jetson: TensorRT then CUDA then CPU, fp16, detection at 640x480, depth-guided masks."""
    values = params.resolve(params.load_params_file(CONFIG / 'realsense_jetson.yaml'))
    assert values['detector.providers'] == ['tensorrt', 'cuda', 'cpu']
    assert values['detector.trt_fp16'] is True
    assert (values['detector.det_width'], values['detector.det_height']) == (640, 480)
    assert values['use_depth'] is True
    assert values['mask.mode'] == 'depth'
    assert values['fail_mode'] == 'anonymize'
    assert values['detector.conf_thresh'] <= 0.3
    kwargs = params.masker_kwargs(values)
    assert kwargs['det_size'] == (640, 480)
    assert kwargs['trt_cache_dir'] is None or Path(kwargs['trt_cache_dir']).is_absolute()
    assert params.process_kwargs(values)['use_depth_for_mask'] is True


def test_carla_config_uses_depth_and_fails_closed() -> None:
    """CARLA: the aligned depth camera guides the masks; errors never pass raw frames."""
    values = params.resolve(params.load_params_file(CONFIG / 'carla.yaml'))
    assert values['use_depth'] is True
    assert values['mask.mode'] == 'depth'
    assert values['fail_mode'] == 'anonymize'
    assert values['detector.conf_thresh'] <= 0.3
    assert (values['detector.det_width'], values['detector.det_height']) == (640, 480)
    # The tracker's frame rate is CARLA's: one frame per camera tick.
    _, rgb, _ = _carla_cameras()
    assert values['tracking.frame_rate'] == pytest.approx(1.0 / rgb['sensor_tick'])


@pytest.mark.parametrize('path', _yaml_files(), ids=lambda p: p.name)
def test_rcl_reads_every_value_with_the_declared_type(path: Path) -> None:
    """
    ROS itself (rcl's YAML parser) reads each value with the type the node declares.

    PyYAML and the table accept ``slop: 0`` for a double, but rcl reads it as an integer and
    the node would refuse to start; this reads the file the way ``ros2 launch`` hands it over.
    """
    rclpy = pytest.importorskip('rclpy', reason='rclpy is not installed')
    from rclpy.context import Context
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    kinds = {'bool': Parameter.Type.BOOL, 'int': Parameter.Type.INTEGER,
             'double': Parameter.Type.DOUBLE, 'string': Parameter.Type.STRING,
             'string[]': Parameter.Type.STRING_ARRAY}
    context = Context()
    rclpy.init(args=['--ros-args', '--params-file', str(path)], context=context,
               domain_id=RCL_DOMAIN_ID)
    try:
        node = Node('anonymizer', context=context,
                    automatically_declare_parameters_from_overrides=True)
        try:
            expected = params.load_params_file(path)
            assert expected, '%s sets no parameter' % path.name
            for name, value in expected.items():
                parameter = node.get_parameter(name)
                spec = params.PARAMETERS_BY_NAME[name]
                assert parameter.type_ == kinds[spec.type_name], (
                    '%s: rcl reads %s as %s, the node declares %s' % (
                        path.name, name, parameter.type_.name, spec.type_name))
                got = parameter.value
                assert (list(got) if spec.type_name == 'string[]' else got) == value, name
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


# --- config/carla_objects.json -------------------------------------------------------------------

def _carla_cameras() -> Tuple[Dict[str, Any], Dict[str, Any], Dict[str, Any]]:
    document = json.loads((CONFIG / 'carla_objects.json').read_text(encoding='utf-8'))
    vehicles = [obj for obj in document['objects'] if obj['type'].startswith('vehicle.')]
    assert len(vehicles) == 1, 'exactly one ego vehicle'
    vehicle = vehicles[0]
    sensors = {sensor['id']: sensor for sensor in vehicle['sensors']}
    return vehicle, sensors['rgb_front'], sensors['depth_front']


def test_carla_objects_define_the_ego_vehicle_the_launch_file_expects() -> None:
    """The vehicle id is the default role_name, so its topics are /carla/ego_vehicle/..."""
    vehicle, rgb, depth = _carla_cameras()
    assert vehicle['id'] == 'ego_vehicle'
    assert rgb['type'] == 'sensor.camera.rgb'
    assert depth['type'] == 'sensor.camera.depth'
    ids = [sensor['id'] for sensor in vehicle['sensors']]
    assert len(ids) == len(set(ids)), 'sensor ids must be unique'


def test_carla_cameras_share_pose_fov_size_and_tick() -> None:
    """Colour and depth cameras coincide, so depth pixel (u, v) is colour pixel (u, v)."""
    _, rgb, depth = _carla_cameras()
    pose_keys = ('x', 'y', 'z', 'roll', 'pitch', 'yaw')
    assert set(rgb['spawn_point']) == set(pose_keys)
    assert rgb['spawn_point'] == depth['spawn_point']
    assert (rgb['image_size_x'], rgb['image_size_y']) == (640, 480)
    assert (depth['image_size_x'], depth['image_size_y']) == (640, 480)
    assert float(rgb['fov']) == float(depth['fov'])
    assert rgb.get('sensor_tick') == depth.get('sensor_tick')


# --- config/fastdds_large_frames.xml -------------------------------------------------------------

def test_fastdds_profile_is_default_and_has_a_large_shared_memory_segment() -> None:
    """The default participant uses an SHM transport of at least 16 MB (whole 640x480 frames)."""
    root = ElementTree.parse(CONFIG / 'fastdds_large_frames.xml').getroot()
    transports = {}
    for descriptor in root.iter(FASTDDS_NS + 'transport_descriptor'):
        transports[descriptor.findtext(FASTDDS_NS + 'transport_id')] = descriptor
    shm = [tid for tid, d in transports.items() if d.findtext(FASTDDS_NS + 'type') == 'SHM']
    assert shm, 'no SHM transport descriptor'
    for tid in shm:
        size = int(transports[tid].findtext(FASTDDS_NS + 'segment_size'))
        assert size >= MIN_SHM_SEGMENT_BYTES, '%s segment is %d bytes' % (tid, size)
    defaults = [p for p in root.iter(FASTDDS_NS + 'participant')
                if p.get('is_default_profile') == 'true']
    assert len(defaults) == 1, 'exactly one default participant profile'
    used = [e.text for e in defaults[0].iter(FASTDDS_NS + 'transport_id')]
    assert any(tid in used for tid in shm), 'the default participant does not use SHM'


if __name__ == '__main__':
    ANONYMIZER_YAML.write_text(render_anonymizer_yaml(), encoding='utf-8')
    sys.stdout.write('wrote %s (%d parameters)\n' % (ANONYMIZER_YAML, len(params.PARAMETERS)))
