r"""
Start the face anonymizer node on any colour (and aligned depth) image stream.

Example::

    ros2 launch av_privacy_ros anonymizer.launch.py \
        image_topic:=/camera/camera/color/image_raw \
        depth_topic:=/camera/camera/aligned_depth_to_color/image_raw

The camera-specific launch files of this package (RealSense, CARLA, bag replay) include this one.
It also points Fast DDS at the package's large-frame profile (a 16 MB shared-memory segment;
with the default segment about half of the 640x480 frames are dropped between processes) unless
``FASTDDS_DEFAULT_PROFILES_FILE`` is already set in the environment.
"""

from __future__ import annotations

import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

PACKAGE = 'av_privacy_ros'
FASTDDS_PROFILES_ENV = 'FASTDDS_DEFAULT_PROFILES_FILE'
BOOL_CHOICES = ['true', 'false']
LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'fatal']


def generate_launch_description() -> LaunchDescription:
    """Return the launch description of the anonymizer node with its topic remappings."""
    package_share = FindPackageShare(PACKAGE)
    user_profiles = os.environ.get(FASTDDS_PROFILES_ENV, '')
    default_profiles = user_profiles or PathJoinSubstitution(
        [package_share, 'config', 'fastdds_large_frames.xml'])

    arguments = [
        DeclareLaunchArgument(
            'params_file',
            default_value=PathJoinSubstitution([package_share, 'config', 'anonymizer.yaml']),
            description='Node parameters YAML (/**: ros__parameters:). Every parameter is '
                        'listed in the package config/anonymizer.yaml.'),
        DeclareLaunchArgument(
            'namespace', default_value='',
            description='ROS namespace of the anonymizer node; relative topic names resolve '
                        'inside it.'),
        DeclareLaunchArgument(
            'image_topic', default_value='image',
            description='Colour image input (sensor_msgs/Image: bgr8, rgb8, bgra8, rgba8 or '
                        'mono8).'),
        DeclareLaunchArgument(
            'depth_topic', default_value='depth',
            description='Depth image input aligned to the colour image (16UC1 or mono16 '
                        'millimetres, 32FC1 metres); used when use_depth is true.'),
        DeclareLaunchArgument(
            'image_anonymized_topic', default_value='image_anonymized',
            description='Anonymized colour image output (same header as the input).'),
        DeclareLaunchArgument(
            'depth_anonymized_topic', default_value='depth_anonymized',
            description='Depth output, with noise under the face mask when '
                        'depth.enable_noise is true.'),
        DeclareLaunchArgument(
            'mask_topic', default_value='mask',
            description='Face mask output (mono8, 255 inside anonymized regions).'),
        DeclareLaunchArgument(
            'use_depth', default_value='true', choices=BOOL_CHOICES,
            description='Subscribe to depth_topic beside image_topic and pair them by stamp; '
                        'overrides use_depth of params_file.'),
        DeclareLaunchArgument(
            'use_sim_time', default_value='false', choices=BOOL_CHOICES,
            description='Use the /clock topic (simulation or bag replay with --clock).'),
        DeclareLaunchArgument(
            'log_level', default_value='info', choices=LOG_LEVELS,
            description='Logging level of the anonymizer node.'),
        DeclareLaunchArgument(
            'fastdds_profiles_file', default_value=default_profiles,
            description='Fast DDS XML profile exported as ' + FASTDDS_PROFILES_ENV + ' for '
                        'the processes started from here on; defaults to the environment '
                        'variable when it is set, else the package large-frame profile '
                        '(16 MB shared-memory segment).'),
    ]

    node = Node(
        package=PACKAGE,
        executable='anonymizer_node',
        name='anonymizer',
        namespace=LaunchConfiguration('namespace'),
        output='screen',
        emulate_tty=True,
        parameters=[
            LaunchConfiguration('params_file'),
            {
                'use_depth': ParameterValue(LaunchConfiguration('use_depth'), value_type=bool),
                'use_sim_time': ParameterValue(LaunchConfiguration('use_sim_time'),
                                               value_type=bool),
            },
        ],
        remappings=[
            ('image', LaunchConfiguration('image_topic')),
            ('depth', LaunchConfiguration('depth_topic')),
            ('image_anonymized', LaunchConfiguration('image_anonymized_topic')),
            ('depth_anonymized', LaunchConfiguration('depth_anonymized_topic')),
            ('mask', LaunchConfiguration('mask_topic')),
        ],
        arguments=['--ros-args', '--log-level', LaunchConfiguration('log_level')],
    )

    return LaunchDescription(arguments + [
        # Before any process starts: included launch files are not scoped, so the camera
        # driver or bridge started after this include gets the same profile.
        SetEnvironmentVariable(FASTDDS_PROFILES_ENV, LaunchConfiguration('fastdds_profiles_file')),
        node,
    ])
