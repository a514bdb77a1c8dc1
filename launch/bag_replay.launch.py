"""
Replay a rosbag2 recording through the anonymizer, optionally recording only its outputs.

Example::

    ros2 launch av_privacy_ros bag_replay.launch.py bag:=/data/drive_01 record:=true

Plays the bag with ``ros2 bag play <bag> --clock`` (``rate``, ``loop``) after ``start_delay``
seconds, runs the anonymizer (``anonymizer.launch.py``) on simulation time, and with
``record:=true`` records the anonymized image, depth and mask topics, and nothing raw, into
``output_bag`` with ``ros2 bag record --use-sim-time``. When the bag has been played (and
``loop`` is false) everything stops a few seconds later, which closes the output bag. This file
passes only what it changes to ``anonymizer.launch.py``; that file's other arguments
(``namespace``, ``log_level``, ``fastdds_profiles_file``) can be given here as well and reach it
unchanged.

For a complete anonymized copy of a bag (every other topic copied, stamps kept) use the offline
tool ``ros2 run av_privacy_ros anonymize_bag`` instead.
"""

from __future__ import annotations

import os
from typing import List

from launch import LaunchContext, LaunchDescription
from launch.action import Action
from launch.actions import (DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription,
                            OpaqueFunction, Shutdown, TimerAction)
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

PACKAGE = 'av_privacy_ros'
BOOL_CHOICES = ['true', 'false']

RECORDED_TOPIC_ARGUMENTS = ('image_anonymized_topic', 'depth_anonymized_topic', 'mask_topic')
"""The launch arguments naming the topics that ``record:=true`` writes: anonymized outputs only."""

SHUTDOWN_GRACE_S = 3.0
"""Seconds between the end of the playback and the shutdown, for the last frames in flight."""


def _is_true(text: str) -> bool:
    return text.strip().lower() in ('true', '1', 'yes', 'on')


def replay_and_record(context: LaunchContext) -> List[Action]:
    """Return the ``ros2 bag record`` and (delayed) ``ros2 bag play`` processes."""
    bag = LaunchConfiguration('bag').perform(context).strip()
    if not bag or not os.path.exists(bag):
        raise RuntimeError('bag:=%r is not an existing rosbag2 folder or file.' % bag)
    rate = LaunchConfiguration('rate').perform(context)
    try:
        if float(rate) <= 0.0:
            raise ValueError
    except ValueError:
        raise RuntimeError('rate:=%r must be a number above 0.' % rate) from None
    delay_text = LaunchConfiguration('start_delay').perform(context)
    try:
        start_delay = float(delay_text)
    except ValueError:
        raise RuntimeError('start_delay:=%r must be a number of seconds.' % delay_text) from None
    loop = _is_true(LaunchConfiguration('loop').perform(context))

    actions: List[Action] = []
    if _is_true(LaunchConfiguration('record').perform(context)):
        output_bag = (LaunchConfiguration('output_bag').perform(context).strip()
                      or os.path.normpath(bag) + '_anonymized')
        topics = [LaunchConfiguration(name).perform(context) for name in RECORDED_TOPIC_ARGUMENTS]
        if not _is_true(LaunchConfiguration('use_depth').perform(context)):
            topics.remove(LaunchConfiguration('depth_anonymized_topic').perform(context))
        actions.append(ExecuteProcess(
            cmd=['ros2', 'bag', 'record', '--use-sim-time', '-o', output_bag] + topics,
            name='record_anonymized', output='screen'))

    play_cmd = ['ros2', 'bag', 'play', bag, '--rate', rate, '--clock']
    if loop:
        play_cmd.append('--loop')
    play = ExecuteProcess(
        cmd=play_cmd, name='play', output='screen',
        on_exit=[TimerAction(period=SHUTDOWN_GRACE_S, actions=[
            Shutdown(reason='the bag has been played')])])
    # Start the player once the anonymizer (and recorder) had time to subscribe.
    actions.append(TimerAction(period=max(start_delay, 0.0), actions=[play]))
    return actions


def generate_launch_description() -> LaunchDescription:
    """Return the launch description of bag playback, the anonymizer and the optional recorder."""
    arguments = [
        DeclareLaunchArgument(
            'bag', description='rosbag2 folder (or file) to play with ros2 bag play --clock.'),
        DeclareLaunchArgument(
            'rate', default_value='1.0', description='Playback rate (ros2 bag play --rate).'),
        DeclareLaunchArgument(
            'loop', default_value='false', choices=BOOL_CHOICES,
            description='Play the bag in a loop (ros2 bag play --loop); stop with Ctrl-C.'),
        DeclareLaunchArgument(
            'start_delay', default_value='3.0',
            description='Seconds to wait before playing, so the anonymizer and the recorder '
                        'have subscribed and no frame is missed.'),
        DeclareLaunchArgument(
            'record', default_value='false', choices=BOOL_CHOICES,
            description='Record the anonymized image, depth and mask topics (and nothing raw) '
                        'with ros2 bag record --use-sim-time.'),
        DeclareLaunchArgument(
            'output_bag', default_value='',
            description='Output bag folder for record:=true; empty gives <bag>_anonymized. It '
                        'must not exist yet.'),
        DeclareLaunchArgument(
            'image_topic', default_value='/camera/camera/color/image_raw',
            description='Colour image topic in the bag.'),
        DeclareLaunchArgument(
            'depth_topic', default_value='/camera/camera/aligned_depth_to_color/image_raw',
            description='Aligned depth image topic in the bag.'),
        DeclareLaunchArgument(
            'image_anonymized_topic', default_value='/anonymizer/image_anonymized',
            description='Anonymized colour image topic (published and recorded).'),
        DeclareLaunchArgument(
            'depth_anonymized_topic', default_value='/anonymizer/depth_anonymized',
            description='Anonymized depth topic (published, and recorded when use_depth).'),
        DeclareLaunchArgument(
            'mask_topic', default_value='/anonymizer/mask',
            description='Face mask topic (published and recorded).'),
        DeclareLaunchArgument(
            'params_file',
            default_value=PathJoinSubstitution(
                [FindPackageShare(PACKAGE), 'config', 'anonymizer.yaml']),
            description='Anonymizer parameters YAML.'),
        DeclareLaunchArgument(
            'use_depth', default_value='true', choices=BOOL_CHOICES,
            description='Pair depth_topic with image_topic; false for bags without depth.'),
    ]

    anonymizer = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            PathJoinSubstitution([FindPackageShare(PACKAGE), 'launch', 'anonymizer.launch.py'])),
        launch_arguments={
            'params_file': LaunchConfiguration('params_file'),
            'image_topic': LaunchConfiguration('image_topic'),
            'depth_topic': LaunchConfiguration('depth_topic'),
            'image_anonymized_topic': LaunchConfiguration('image_anonymized_topic'),
            'depth_anonymized_topic': LaunchConfiguration('depth_anonymized_topic'),
            'mask_topic': LaunchConfiguration('mask_topic'),
            'use_sim_time': 'true',
        }.items(),
    )

    return LaunchDescription(arguments + [anonymizer, OpaqueFunction(function=replay_and_record)])
