"""
Anonymize an Intel RealSense camera on a Jetson (or any Linux machine).

Example::

    ros2 launch av_privacy_ros realsense_jetson.launch.py

Starts ``realsense2_camera``'s ``rs_launch.py`` with colour and depth at 640x480, 30 fps, depth
aligned to colour and synchronized frames, then the anonymizer (``anonymizer.launch.py``) on
``/<camera_namespace>/<camera_name>/color/image_raw`` (rgb8) and
``/<camera_namespace>/<camera_name>/aligned_depth_to_color/image_raw`` (16UC1, millimetres).
``launch_camera:=false`` uses a camera driver that is already running. This file passes only
what it changes to ``anonymizer.launch.py``; that file's other arguments (``use_depth``,
``log_level``, the output topic names, ``fastdds_profiles_file``) can be given here as well and
reach it unchanged.

The anonymized outputs appear beside the camera's topics, in the driver's namespace:
``/<camera_namespace>/<camera_name>/image_anonymized``, ``.../depth_anonymized`` and
``.../mask`` (``/camera/camera/...`` by default), from the node
``/<camera_namespace>/<camera_name>/anonymizer``; ``namespace:=...`` moves them.

The stream profiles are passed under both driver spellings: ``rgb_camera.color_profile`` /
``depth_module.depth_profile`` (realsense-ros 4.55 and newer) and ``rgb_camera.profile`` /
``depth_module.profile`` (4.54 and older); each driver reads its own and ignores the others.
"""

from __future__ import annotations

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

PACKAGE = 'av_privacy_ros'
BOOL_CHOICES = ['true', 'false']


def generate_launch_description() -> LaunchDescription:
    """Return the launch description of the RealSense driver plus the anonymizer."""
    camera_namespace = LaunchConfiguration('camera_namespace')
    camera_name = LaunchConfiguration('camera_name')
    color_profile = LaunchConfiguration('color_profile')
    depth_profile = LaunchConfiguration('depth_profile')

    arguments = [
        DeclareLaunchArgument(
            'launch_camera', default_value='true', choices=BOOL_CHOICES,
            description='Start the RealSense driver (realsense2_camera rs_launch.py); false '
                        'uses a camera driver that is already running.'),
        DeclareLaunchArgument(
            'camera_namespace', default_value='camera',
            description='Namespace of the RealSense driver (rs_launch.py camera_namespace, '
                        '4.55 and newer). Drivers up to 4.54 publish under /<camera_name> '
                        "only: set camera_namespace:='' for them."),
        DeclareLaunchArgument(
            'camera_name', default_value='camera',
            description='Name of the RealSense driver node (rs_launch.py camera_name).'),
        DeclareLaunchArgument(
            'color_profile', default_value='640,480,30',
            description='Colour stream width,height,fps (rgb_camera.color_profile, or '
                        'rgb_camera.profile on drivers up to 4.54).'),
        DeclareLaunchArgument(
            'depth_profile', default_value='640,480,30',
            description='Depth stream width,height,fps (depth_module.depth_profile, or '
                        'depth_module.profile on drivers up to 4.54).'),
        DeclareLaunchArgument(
            'image_topic',
            default_value=PathJoinSubstitution(
                ['/', camera_namespace, camera_name, 'color', 'image_raw']),
            description='Colour topic (rgb8) read by the anonymizer; follows camera_namespace '
                        'and camera_name unless set.'),
        DeclareLaunchArgument(
            'depth_topic',
            default_value=PathJoinSubstitution(
                ['/', camera_namespace, camera_name, 'aligned_depth_to_color', 'image_raw']),
            description='Aligned depth topic (16UC1, millimetres) read by the anonymizer; '
                        'follows camera_namespace and camera_name unless set.'),
        DeclareLaunchArgument(
            'params_file',
            default_value=PathJoinSubstitution(
                [FindPackageShare(PACKAGE), 'config', 'realsense_jetson.yaml']),
            description='Anonymizer parameters YAML (TensorRT with a persistent engine cache, '
                        'depth-guided masks).'),
        DeclareLaunchArgument(
            'namespace',
            default_value=PathJoinSubstitution(['/', camera_namespace, camera_name]),
            description='ROS namespace of the anonymizer node and of its outputs '
                        "(image_anonymized, depth_anonymized, mask): the camera's own namespace "
                        'unless set, so each camera of a rig gets its own outputs.'),
    ]

    # First the anonymizer: it exports the large-frame Fast DDS profile before the camera
    # driver starts, so the driver publishes through the same 16 MB shared-memory segment.
    anonymizer = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            PathJoinSubstitution([FindPackageShare(PACKAGE), 'launch', 'anonymizer.launch.py'])),
        launch_arguments={
            'params_file': LaunchConfiguration('params_file'),
            'namespace': LaunchConfiguration('namespace'),
            'image_topic': LaunchConfiguration('image_topic'),
            'depth_topic': LaunchConfiguration('depth_topic'),
            'use_sim_time': 'false',
        }.items(),
    )

    camera = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            PathJoinSubstitution(
                [FindPackageShare('realsense2_camera'), 'launch', 'rs_launch.py'])),
        condition=IfCondition(LaunchConfiguration('launch_camera')),
        launch_arguments={
            'camera_namespace': camera_namespace,
            'camera_name': camera_name,
            'enable_color': 'true',
            'enable_depth': 'true',
            'enable_infra1': 'false',
            'enable_infra2': 'false',
            'pointcloud.enable': 'false',
            'align_depth.enable': 'true',
            'enable_sync': 'true',
            'rgb_camera.color_profile': color_profile,
            'depth_module.depth_profile': depth_profile,
            'rgb_camera.profile': color_profile,
            'depth_module.profile': depth_profile,
        }.items(),
    )

    return LaunchDescription(arguments + [anonymizer, camera])
