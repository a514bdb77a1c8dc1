"""
Anonymize the front camera of a CARLA ego vehicle published by the CARLA ROS bridge.

Example (a CARLA server already running on this machine)::

    ros2 launch av_privacy_ros carla_bridge.launch.py

Optionally starts ``carla_ros_bridge``'s ``carla_ros_bridge.launch.py`` (``launch_bridge``) and
``carla_spawn_objects``' ``carla_example_ego_vehicle.launch.py`` (``spawn_ego_vehicle``) with the
package's ``config/carla_objects.json``: an ego vehicle whose ``rgb_front`` and ``depth_front``
cameras share pose, field of view and size (640x480), so the depth image is aligned with the
colour image. The anonymizer reads ``/carla/<role_name>/rgb_front/image`` (bgra8) and
``/carla/<role_name>/depth_front/image`` (32FC1, metres) and runs on simulation time (the bridge
publishes ``/clock``). The anonymized outputs appear in the vehicle's namespace:
``/carla/<role_name>/image_anonymized``, ``.../depth_anonymized`` and ``.../mask``, from the node
``/carla/<role_name>/anonymizer``; ``namespace:=...`` moves them. This file passes only what it
changes to ``anonymizer.launch.py``; that file's other arguments (``use_depth``, ``log_level``,
the output topic names, ``fastdds_profiles_file``) can be given here as well and reach it
unchanged.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Dict, List

from launch import LaunchContext, LaunchDescription
from launch.actions import (DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction,
                            RegisterEventHandler)
from launch.conditions import IfCondition
from launch.event_handlers import OnShutdown
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

PACKAGE = 'av_privacy_ros'
BOOL_CHOICES = ['true', 'false']


def objects_file_for(path: str, role_name: str, spawn_point: str) -> str:
    """
    Return an objects definition file whose ego vehicle has ``role_name`` and ``spawn_point``.

    carla_spawn_objects names the vehicle (and so its topics, /carla/<id>/...) after the
    vehicle's ``id`` in the file, and reads a spawn point parameter named after that id. When the
    file already matches, ``path`` is returned; otherwise a copy with the vehicle's id (and
    spawn point, given as ``x,y,z,roll,pitch,yaw``) changed is written to a temporary file
    (:func:`spawn_ego_vehicle` deletes it when launch shuts down).
    """
    try:
        with open(path, encoding='utf-8') as handle:
            document: Dict[str, Any] = json.load(handle)
    except (OSError, ValueError) as exc:
        raise RuntimeError('Cannot read the CARLA objects file %s: %s' % (path, exc)) from exc
    vehicles = [obj for obj in document.get('objects', [])
                if str(obj.get('type', '')).startswith('vehicle.')]
    if len(vehicles) != 1:
        raise RuntimeError('The CARLA objects file %s must define exactly one vehicle, it '
                           'defines %d.' % (path, len(vehicles)))
    vehicle = vehicles[0]
    changed = vehicle.get('id') != role_name
    vehicle['id'] = role_name
    if spawn_point.strip():
        try:
            values = [float(v) for v in spawn_point.split(',')]
        except ValueError:
            values = []
        if len(values) != 6:
            raise RuntimeError('spawn_point must be six numbers x,y,z,roll,pitch,yaw (metres '
                               'and degrees), got %r.' % spawn_point)
        vehicle['spawn_point'] = dict(zip(('x', 'y', 'z', 'roll', 'pitch', 'yaw'), values))
        changed = True
    if not changed:
        return path
    handle_fd, copy_path = tempfile.mkstemp(prefix='av_privacy_carla_objects_', suffix='.json')
    with os.fdopen(handle_fd, 'w', encoding='utf-8') as handle:
        json.dump(document, handle, indent=2)
    return copy_path


def remove_on_shutdown(path: str) -> RegisterEventHandler:
    """Return an action that deletes ``path`` (a temporary objects file) when launch shuts down."""
    def remove(*_: Any) -> None:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
    return RegisterEventHandler(OnShutdown(on_shutdown=remove))


def spawn_ego_vehicle(context: LaunchContext) -> List[Any]:
    """Include carla_example_ego_vehicle.launch.py with an objects file for role_name."""
    given = LaunchConfiguration('objects_definition_file').perform(context)
    objects_file = objects_file_for(
        given,
        LaunchConfiguration('role_name').perform(context),
        LaunchConfiguration('spawn_point').perform(context))
    # A copy made for this launch lives only as long as the launch does.
    cleanup: List[Any] = [remove_on_shutdown(objects_file)] if objects_file != given else []
    return cleanup + [IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            PathJoinSubstitution(
                [FindPackageShare('carla_spawn_objects'), 'carla_example_ego_vehicle.launch.py'])),
        launch_arguments={
            'objects_definition_file': objects_file,
            'role_name': LaunchConfiguration('role_name'),
        }.items(),
    )]


def generate_launch_description() -> LaunchDescription:
    """Return the launch description of the CARLA bridge, the ego vehicle and the anonymizer."""
    role_name = LaunchConfiguration('role_name')

    arguments = [
        DeclareLaunchArgument(
            'launch_bridge', default_value='true', choices=BOOL_CHOICES,
            description='Start the CARLA ROS bridge (carla_ros_bridge.launch.py); false uses a '
                        'bridge that is already running.'),
        DeclareLaunchArgument(
            'spawn_ego_vehicle', default_value='true', choices=BOOL_CHOICES,
            description='Spawn the ego vehicle and its cameras (carla_spawn_objects '
                        'carla_example_ego_vehicle.launch.py with objects_definition_file).'),
        DeclareLaunchArgument(
            'host', default_value='localhost', description='Host of the CARLA server.'),
        DeclareLaunchArgument(
            'port', default_value='2000', description='TCP port of the CARLA server.'),
        DeclareLaunchArgument(
            'timeout', default_value='10',
            description='Seconds the bridge waits for the CARLA server.'),
        DeclareLaunchArgument(
            'town', default_value='Town01',
            description='CARLA town to load (e.g. Town10HD) or an OpenDRIVE .xodr file.'),
        DeclareLaunchArgument(
            'synchronous_mode', default_value='true', choices=BOOL_CHOICES,
            description='Run CARLA in synchronous mode: the bridge ticks the world, so the '
                        'colour and depth frames of one tick carry the same stamp.'),
        DeclareLaunchArgument(
            'fixed_delta_seconds', default_value='0.05',
            description='Simulation seconds per tick (0.05 gives 20 frames per second).'),
        DeclareLaunchArgument(
            'role_name', default_value='ego_vehicle',
            description='Role name of the ego vehicle; its topics are /carla/<role_name>/...'),
        DeclareLaunchArgument(
            'objects_definition_file',
            default_value=PathJoinSubstitution(
                [FindPackageShare(PACKAGE), 'config', 'carla_objects.json']),
            description='carla_spawn_objects JSON: one vehicle with rgb_front and depth_front '
                        'cameras of identical pose, field of view and size.'),
        DeclareLaunchArgument(
            'spawn_point', default_value='',
            description='Ego vehicle spawn point x,y,z,roll,pitch,yaw (metres, degrees); empty '
                        'uses the objects file or a random spawn point.'),
        DeclareLaunchArgument(
            'image_topic', default_value=['/carla/', role_name, '/rgb_front/image'],
            description='Colour topic (bgra8) read by the anonymizer.'),
        DeclareLaunchArgument(
            'depth_topic', default_value=['/carla/', role_name, '/depth_front/image'],
            description='Depth topic (32FC1, metres) read by the anonymizer.'),
        DeclareLaunchArgument(
            'params_file',
            default_value=PathJoinSubstitution(
                [FindPackageShare(PACKAGE), 'config', 'carla.yaml']),
            description='Anonymizer parameters YAML for CARLA.'),
        DeclareLaunchArgument(
            'namespace', default_value=['/carla/', role_name],
            description='ROS namespace of the anonymizer node and of its outputs '
                        "(image_anonymized, depth_anonymized, mask): the ego vehicle's "
                        'namespace /carla/<role_name> unless set.'),
    ]

    # First the anonymizer: it exports the large-frame Fast DDS profile before the bridge starts.
    anonymizer = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            PathJoinSubstitution([FindPackageShare(PACKAGE), 'launch', 'anonymizer.launch.py'])),
        launch_arguments={
            'params_file': LaunchConfiguration('params_file'),
            'namespace': LaunchConfiguration('namespace'),
            'image_topic': LaunchConfiguration('image_topic'),
            'depth_topic': LaunchConfiguration('depth_topic'),
            'use_sim_time': 'true',
        }.items(),
    )

    bridge = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            PathJoinSubstitution(
                [FindPackageShare('carla_ros_bridge'), 'carla_ros_bridge.launch.py'])),
        condition=IfCondition(LaunchConfiguration('launch_bridge')),
        launch_arguments={
            'host': LaunchConfiguration('host'),
            'port': LaunchConfiguration('port'),
            'timeout': LaunchConfiguration('timeout'),
            'town': LaunchConfiguration('town'),
            'synchronous_mode': LaunchConfiguration('synchronous_mode'),
            'fixed_delta_seconds': LaunchConfiguration('fixed_delta_seconds'),
        }.items(),
    )

    ego_vehicle = OpaqueFunction(
        function=spawn_ego_vehicle,
        condition=IfCondition(LaunchConfiguration('spawn_ego_vehicle')))

    return LaunchDescription(arguments + [anonymizer, bridge, ego_vehicle])
