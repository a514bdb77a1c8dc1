"""
Check the launch files as Python source, and as launch descriptions when ``launch_ros`` exists.

``launch`` and ``launch_ros`` are not on PyPI, so most checks read each ``launch/*.launch.py``
with :mod:`ast`: every launch argument is documented, the executables are console scripts of
this package, the config files they name exist and are installed, and they include exactly the
launch files of the packages the README names. On a ROS machine (``launch_ros`` importable) the
descriptions are also built and their actions checked.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib.util
import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import tempfile
from types import ModuleType
from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Tuple

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
LAUNCH_DIR = REPO / 'launch'
CONFIG_DIR = REPO / 'config'
PACKAGE = 'av_privacy_ros'
FASTDDS_ENV = 'FASTDDS_DEFAULT_PROFILES_FILE'
LAUNCH_MISSING = (
    'launch and launch_ros are not on PyPI: on a ROS 2 machine source the ROS setup; elsewhere '
    'install the wheels built from the Humble branches: pip install --no-deps <dir>/*.whl lark '
    'osrf-pycommon (make venv does it when ../shared/ros_wheels/ exists)')

EXPECTED_INCLUDES: Dict[str, Set[Tuple[str, str]]] = {
    'anonymizer.launch.py': set(),
    'realsense_jetson.launch.py': {
        (PACKAGE, 'anonymizer.launch.py'), ('realsense2_camera', 'rs_launch.py')},
    'carla_bridge.launch.py': {
        (PACKAGE, 'anonymizer.launch.py'),
        ('carla_ros_bridge', 'carla_ros_bridge.launch.py'),
        ('carla_spawn_objects', 'carla_example_ego_vehicle.launch.py')},
    'bag_replay.launch.py': {(PACKAGE, 'anonymizer.launch.py')},
}
"""Launch file -> (package, launch file) pairs it includes, as the README describes."""

ANONYMIZER_ARGUMENTS = {'params_file', 'namespace', 'image_topic', 'depth_topic', 'use_depth',
                        'use_sim_time', 'log_level'}
NODE_TOPICS = {'image', 'depth', 'image_anonymized', 'depth_anonymized', 'mask'}

LAUNCH_FILES = sorted(LAUNCH_DIR.glob('*.launch.py'))


# --- reading Python source ----------------------------------------------------------------------

class LaunchSource:
    """One launch file parsed with ast, with small helpers to read its calls and constants."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.name
        self.text = path.read_text(encoding='utf-8')
        self.tree = ast.parse(self.text, filename=str(path))
        self.constants: Dict[str, ast.AST] = {}
        self.locals: Dict[str, ast.AST] = {}
        for node in self.tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(
                    node.targets[0], ast.Name):
                self.constants[node.targets[0].id] = node.value
            if isinstance(node, ast.FunctionDef) and node.name == 'generate_launch_description':
                for statement in ast.walk(node):
                    if isinstance(statement, ast.Assign) and isinstance(
                            statement.targets[0], ast.Name):
                        self.locals[statement.targets[0].id] = statement.value

    def calls(self, name: str, within: Optional[ast.AST] = None) -> List[ast.Call]:
        """Return every call of a function or class called ``name`` (plain or dotted)."""
        found = []
        for node in ast.walk(within or self.tree):
            if isinstance(node, ast.Call) and _func_name(node) == name:
                found.append(node)
        return found

    def static(self, node: Optional[ast.AST]) -> Any:
        """Return the value of a constant expression (literals, module constants, str +)."""
        if node is None:
            return None
        if isinstance(node, ast.Name) and node.id in self.constants:
            return self.static(self.constants[node.id])
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left, right = self.static(node.left), self.static(node.right)
            if isinstance(left, str) and isinstance(right, str):
                return left + right
            return None
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [self.static(item) for item in node.elts]
            return None if any(item is None for item in items) else items
        try:
            return ast.literal_eval(node)
        except ValueError:
            return None

    def arguments(self) -> Dict[str, ast.Call]:
        """Return the DeclareLaunchArgument calls by argument name."""
        declared = {}
        for call in self.calls('DeclareLaunchArgument'):
            name = self.static(call.args[0]) if call.args else self.static(_kw(call, 'name'))
            assert isinstance(name, str), '%s: a launch argument without a constant name' % (
                self.name)
            assert name not in declared, '%s declares %s twice' % (self.name, name)
            declared[name] = call
        return declared

    def default(self, argument: str, overrides: Optional[Dict[str, str]] = None) -> Any:
        """Evaluate the default of a launch argument (None when it has none)."""
        call = self.arguments()[argument]
        return self.evaluate(_kw(call, 'default_value'), overrides or {})

    def evaluate(self, node: Optional[ast.AST], overrides: Dict[str, str]) -> Any:
        """
        Evaluate a substitution expression the way launch would, without launch.

        Supports string constants, lists (concatenated), LaunchConfiguration (the given
        override or the argument's default), PathJoinSubstitution (os.path.join) and
        FindPackageShare (``<share:package>``).
        """
        if node is None:
            return None
        if isinstance(node, ast.Name) and node.id in self.locals:
            return self.evaluate(self.locals[node.id], overrides)
        if isinstance(node, ast.BoolOp):  # e.g. os.environ.get(...) or <default>
            return self.evaluate(node.values[-1], overrides)
        if isinstance(node, ast.Call):
            name = _func_name(node)
            if name == 'LaunchConfiguration':
                key = self.static(node.args[0])
                if key in overrides:
                    return overrides[key]
                return self.default(key, overrides)
            if name == 'PathJoinSubstitution':
                parts = [self.evaluate(item, overrides) for item in node.args[0].elts]
                return os.path.join(*parts)
            if name == 'FindPackageShare':
                return '<share:%s>' % self.static(node.args[0])
            raise AssertionError('%s: cannot evaluate %s' % (self.name, ast.dump(node)))
        if isinstance(node, ast.List):
            return ''.join(self.evaluate(item, overrides) for item in node.elts)
        value = self.static(node)
        assert value is not None, '%s: cannot evaluate %s' % (self.name, ast.dump(node))
        return value

    def includes(self) -> List[Tuple[Tuple[str, str], ast.Call]]:
        """Return ((package, launch file), call) for every IncludeLaunchDescription."""
        found = []
        for call in self.calls('IncludeLaunchDescription'):
            packages = [self.static(c.args[0])
                        for c in self.calls('FindPackageShare', call.args[0])]
            files = [c.value for c in ast.walk(call.args[0]) if isinstance(c, ast.Constant)
                     and isinstance(c.value, str) and c.value.endswith('.py')]
            assert len(packages) == 1 and len(files) == 1, (
                '%s: include at line %d must name one package (FindPackageShare) and one launch '
                'file' % (self.name, call.lineno))
            found.append(((packages[0], files[0]), call))
        return found

    def include_arguments(self, call: ast.Call) -> Dict[str, ast.AST]:
        """Return the launch_arguments={...}.items() of an include, by name."""
        value = _kw(call, 'launch_arguments')
        assert (isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute)
                and isinstance(value.func.value, ast.Dict)), (
            '%s: launch_arguments must be {...}.items()' % self.name)
        mapping = value.func.value
        return {self.static(k): v for k, v in zip(mapping.keys, mapping.values)}


def _func_name(call: ast.Call) -> Optional[str]:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def _kw(call: ast.Call, name: str) -> Optional[ast.AST]:
    for keyword in call.keywords:
        if keyword.arg == name:
            return keyword.value
    return None


def _source(name: str) -> LaunchSource:
    return LaunchSource(LAUNCH_DIR / name)


def _setup_tree() -> ast.AST:
    return ast.parse((REPO / 'setup.py').read_text(encoding='utf-8'))


def console_scripts() -> Set[str]:
    """Return the console script names setup.py installs."""
    for node in ast.walk(_setup_tree()):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == 'console_scripts':
                    return {entry.split('=')[0].strip() for entry in ast.literal_eval(value)}
    raise AssertionError('setup.py has no console_scripts')


def installed_globs() -> List[str]:
    """Return the glob patterns of setup.py's data_files."""
    return [ast.literal_eval(node.args[0]) for node in ast.walk(_setup_tree())
            if isinstance(node, ast.Call) and _func_name(node) == 'glob']


def _is_installed(relative: str) -> bool:
    return any(fnmatch.fnmatch(relative, pattern) for pattern in installed_globs())


def _launch_ids(paths: List[Path]) -> Iterator[str]:
    return (path.name for path in paths)


# --- structural tests (no ROS needed) ------------------------------------------------------------

def test_the_documented_launch_files_exist_and_are_installed() -> None:
    """Each launch file the README names is present and installed by setup.py."""
    names = {path.name for path in LAUNCH_FILES}
    assert set(EXPECTED_INCLUDES) <= names
    for name in names:
        assert _is_installed('launch/' + name), '%s is not installed by setup.py' % name


@pytest.mark.parametrize('path', LAUNCH_FILES, ids=list(_launch_ids(LAUNCH_FILES)))
def test_every_launch_argument_has_a_description(path: Path) -> None:
    """ros2 launch --show-args explains every argument in a sentence."""
    source = LaunchSource(path)
    declared = source.arguments()
    assert declared, '%s declares no launch argument' % path.name
    for name, call in declared.items():
        description = source.static(_kw(call, 'description'))
        assert isinstance(description, str) and len(description) >= 15, (
            '%s: launch argument %s has no description' % (path.name, name))
        assert description.rstrip().endswith('.'), (
            '%s: the description of %s is not a sentence' % (path.name, name))


@pytest.mark.parametrize('path', LAUNCH_FILES, ids=list(_launch_ids(LAUNCH_FILES)))
def test_argument_defaults_are_among_their_choices(path: Path) -> None:
    """A launch argument with choices defaults to one of them."""
    source = LaunchSource(path)
    for name, call in source.arguments().items():
        choices = source.static(_kw(call, 'choices'))
        if choices is None:
            continue
        assert source.default(name) in choices, (path.name, name)


@pytest.mark.parametrize('path', LAUNCH_FILES, ids=list(_launch_ids(LAUNCH_FILES)))
def test_every_launch_configuration_is_declared(path: Path) -> None:
    """A LaunchConfiguration with a misspelt name would silently resolve to nothing."""
    source = LaunchSource(path)
    declared = set(source.arguments())
    for call in source.calls('LaunchConfiguration'):
        name = source.static(call.args[0])
        if name is not None:
            assert name in declared, '%s: LaunchConfiguration(%r) at line %d is not declared' % (
                path.name, name, call.lineno)


@pytest.mark.parametrize('path', LAUNCH_FILES, ids=list(_launch_ids(LAUNCH_FILES)))
def test_nodes_run_console_scripts_of_this_package(path: Path) -> None:
    """Every Node runs an executable that setup.py installs; only the generic file starts it."""
    source = LaunchSource(path)
    scripts = console_scripts()
    for call in source.calls('Node'):
        assert source.static(_kw(call, 'package')) == PACKAGE
        executable = source.static(_kw(call, 'executable'))
        assert executable in scripts, '%s: %s is not a console script' % (path.name, executable)
    if path.name != 'anonymizer.launch.py':
        assert not source.calls('Node'), (
            '%s starts a node itself instead of including anonymizer.launch.py' % path.name)


@pytest.mark.parametrize('path', LAUNCH_FILES, ids=list(_launch_ids(LAUNCH_FILES)))
def test_referenced_config_files_exist_and_are_installed(path: Path) -> None:
    """Every config file a launch file names is in config/ and installed by setup.py."""
    source = LaunchSource(path)
    referenced = set()
    for call in source.calls('PathJoinSubstitution'):
        parts = [source.static(item) for item in call.args[0].elts]
        if 'config' in parts:
            referenced.add(parts[parts.index('config') + 1])
    assert referenced, '%s names no config file' % path.name
    for name in referenced:
        assert (CONFIG_DIR / name).is_file(), '%s: config/%s does not exist' % (path.name, name)
        assert _is_installed('config/' + name), 'config/%s is not installed' % name


@pytest.mark.parametrize('name', sorted(EXPECTED_INCLUDES))
def test_includes_are_the_documented_launch_files(name: str) -> None:
    """Each launch file includes exactly the packages and launch files the README names."""
    source = _source(name)
    assert {pair for pair, _ in source.includes()} == EXPECTED_INCLUDES[name]


@pytest.mark.parametrize('name', sorted(set(EXPECTED_INCLUDES) - {'anonymizer.launch.py'}))
def test_arguments_given_to_the_generic_launch_file_exist_there(name: str) -> None:
    """A misspelt argument passed to anonymizer.launch.py would be ignored without a word."""
    generic = set(_source('anonymizer.launch.py').arguments())
    source = _source(name)
    own = [call for pair, call in source.includes() if pair == (PACKAGE, 'anonymizer.launch.py')]
    assert len(own) == 1
    passed = source.include_arguments(own[0])
    assert set(passed) <= generic, set(passed) - generic
    assert {'params_file', 'image_topic', 'depth_topic', 'use_sim_time'} <= set(passed)


def test_generic_launch_file_arguments_node_and_remappings() -> None:
    """anonymizer.launch.py has the documented arguments and remaps every topic of the node."""
    source = _source('anonymizer.launch.py')
    declared = source.arguments()
    assert ANONYMIZER_ARGUMENTS <= set(declared)
    assert source.default('params_file') == os.path.join(
        '<share:%s>' % PACKAGE, 'config', 'anonymizer.yaml')
    assert source.static(_kw(declared['log_level'], 'choices')) == [
        'debug', 'info', 'warn', 'error', 'fatal']
    for flag in ('use_depth', 'use_sim_time'):
        assert source.static(_kw(declared[flag], 'choices')) == ['true', 'false']
    nodes = source.calls('Node')
    assert len(nodes) == 1
    node = nodes[0]
    assert source.static(_kw(node, 'name')) == 'anonymizer'
    assert source.static(_kw(node, 'executable')) == 'anonymizer_node'
    remaps = _kw(node, 'remappings')
    assert isinstance(remaps, ast.List)
    remapped = {source.static(pair.elts[0]): pair.elts[1] for pair in remaps.elts}
    assert set(remapped) == NODE_TOPICS
    assert source.evaluate(remapped['image'], {'image_topic': '/cam/rgb'}) == '/cam/rgb'
    assert source.evaluate(remapped['depth'], {'depth_topic': '/cam/d'}) == '/cam/d'


def test_generic_launch_file_exports_the_large_frame_profile_unless_set() -> None:
    """FASTDDS_DEFAULT_PROFILES_FILE is the package profile, or kept when the user set it."""
    source = _source('anonymizer.launch.py')
    setters = source.calls('SetEnvironmentVariable')
    assert len(setters) == 1
    assert source.static(setters[0].args[0]) == FASTDDS_ENV
    value = setters[0].args[1]
    assert source.evaluate(value, {}) == os.path.join(
        '<share:%s>' % PACKAGE, 'config', 'fastdds_large_frames.xml')
    # The default honours a profile the user already exported.
    reads = [call for call in source.calls('get') if isinstance(call.func, ast.Attribute)
             and isinstance(call.func.value, ast.Attribute) and call.func.value.attr == 'environ']
    assert reads and source.static(reads[0].args[0]) == FASTDDS_ENV
    # It is set before the node starts.
    body = source.text
    assert body.index('SetEnvironmentVariable(FASTDDS') < body.index('        node,\n')


def test_realsense_launch_file_starts_the_driver_as_documented() -> None:
    """Aligned, synchronized 640x480x30 streams under both profile spellings; optional driver."""
    source = _source('realsense_jetson.launch.py')
    (driver,) = [call for pair, call in source.includes() if pair[0] == 'realsense2_camera']
    passed = source.include_arguments(driver)
    values = {name: source.evaluate(node, {}) for name, node in passed.items()}
    assert values['align_depth.enable'] == 'true'
    assert values['enable_sync'] == 'true'
    for name in ('rgb_camera.color_profile', 'depth_module.depth_profile',  # 4.55 and newer
                 'rgb_camera.profile', 'depth_module.profile'):  # 4.54 and older
        assert values[name] == '640,480,30', name
    assert values['camera_namespace'] == 'camera' and values['camera_name'] == 'camera'
    condition = _kw(driver, 'condition')
    assert isinstance(condition, ast.Call) and _func_name(condition) == 'IfCondition'
    assert source.evaluate(condition.args[0], {}) == 'true'
    assert source.evaluate(condition.args[0], {'launch_camera': 'false'}) == 'false'
    assert source.static(_kw(source.arguments()['launch_camera'], 'choices')) == ['true', 'false']


def test_realsense_topics_follow_namespace_and_name() -> None:
    """The anonymizer reads the driver's colour and aligned depth topics, for any driver naming."""
    source = _source('realsense_jetson.launch.py')
    assert source.default('image_topic') == '/camera/camera/color/image_raw'
    assert source.default('depth_topic') == '/camera/camera/aligned_depth_to_color/image_raw'
    old_driver = {'camera_namespace': ''}  # realsense-ros up to 4.54: /<camera_name>/...
    assert source.default('image_topic', old_driver) == '/camera/color/image_raw'
    assert source.default('depth_topic', {'camera_namespace': 'front', 'camera_name': 'd435'}) == (
        '/front/d435/aligned_depth_to_color/image_raw')
    assert source.default('params_file').endswith('realsense_jetson.yaml')
    # The outputs (relative names of the node) appear in the camera's namespace.
    assert source.default('namespace') == '/camera/camera'
    assert source.default('namespace', {'camera_namespace': ''}) == '/camera'
    assert source.default('namespace', {'camera_namespace': 'rig', 'camera_name': 'd435'}) == (
        '/rig/d435')
    (own,) = [call for pair, call in source.includes() if pair[0] == PACKAGE]
    assert source.evaluate(source.include_arguments(own)['use_sim_time'], {}) == 'false'


def test_carla_launch_file_topics_objects_and_sim_time() -> None:
    """CARLA: role-name topics, the paired-camera objects file, sim time, optional bridge."""
    source = _source('carla_bridge.launch.py')
    assert source.default('role_name') == 'ego_vehicle'
    assert source.default('image_topic') == '/carla/ego_vehicle/rgb_front/image'
    assert source.default('depth_topic', {'role_name': 'hero'}) == '/carla/hero/depth_front/image'
    assert source.default('objects_definition_file').endswith('carla_objects.json')
    assert source.default('params_file').endswith('carla.yaml')
    assert source.default('namespace') == '/carla/ego_vehicle'
    assert source.default('namespace', {'role_name': 'hero'}) == '/carla/hero'
    includes = dict(source.includes())
    own = source.include_arguments(includes[(PACKAGE, 'anonymizer.launch.py')])
    assert source.evaluate(own['use_sim_time'], {}) == 'true'
    bridge = includes[('carla_ros_bridge', 'carla_ros_bridge.launch.py')]
    assert _func_name(_kw(bridge, 'condition')) == 'IfCondition'
    spawn = source.include_arguments(
        includes[('carla_spawn_objects', 'carla_example_ego_vehicle.launch.py')])
    assert {'objects_definition_file', 'role_name'} <= set(spawn)
    opaque = source.calls('OpaqueFunction')
    assert len(opaque) == 1 and _func_name(_kw(opaque[0], 'condition')) == 'IfCondition'
    # The vehicle id in the objects file is the default role name.
    objects = json.loads((CONFIG_DIR / 'carla_objects.json').read_text(encoding='utf-8'))
    ids = [obj['id'] for obj in objects['objects'] if obj['type'].startswith('vehicle.')]
    assert ids == [source.default('role_name')]
    # One camera frame per simulation tick.
    (vehicle,) = [obj for obj in objects['objects'] if obj['type'].startswith('vehicle.')]
    ticks = {sensor.get('sensor_tick') for sensor in vehicle['sensors']
             if sensor['id'] in ('rgb_front', 'depth_front')}
    assert ticks == {float(source.default('fixed_delta_seconds'))}


def _module_function(source: LaunchSource, name: str) -> Callable[..., Any]:
    """Compile one module-level function of a launch file on its own (it needs no launch)."""
    (function,) = [node for node in source.tree.body
                   if isinstance(node, ast.FunctionDef) and node.name == name]
    module = ast.Module(body=[function], type_ignores=[])
    namespace: Dict[str, Any] = {'json': json, 'os': os, 'tempfile': tempfile,
                                 'Any': Any, 'Dict': Dict, 'List': List}
    exec(compile(module, str(source.path), 'exec'), namespace)
    return namespace[name]


def test_carla_objects_file_follows_role_name_and_spawn_point(tmp_path: Path) -> None:
    """A custom role_name or spawn_point gets a copy of the objects file; the default does not."""
    objects_file_for = _module_function(_source('carla_bridge.launch.py'), 'objects_file_for')
    shipped = str(CONFIG_DIR / 'carla_objects.json')
    assert objects_file_for(shipped, 'ego_vehicle', '') == shipped

    copy = objects_file_for(shipped, 'hero', '10,-2.5,0.5,0,0,90')
    try:
        document = json.loads(Path(copy).read_text(encoding='utf-8'))
    finally:
        os.remove(copy)
    (vehicle,) = [obj for obj in document['objects'] if obj['type'].startswith('vehicle.')]
    assert vehicle['id'] == 'hero'
    assert vehicle['spawn_point'] == {'x': 10.0, 'y': -2.5, 'z': 0.5, 'roll': 0.0,
                                      'pitch': 0.0, 'yaw': 90.0}
    assert [s['id'] for s in vehicle['sensors']][:2] == ['rgb_front', 'depth_front']

    with pytest.raises(RuntimeError, match='six numbers'):
        objects_file_for(shipped, 'ego_vehicle', '1,2,3')
    two = tmp_path / 'two.json'
    two.write_text(json.dumps({'objects': [{'type': 'vehicle.a', 'id': 'a'},
                                           {'type': 'vehicle.b', 'id': 'b'}]}))
    with pytest.raises(RuntimeError, match='exactly one vehicle'):
        objects_file_for(str(two), 'a', '')
    with pytest.raises(RuntimeError, match='Cannot read'):
        objects_file_for(str(tmp_path / 'missing.json'), 'a', '')


def test_bag_replay_records_anonymized_outputs_only() -> None:
    """record:=true writes the anonymized image, depth and mask, never an input topic."""
    source = _source('bag_replay.launch.py')
    declared = source.arguments()
    assert {'bag', 'rate', 'loop', 'record', 'output_bag'} <= set(declared)
    assert _kw(declared['bag'], 'default_value') is None, 'bag is a required argument'
    for flag in ('loop', 'record'):
        assert source.default(flag) == 'false'
    recorded = source.static(source.constants['RECORDED_TOPIC_ARGUMENTS'])
    assert set(recorded) == {'image_anonymized_topic', 'depth_anonymized_topic', 'mask_topic'}
    inputs = {source.default('image_topic'), source.default('depth_topic')}
    for argument in recorded:
        assert argument in declared
        assert source.default(argument) not in inputs
    (own,) = [call for pair, call in source.includes() if pair[0] == PACKAGE]
    passed = source.include_arguments(own)
    assert source.evaluate(passed['use_sim_time'], {}) == 'true'
    for argument in recorded:  # the node publishes where the recorder listens
        assert source.evaluate(passed[argument], {}) == source.default(argument)
    commands = [node for node in ast.walk(source.tree) if isinstance(node, ast.List)
                and [source.static(e) for e in node.elts[:3]] in (
                    ['ros2', 'bag', 'play'], ['ros2', 'bag', 'record'])]
    texts = [[source.static(e) for e in node.elts] for node in commands]
    assert any(t[2] == 'play' and '--clock' in t for t in texts)
    assert any(t[2] == 'record' and '--use-sim-time' in t for t in texts)


# --- launch descriptions (needs launch and launch_ros: a ROS machine) ---------------------------

def _launch_module(name: str) -> ModuleType:
    require_launch()
    path = LAUNCH_DIR / name
    spec = importlib.util.spec_from_file_location(name.replace('.', '_'), str(path))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_carla_objects_copy_is_deleted_when_launch_shuts_down() -> None:
    """The objects file copied for a custom role name does not outlive the launch."""
    module = _launch_module('carla_bridge.launch.py')
    from launch import LaunchContext, LaunchDescription, LaunchService
    from launch.actions import EmitEvent, IncludeLaunchDescription, RegisterEventHandler
    from launch.events import Shutdown
    context = LaunchContext()
    shipped = str(CONFIG_DIR / 'carla_objects.json')
    context.launch_configurations.update(
        {'objects_definition_file': shipped, 'role_name': 'hero', 'spawn_point': ''})
    actions = module.spawn_ego_vehicle(context)
    (include,) = [a for a in actions if isinstance(a, IncludeLaunchDescription)]
    copy = dict(include.launch_arguments)['objects_definition_file']
    copy_path = copy if isinstance(copy, str) else copy[0].perform(context)
    assert copy_path != shipped and os.path.isfile(copy_path)
    handlers = [a for a in actions if isinstance(a, RegisterEventHandler)]
    assert len(handlers) == 1
    try:
        service = LaunchService()
        service.include_launch_description(
            LaunchDescription(handlers + [EmitEvent(event=Shutdown(reason='test'))]))
        assert service.run() == 0
        assert not os.path.exists(copy_path)
        assert os.path.isfile(shipped)
    finally:
        if os.path.exists(copy_path):
            os.remove(copy_path)

    # The shipped file is used as it is and never deleted.
    context.launch_configurations['role_name'] = 'ego_vehicle'
    assert not [a for a in module.spawn_ego_vehicle(context)
                if isinstance(a, RegisterEventHandler)]


@pytest.mark.parametrize('name', sorted(EXPECTED_INCLUDES))
def test_launch_descriptions_build_with_documented_arguments(name: str) -> None:
    """generate_launch_description() builds and declares the arguments the source declares."""
    module = _launch_module(name)
    from launch.actions import DeclareLaunchArgument
    description = module.generate_launch_description()
    declared = {entity.name: entity for entity in description.entities
                if isinstance(entity, DeclareLaunchArgument)}
    assert set(declared) == set(_source(name).arguments())
    for argument in declared.values():
        assert argument.description and argument.description != 'no description given'


def test_generic_launch_description_actions() -> None:
    """The generic description sets the Fast DDS profile before it starts the anonymizer node."""
    module = _launch_module('anonymizer.launch.py')
    from launch.actions import SetEnvironmentVariable
    from launch_ros.actions import Node
    entities = module.generate_launch_description().entities
    kinds = [type(entity) for entity in entities]
    assert SetEnvironmentVariable in kinds and Node in kinds
    assert kinds.index(SetEnvironmentVariable) < kinds.index(Node)


def test_bag_replay_processes(tmp_path: Path) -> None:
    """The replay function builds a recorder of the anonymized topics and a delayed player."""
    module = _launch_module('bag_replay.launch.py')
    from launch import LaunchContext
    from launch.actions import ExecuteProcess, TimerAction
    bag = tmp_path / 'drive'
    bag.mkdir()
    context = LaunchContext()
    context.launch_configurations.update({
        'bag': str(bag), 'rate': '0.5', 'loop': 'true', 'start_delay': '1.0', 'record': 'true',
        'output_bag': '', 'use_depth': 'false',
        'image_anonymized_topic': '/anon/image', 'depth_anonymized_topic': '/anon/depth',
        'mask_topic': '/anon/mask'})
    actions = module.replay_and_record(context)

    def command(process: Any) -> List[str]:
        return [''.join(s.perform(context) for s in part) for part in process.cmd]

    (recorder,) = [a for a in actions if isinstance(a, ExecuteProcess)]
    assert command(recorder) == ['ros2', 'bag', 'record', '--use-sim-time', '-o',
                                 str(bag) + '_anonymized', '/anon/image', '/anon/mask']
    (timer,) = [a for a in actions if isinstance(a, TimerAction)]
    ((_, (player,)),) = timer.describe_conditional_sub_entities()
    assert command(player) == ['ros2', 'bag', 'play', str(bag), '--rate', '0.5', '--clock',
                               '--loop']
    context.launch_configurations['bag'] = str(tmp_path / 'missing')
    with pytest.raises(RuntimeError, match='not an existing rosbag2'):
        module.replay_and_record(context)


# --- launch files run for real (launch.LaunchService after a colcon build) ----------------------
#
# Each test starts test/launch_runner.py (what `ros2 launch` does, with launch.LaunchService) on
# the package installed by colcon into a scratch workspace; the camera drivers and the CARLA
# bridge are the fake packages of test/fixtures/fake_packages (an install prefix on
# AMENT_PREFIX_PATH), which record the launch arguments they got and publish av_privacy_ros'
# sample frames where the real ones would. A listener in this process checks what comes out.

FIXTURES = Path(__file__).resolve().parent / 'fixtures'
FAKE_PACKAGES = FIXTURES / 'fake_packages'
FAKE_BIN = FIXTURES / 'fake_bin'
RUNNER = Path(__file__).resolve().parent / 'launch_runner.py'
TOKEN_ENV = 'AV_PRIVACY_LAUNCH_TEST_TOKEN'
FRAMES_EXPECTED = 10
"""Anonymized frames each run must deliver (a count, not a share of the published frames)."""
HANG_GUARD_S = 180.0
"""Longest wait for those frames: a guard against a hung launch, not a speed bound."""
SAMPLE_PERIOD = 72
"""The sample camera's frames repeat after 72 (shifts of periods 24 and 36 frames)."""
MIN_FACE_CHANGE = 0.6
"""Share of each face's core pixels that must differ from every sample frame's."""


def require_launch() -> None:
    """Skip, saying how to get them, when launch or launch_ros cannot be imported."""
    try:
        import launch  # noqa: F401
        import launch_ros  # noqa: F401
    except ImportError as exc:
        pytest.skip('%s (%s)' % (LAUNCH_MISSING, exc))


def processes_with_token(token: str) -> List[int]:
    """Return the pids of the live processes started by one launch test (by their environment)."""
    marker = ('%s=%s' % (TOKEN_ENV, token)).encode()
    found = []
    for entry in Path('/proc').iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / 'environ').read_bytes()
            state = (entry / 'stat').read_text().rsplit(')', 1)[1].split()[0]
        except OSError:
            continue
        if marker in environ.split(b'\0') and state != 'Z':
            found.append(int(entry.name))
    return found


class LaunchRun:
    """``ros2 launch PACKAGE FILE args`` in a process of its own, plus helper processes."""

    def __init__(self, install: Path, tmp_path: Path, file_name: str,
                 arguments: Dict[str, str], path_prepend: Optional[Path] = None) -> None:
        """Start the launch file with the scratch install and the fake packages on the path."""
        import uuid
        from anonymizer_harness import subprocess_env
        self.token = uuid.uuid4().hex
        self.record_dir = tmp_path / 'recorded'
        self.record_dir.mkdir(exist_ok=True)
        env = subprocess_env()
        site = sorted((install / 'lib').glob('python3*/site-packages'))
        env.update({
            TOKEN_ENV: self.token,
            'FAKE_LAUNCH_RECORD_DIR': str(self.record_dir),
            'FAKE_ROS2_PYTHON': sys.executable,
            'ROS_LOG_DIR': str(tmp_path / 'ros_log'),
            'AMENT_PREFIX_PATH': os.pathsep.join(
                [str(install), str(FAKE_PACKAGES)]
                + [p for p in env.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p]),
            'PYTHONPATH': os.pathsep.join(
                [str(p) for p in site]
                + [p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p]),
        })
        if path_prepend is not None:
            env['PATH'] = str(path_prepend) + os.pathsep + env.get('PATH', '')
        self.env = env
        self.install = install
        self.log_path = tmp_path / ('%s.log' % file_name)
        self._log = open(self.log_path, 'wb')
        self.helpers: List[subprocess.Popen] = []
        command = [sys.executable, str(RUNNER), PACKAGE, file_name]
        command += ['%s:=%s' % item for item in arguments.items()]
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT,
                                        env=env, start_new_session=True)

    def start_helper(self, executable: str, args: List[str]) -> None:
        """Start one of the package's installed executables (as ros2 run does), logged."""
        command = [str(self.install / 'lib' / PACKAGE / executable)] + args
        self.helpers.append(subprocess.Popen(command, stdout=self._log,
                                             stderr=subprocess.STDOUT, env=self.env,
                                             start_new_session=True))

    def log(self) -> str:
        """Return what the launched processes printed so far."""
        self._log.flush()
        return self.log_path.read_text(encoding='utf-8', errors='replace')

    def recorded(self, name: str) -> Any:
        """Return the JSON a fake package wrote about the arguments it got."""
        path = self.record_dir / name
        assert path.is_file(), '%s was not written; launch log:\n%s' % (name, self.log()[-3000:])
        return json.loads(path.read_text(encoding='utf-8'))

    def stop(self) -> List[int]:
        """Stop everything with Ctrl-C (SIGINT) as a user would; return processes left behind."""
        # A terminal's Ctrl-C reaches the whole foreground process group, and launch relies on
        # that: it does not forward SIGINT to its processes, only escalates to SIGTERM after 5 s.
        for process in self.helpers + [self.process]:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGINT)
                except OSError:
                    pass
        for process in self.helpers + [self.process]:
            try:
                process.wait(30.0)
            except subprocess.TimeoutExpired:
                pass
        from anonymizer_harness import wait_until
        wait_until(lambda: not processes_with_token(self.token), 15.0, 0.1)
        left = processes_with_token(self.token)
        for pid in left:  # leave nothing running, then report it
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self._log.close()
        return left


@pytest.fixture
def launch_run(colcon_install: Path, tmp_path: Path) -> Iterator[Callable[..., LaunchRun]]:
    """Start launch files; at the end stop them and check that no process was left behind."""
    require_launch()
    runs: List[LaunchRun] = []

    def start(file_name: str, arguments: Dict[str, str],
              path_prepend: Optional[Path] = None) -> LaunchRun:
        runs.append(LaunchRun(colcon_install, tmp_path, file_name, arguments, path_prepend))
        return runs[-1]

    yield start
    for run in runs:
        left = run.stop()
        assert not left, 'processes left running after Ctrl-C: %s\n%s' % (left, run.log()[-3000:])


class SampleFaces:
    """Every frame the sample camera can send, with its face boxes, to find raw faces."""

    def __init__(self) -> None:
        """Build the 72 distinct frames once."""
        from av_privacy_ros.sample_camera import SampleFrames
        frames = SampleFrames()
        self.cores: List[List[Tuple[slice, slice, np.ndarray]]] = []
        for index in range(SAMPLE_PERIOD):
            bgr, _ = frames.frame(index)
            cores = []
            for x1, y1, x2, y2 in frames.boxes(index):
                w, h = x2 - x1, y2 - y1
                rows = slice(int(y1 + h / 4), int(y2 - h / 4))
                cols = slice(int(x1 + w / 4), int(x2 - w / 4))
                cores.append((rows, cols, bgr[rows, cols]))
            self.cores.append(cores)

    def least_changed(self, output_bgr: np.ndarray) -> float:
        """Return the smallest share of changed face-core pixels over all frames and faces."""
        least = 1.0
        for cores in self.cores:
            for rows, cols, original in cores:
                changed = np.any(output_bgr[rows, cols] != original, axis=2)
                least = min(least, float(changed.mean()))
        return least


class LaunchListener:
    """A node in the test process that watches the inputs and outputs of a launched anonymizer."""

    def __init__(self, image_topic: str, output_namespace: str, clock: bool = False) -> None:
        """Subscribe to the colour input, the three outputs, /diagnostics and maybe /clock."""
        import threading

        from anonymizer_harness import DOMAIN_ID
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from diagnostic_msgs.msg import DiagnosticArray
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import Image

        self.faces = SampleFaces()
        self.lock = threading.Lock()
        self.input_headers: Dict[Tuple[int, int], str] = {}
        self.outputs: Dict[str, Dict[Tuple[int, int], Any]] = {
            'image_anonymized': {}, 'depth_anonymized': {}, 'mask': {}}
        self.least_changed: Dict[Tuple[int, int], float] = {}
        self.output_frame_ids: Dict[Tuple[int, int], str] = {}
        self.clock_stamps: List[float] = []
        self.diagnostic_stamps: List[float] = []
        self.context = Context()
        rclpy.init(context=self.context, domain_id=DOMAIN_ID)
        self.node = Node('launch_test_listener', context=self.context)
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.namespace = output_namespace.rstrip('/')
        subs = [self.node.create_subscription(Image, image_topic, self._on_input, reliable)]
        for name in self.outputs:
            subs.append(self.node.create_subscription(
                Image, self.namespace + '/' + name,
                lambda msg, name=name: self._on_output(name, msg), reliable))
        subs.append(self.node.create_subscription(DiagnosticArray, '/diagnostics',
                                                  self._on_diagnostics, reliable))
        if clock:
            subs.append(self.node.create_subscription(Clock, '/clock', self._on_clock, reliable))
        self._subs = subs
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            while self.context.ok():
                self.executor.spin_once(timeout_sec=0.05)
        except Exception:  # noqa: BLE001 - the context was shut down while spinning
            pass

    def _on_input(self, msg: Any) -> None:
        with self.lock:
            self.input_headers[_stamp(msg.header.stamp)] = msg.header.frame_id

    def _on_output(self, name: str, msg: Any) -> None:
        stamp = _stamp(msg.header.stamp)
        if name == 'image_anonymized':
            from av_privacy_ros.image_msgs import image_to_bgr
            bgr, _ = image_to_bgr(msg)
            least = self.faces.least_changed(bgr)
            with self.lock:
                self.least_changed[stamp] = least
                self.output_frame_ids[stamp] = msg.header.frame_id
        with self.lock:
            self.outputs[name][stamp] = msg.header.frame_id

    def _on_diagnostics(self, msg: Any) -> None:
        if any('face anonymization' in status.name for status in msg.status):
            with self.lock:
                self.diagnostic_stamps.append(_seconds(msg.header.stamp))

    def _on_clock(self, msg: Any) -> None:
        with self.lock:
            self.clock_stamps.append(_seconds(msg.clock))

    def wait_for_frames(self, run: LaunchRun, count: int = FRAMES_EXPECTED) -> None:
        """Wait until ``count`` anonymized frames (with depth and mask) came out."""
        from anonymizer_harness import wait_until

        def complete() -> int:
            with self.lock:
                return len(set(self.outputs['image_anonymized']) & set(self.outputs['mask'])
                           & set(self.outputs['depth_anonymized']) & set(self.input_headers))

        arrived = wait_until(lambda: complete() >= count or run.process.poll() is not None,
                             HANG_GUARD_S, 0.1)
        assert arrived and complete() >= count, (
            'only %d anonymized frames on %s/{image_anonymized,depth_anonymized,mask}; launch '
            'log:\n%s' % (complete(), self.namespace, run.log()[-4000:]))

    def check_frames(self, frame_id: str) -> None:
        """Every output frame is anonymized and keeps the header of a published input frame."""
        with self.lock:
            least = dict(self.least_changed)
            frame_ids = dict(self.output_frame_ids)
            inputs = dict(self.input_headers)
        assert least, 'no anonymized frame'
        for stamp, changed in least.items():
            assert changed > MIN_FACE_CHANGE, (
                'frame %s shows a face: only %.0f %% of a face core changed'
                % (stamp, 100 * changed))
            assert frame_ids[stamp] == frame_id
        # Frames published before this listener subscribed cannot be compared; all later are.
        later = {stamp for stamp in least if stamp >= min(inputs)}
        assert later <= set(inputs), 'output stamps that no input frame had'
        assert all(inputs[stamp] == frame_id for stamp in later)

    def publishers_of(self, node_name: str, namespace: str) -> Set[str]:
        """Return the topics a node publishes on."""
        return {name for name, _ in
                self.node.get_publisher_names_and_types_by_node(node_name, namespace)}

    def close(self) -> None:
        """Shut the listener down."""
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        if self.context.ok():
            import rclpy
            rclpy.shutdown(context=self.context)
        self._thread.join(timeout=5.0)


def _stamp(stamp: Any) -> Tuple[int, int]:
    return int(stamp.sec), int(stamp.nanosec)


def _seconds(stamp: Any) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


@pytest.fixture
def listeners() -> Iterator[Callable[..., LaunchListener]]:
    """Create launch listeners, closed at the end of the test."""
    created: List[LaunchListener] = []

    def create(*args: Any, **kwargs: Any) -> LaunchListener:
        created.append(LaunchListener(*args, **kwargs))
        return created[-1]

    yield create
    for listener in created:
        listener.close()


SAMPLE_CAMERA_FRAME_ID = 'camera_color_optical_frame'


def test_anonymizer_launch_with_the_sample_camera(
        launch_run: Callable[..., LaunchRun],
        listeners: Callable[..., LaunchListener]) -> None:
    """anonymizer.launch.py reads /image and /depth and publishes anonymized frames at the root."""
    run = launch_run('anonymizer.launch.py', {})
    listener = listeners('/image', '/')
    run.start_helper('sample_camera', ['--rate', '15', '--wait-subscribers', '2'])
    listener.wait_for_frames(run)
    listener.check_frames(SAMPLE_CAMERA_FRAME_ID)
    assert {'/image_anonymized', '/depth_anonymized', '/mask'} <= listener.publishers_of(
        'anonymizer', '/')


def test_realsense_launch_with_a_running_driver(
        launch_run: Callable[..., LaunchRun],
        listeners: Callable[..., LaunchListener]) -> None:
    """launch_camera:=false: the driver's topics in, anonymized outputs in the camera namespace."""
    run = launch_run('realsense_jetson.launch.py', {'launch_camera': 'false'})
    listener = listeners('/camera/camera/color/image_raw', '/camera/camera')
    run.start_helper('sample_camera', [
        '--rate', '15', '--encoding', 'rgb8', '--wait-subscribers', '2', '--ros-args',
        '-r', '__ns:=/camera', '-r', '__node:=camera',
        '-r', 'image:=/camera/camera/color/image_raw',
        '-r', 'depth:=/camera/camera/aligned_depth_to_color/image_raw'])
    listener.wait_for_frames(run)
    listener.check_frames(SAMPLE_CAMERA_FRAME_ID)
    assert {'/camera/camera/image_anonymized', '/camera/camera/depth_anonymized',
            '/camera/camera/mask'} <= listener.publishers_of('anonymizer', '/camera/camera')
    assert not (run.record_dir / 'realsense2_camera.json').exists(), 'the driver was started'


def test_realsense_launch_starts_the_driver_with_aligned_synchronized_profiles(
        launch_run: Callable[..., LaunchRun],
        listeners: Callable[..., LaunchListener]) -> None:
    """The driver gets the profiles, alignment and sync; its frames come out anonymized."""
    run = launch_run('realsense_jetson.launch.py', {
        'camera_namespace': 'rig', 'camera_name': 'd435', 'color_profile': '640,480,15',
        'depth_profile': '640,480,15'})
    listener = listeners('/rig/d435/color/image_raw', '/rig/d435')
    listener.wait_for_frames(run)
    listener.check_frames(SAMPLE_CAMERA_FRAME_ID)
    driver = run.recorded('realsense2_camera.json')
    assert driver['camera_namespace'] == 'rig' and driver['camera_name'] == 'd435'
    for name in ('rgb_camera.color_profile', 'depth_module.depth_profile', 'rgb_camera.profile',
                 'depth_module.profile'):
        assert driver[name] == '640,480,15', name
    assert driver['align_depth.enable'] == 'true' and driver['enable_sync'] == 'true'
    assert driver['enable_color'] == 'true' and driver['enable_depth'] == 'true'
    assert driver['pointcloud.enable'] == 'false'
    assert '/rig/d435/image_anonymized' in listener.publishers_of('anonymizer', '/rig/d435')


def test_carla_launch_with_bridge_and_ego_vehicle(
        launch_run: Callable[..., LaunchRun],
        listeners: Callable[..., LaunchListener], colcon_install: Path) -> None:
    """The bridge and spawner get their arguments; sim-time frames reach the vehicle's outputs."""
    run = launch_run('carla_bridge.launch.py', {'town': 'Town10HD'})
    listener = listeners('/carla/ego_vehicle/rgb_front/image', '/carla/ego_vehicle', clock=True)
    listener.wait_for_frames(run)
    listener.check_frames('ego_vehicle/camera')

    bridge = run.recorded('carla_ros_bridge.json')
    assert (bridge['host'], bridge['port'], bridge['timeout']) == ('localhost', '2000', '10')
    assert bridge['town'] == 'Town10HD'
    assert bridge['synchronous_mode'] == 'true' and bridge['fixed_delta_seconds'] == '0.05'
    spawn = run.recorded('carla_spawn_objects.json')
    assert spawn['arguments']['role_name'] == 'ego_vehicle'
    assert Path(spawn['arguments']['objects_definition_file']) == (
        colcon_install / 'share' / PACKAGE / 'config' / 'carla_objects.json')
    (vehicle,) = [obj for obj in spawn['objects']['objects'] if obj['type'].startswith('vehicle.')]
    assert vehicle['id'] == 'ego_vehicle'
    assert {s['id'] for s in vehicle['sensors']} >= {'rgb_front', 'depth_front'}

    # The anonymizer runs on simulation time: its diagnostics carry /clock stamps, not wall time.
    from anonymizer_harness import wait_until
    assert wait_until(lambda: bool(listener.diagnostic_stamps), 30.0, 0.1), 'no diagnostics'
    # /clock is matched on its own: frames can flow before its subscription has discovered
    # the bridge's publisher on a busy machine.
    wait_until(lambda: len(set(listener.clock_stamps)) >= 2, 30.0, 0.1)
    with listener.lock:
        clock = list(listener.clock_stamps)
        diagnostics = list(listener.diagnostic_stamps)
        outputs = sorted(listener.least_changed)
    assert clock and clock[-1] > clock[0], 'the simulation clock does not advance'
    assert all(1000.0 <= stamp <= clock[-1] + 1.0 for stamp in diagnostics), diagnostics
    assert all(1000.0 <= sec + nsec * 1e-9 <= clock[-1] + 1.0 for sec, nsec in outputs)
    assert {'/carla/ego_vehicle/image_anonymized', '/carla/ego_vehicle/depth_anonymized',
            '/carla/ego_vehicle/mask'} <= listener.publishers_of('anonymizer',
                                                                 '/carla/ego_vehicle')


BAG_FRAMES = 30
BAG_START_NS = 2_000_000_000_000
BAG_PERIOD_NS = 100_000_000  # 10 Hz


def write_sample_bag(path: Path) -> None:
    """Write a rosbag2 of the sample camera: rgb8 colour and aligned 16UC1 depth, 10 Hz."""
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import get_typestore, Stores

    from av_privacy_ros.sample_camera import SampleFrames
    store = get_typestore(Stores.LATEST)
    image_type = store.types['sensor_msgs/msg/Image']
    header_type = store.types['std_msgs/msg/Header']
    time_type = store.types['builtin_interfaces/msg/Time']
    frames = SampleFrames()
    with Writer(path, version=8) as writer:
        color = writer.add_connection('/camera/camera/color/image_raw', image_type.__msgtype__,
                                      typestore=store)
        depth = writer.add_connection('/camera/camera/aligned_depth_to_color/image_raw',
                                      image_type.__msgtype__, typestore=store)
        for index in range(BAG_FRAMES):
            stamp_ns = BAG_START_NS + index * BAG_PERIOD_NS
            header = header_type(stamp=time_type(sec=stamp_ns // 10**9,
                                                 nanosec=stamp_ns % 10**9),
                                 frame_id=SAMPLE_CAMERA_FRAME_ID)
            bgr, depth_mm = frames.frame(index)
            rgb = np.ascontiguousarray(bgr[:, :, ::-1])
            for connection, pixels, encoding, step in (
                    (color, rgb, 'rgb8', rgb.shape[1] * 3),
                    (depth, depth_mm, '16UC1', depth_mm.shape[1] * 2)):
                message = image_type(header=header, height=pixels.shape[0],
                                     width=pixels.shape[1], encoding=encoding, is_bigendian=0,
                                     step=step, data=pixels.reshape(-1).view(np.uint8))
                writer.write(connection, stamp_ns,
                             store.serialize_cdr(message, image_type.__msgtype__))


def test_bag_replay_launch_plays_anonymizes_records_and_stops(
        launch_run: Callable[..., LaunchRun],
        listeners: Callable[..., LaunchListener], tmp_path: Path) -> None:
    """The bag is played with --clock, its frames come out anonymized, then everything stops."""
    bag = tmp_path / 'drive'
    write_sample_bag(bag)
    run = launch_run('bag_replay.launch.py', {'bag': str(bag), 'record': 'true',
                                              'start_delay': '2.0'}, path_prepend=FAKE_BIN)
    listener = listeners('/camera/camera/color/image_raw', '/anonymizer', clock=True)
    listener.wait_for_frames(run)
    listener.check_frames(SAMPLE_CAMERA_FRAME_ID)
    # After the playback the launch shuts itself down (which closes the recorded bag).
    from anonymizer_harness import wait_until
    assert wait_until(lambda: run.process.poll() is not None, HANG_GUARD_S, 0.1), run.log()
    assert run.process.returncode == 0, run.log()[-3000:]

    commands = [json.loads(line) for line in
                (run.record_dir / 'ros2_commands.jsonl').read_text().splitlines()]
    assert ['ros2', 'bag', 'record', '--use-sim-time', '-o', str(bag) + '_anonymized',
            '/anonymizer/image_anonymized', '/anonymizer/depth_anonymized',
            '/anonymizer/mask'] in commands
    assert ['ros2', 'bag', 'play', str(bag), '--rate', '1.0', '--clock'] in commands
    # Sim time: the frames' stamps are the bag's, and so are the anonymizer's diagnostics.
    with listener.lock:
        outputs = sorted(listener.least_changed)
        diagnostics = list(listener.diagnostic_stamps)
    bag_stamps = {divmod(BAG_START_NS + index * BAG_PERIOD_NS, 10**9)
                  for index in range(BAG_FRAMES)}
    assert set(outputs) <= bag_stamps, set(outputs) - bag_stamps
    last = (BAG_START_NS + BAG_FRAMES * BAG_PERIOD_NS) * 1e-9
    assert diagnostics and all(stamp < last + 10.0 for stamp in diagnostics), diagnostics
