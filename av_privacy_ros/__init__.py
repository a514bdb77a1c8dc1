"""
av_privacy_ros: real-time face anonymization for ROS 2 camera streams.

The public API is :class:`AVPrivacyMasker`, its settings (:class:`PipelineSettings`) and its
result types; the ROS node lives in ``av_privacy_ros.node`` and is imported only when used.
"""

from .detection import Detections
from .masker import AVPrivacyMasker, FrameResult
from .settings import PipelineSettings

__all__ = ['AVPrivacyMasker', 'Detections', 'FrameResult', 'PipelineSettings']
