"""
The anonymizer node: synchronized colour (+ depth) in, anonymized image, depth and mask out.

ROS glue only: the pipeline is :class:`av_privacy_ros.masker.AVPrivacyMasker`, the message
conversions live in :mod:`av_privacy_ros.image_msgs`, the parameters in
:mod:`av_privacy_ros.params`.  Runs on ROS 2 Humble (Python 3.10) and newer.

Threads: the executor runs the subscription callbacks, which only keep the newest input pair
(an older pair that was not processed yet is dropped and counted), the parameter services and
the diagnostics timer.  One worker thread converts, anonymizes and publishes the newest pair,
so processing never builds a backlog.  A warm-up thread runs one detector inference at start;
until it has finished, every frame is anonymized over its whole area (fail-closed).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
import numpy as np
from rcl_interfaces.msg import (
    FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult)
import rclpy
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

from . import params
from .diagnostics import (diagnostic_level, diagnostic_values, ERROR, NodeState, NodeStats,
                          rss_mb, statistics, WARN)
from .image_msgs import (
    bgr_to_image_fields, canonical_encoding, depth_to_image_fields, fill_image_msg,
    image_to_bgr, image_to_depth, mask_to_mono8_fields)
from .masker import AVPrivacyMasker, FrameResult
from .settings import PipelineSettings
from .sync import ApproximateTimePairer, prune_newer, stamp_to_sec

try:  # message_filters is part of a ROS install but not on PyPI.
    from message_filters import ApproximateTimeSynchronizer, Subscriber as FilterSubscriber
except ImportError:  # pragma: no cover - depends on the installation
    ApproximateTimeSynchronizer = None
    FilterSubscriber = None

NODE_NAME = 'anonymizer'
WARMUP_SIZE = (640, 480)
LOG_THROTTLE_S = 5.0


def _descriptor(spec: params.ParamSpec) -> ParameterDescriptor:
    """Return the ROS parameter descriptor of one table entry."""
    descriptor = ParameterDescriptor(
        name=spec.name,
        type=Parameter.Type.from_parameter_value(spec.default).value,
        description=spec.description,
        read_only=spec.read_only)
    if spec.choices:
        descriptor.additional_constraints = 'one of: ' + ', '.join(spec.choices)
    elif spec.item_choices:
        descriptor.additional_constraints = 'each entry one of: ' + ', '.join(spec.item_choices)
    if spec.max_reason:
        # No range in the descriptor: rclpy would refuse a larger value with its own generic
        # "out of range" text before the node can say why the limit is there.
        descriptor.additional_constraints = 'from %s to %s; at most %s: %s' % (
            params._fmt(spec.min_value), params._fmt(spec.max_value),
            params._fmt(spec.max_value), spec.max_reason)
    elif spec.min_value is not None and spec.max_value is not None:
        if spec.type_name == 'int':
            descriptor.integer_range = [IntegerRange(
                from_value=int(spec.min_value), to_value=int(spec.max_value), step=1)]
        elif spec.type_name == 'double':
            descriptor.floating_point_range = [FloatingPointRange(
                from_value=float(spec.min_value), to_value=float(spec.max_value), step=0.0)]
    return descriptor


def combination_problem(values: Dict[str, Any]) -> Optional[str]:
    """Return why a set of parameter values cannot work together, or None."""
    if values['mask.mode'] == 'depth' and not values['use_depth']:
        return 'mask.mode depth needs use_depth true (there is no depth image to guide the mask)'
    if values['sync.pairer'] == 'message_filters' and ApproximateTimeSynchronizer is None:
        return ('sync.pairer message_filters needs the message_filters package, which is not '
                'installed (install ros-<distro>-message-filters, or use sync.pairer builtin)')
    return None


class _LogForwarder(logging.Handler):
    """Forward the core modules' Python log records to the node's logger, throttled."""

    def __init__(self, node: Node) -> None:
        super().__init__(logging.INFO)
        self._logger = node.get_logger()
        self._last: Dict[Tuple[str, int, str], float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        """Log the record through rclpy unless the same kind was logged within 5 s."""
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not break the node
            message = str(record.msg)
        key = (record.name, record.levelno, message[:40])
        now = time.monotonic()
        if now - self._last.get(key, -LOG_THROTTLE_S) < LOG_THROTTLE_S:
            return
        self._last[key] = now
        text = '%s: %s' % (record.name, message)
        if record.levelno >= logging.ERROR:
            self._logger.error(text)
        elif record.levelno >= logging.WARNING:
            self._logger.warning(text)
        else:
            self._logger.info(text)


class AnonymizerNode(Node):
    """
    Subscribe to ``image`` (and ``depth``), publish anonymized ``image_anonymized``, ``mask``.

    With ``use_depth`` the colour and depth images are paired by stamp and
    ``depth_anonymized`` is published too.  Every output keeps the header of its input.
    ``camera_info`` (optional) gives the focal length that ``tracking.walking_speed`` needs.
    ``masker`` injects a ready-made :class:`AVPrivacyMasker` (its live settings are then taken
    from the node's parameters); by default one is built from the parameters.  Other keyword
    arguments go to :class:`rclpy.node.Node` (``context``, ``namespace``,
    ``parameter_overrides``, ``cli_args`` ...).
    """

    def __init__(self, masker: Optional[AVPrivacyMasker] = None,
                 node_name: str = NODE_NAME, **kwargs: Any) -> None:
        """Declare the parameters, build the masker, create the topics and start the worker."""
        super().__init__(node_name, **kwargs)
        self._stats = NodeStats()
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._pending: Optional[Tuple[Image, Optional[Image], float]] = None
        self._ready = False
        self._warmup_error: Optional[str] = None
        self._worker: Optional[threading.Thread] = None
        self._forwarder: Optional[_LogForwarder] = None
        self._values = self._declare_parameters()
        problem = combination_problem(self._values)
        if problem:
            raise ValueError(problem)
        self._fail_mode = str(self._values['fail_mode'])
        self._settings = PipelineSettings.from_values(self._values)
        self._install_log_forwarder()
        if masker is None:
            try:
                masker = AVPrivacyMasker(self._settings)
            except Exception:
                self._remove_log_forwarder()
                raise
        else:
            for message in getattr(masker, 'warnings', []):
                self.get_logger().warning(message)
            # An injected masker keeps its detector, scale policy and seed; the live
            # settings are the node's.
            masker.update(masker.settings.with_live_from(self._settings))
        self._masker = masker
        self.get_logger().info('face detector: %s on %s' % (masker.backend, masker.provider))
        self._weakenings = self._settings.privacy_weakenings()
        self._log_weakenings()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._create_topics()
        self._last_diag = (time.monotonic(), 0, 0)
        self._diag_timer = self.create_timer(float(self._values['diagnostics_period']),
                                             self._publish_diagnostics)
        # rclpy's signal handler shuts the context down before destroy_node runs: stop the
        # worker first, so that it never publishes through a dead context.
        self.context.on_shutdown(self._stop_worker)
        self._worker = threading.Thread(target=self._worker_loop, name='anonymizer-worker',
                                        daemon=True)
        self._worker.start()
        self._warmup_thread = threading.Thread(target=self._warm_up, name='anonymizer-warmup',
                                               daemon=True)
        self._warmup_thread.start()

    # -- setup ------------------------------------------------------------------------------
    def _declare_parameters(self) -> Dict[str, Any]:
        values: Dict[str, Any] = {}
        problems: List[str] = []
        for spec in params.PARAMETERS:
            try:
                value: Any = self.declare_parameter(spec.name, spec.default,
                                                    _descriptor(spec)).value
            except Exception as exc:  # noqa: BLE001 - rclpy raises several exception types
                hint = (' (write a decimal point, e.g. 1.0)'
                        if spec.type_name == 'double' and 'INTEGER' in str(exc) else '')
                problems.append('%s: %s%s' % (spec.name, exc, hint))
                continue
            reason = params.validate(spec.name, value)
            if reason is not None:
                problems.append(reason)
                continue
            values[spec.name] = params.coerce(spec.name, value)
        if problems:
            raise ValueError('invalid parameters: ' + '; '.join(problems))
        return values

    def _install_log_forwarder(self) -> None:
        core = logging.getLogger('av_privacy_ros')
        self._forwarder = _LogForwarder(self)
        self._core_propagate = core.propagate
        core.addHandler(self._forwarder)
        core.propagate = False
        if core.level == logging.NOTSET:
            core.setLevel(logging.INFO)

    def _qos(self, prefix: str) -> QoSProfile:
        reliability = (ReliabilityPolicy.RELIABLE
                       if self._values['qos.%s_reliability' % prefix] == 'reliable'
                       else ReliabilityPolicy.BEST_EFFORT)
        return QoSProfile(history=HistoryPolicy.KEEP_LAST,
                          depth=int(self._values['qos.%s_depth' % prefix]),
                          reliability=reliability, durability=DurabilityPolicy.VOLATILE)

    def _create_topics(self) -> None:
        in_qos, out_qos = self._qos('input'), self._qos('output')
        self._use_depth = bool(self._values['use_depth'])
        self._pub_image = self.create_publisher(Image, 'image_anonymized', out_qos)
        self._pub_mask = self.create_publisher(Image, 'mask', out_qos)
        self._pub_depth = (self.create_publisher(Image, 'depth_anonymized', out_qos)
                           if self._use_depth else None)
        self._pub_diag = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._pairer: Optional[ApproximateTimePairer] = None
        self._subscriptions_kept: List[Any] = [self.create_subscription(
            CameraInfo, 'camera_info', self._on_camera_info, in_qos)]
        self._focal_px = 0.0
        if not self._use_depth:
            self._subscriptions_kept.append(self.create_subscription(
                Image, 'image', self._on_image_only, in_qos))
            self._sync_kind = 'colour only'
            return
        queue_size = int(self._values['sync.queue_size'])
        slop = float(self._values['sync.slop'])
        self._slop = slop
        self._newest_stamp: List[Optional[float]] = [None, None]
        self._filter_sync: Any = None
        if self._values['sync.pairer'] != 'builtin' and ApproximateTimeSynchronizer is not None:
            image_sub = FilterSubscriber(self, Image, 'image', qos_profile=in_qos)
            depth_sub = FilterSubscriber(self, Image, 'depth', qos_profile=in_qos)
            # Registered before the synchronizer, so these run before it sees each message.
            image_sub.registerCallback(self._count_image_for_filter)
            depth_sub.registerCallback(self._count_depth_for_filter)
            sync = ApproximateTimeSynchronizer([image_sub, depth_sub], queue_size, slop)
            sync.registerCallback(self._on_pair)
            self._filter_sync = sync
            self._subscriptions_kept += [image_sub, depth_sub, sync]
            self._sync_kind = 'message_filters'
        else:
            self._pairer = ApproximateTimePairer(callback=self._on_pair,
                                                 queue_size=queue_size, slop=slop)
            self._subscriptions_kept.append(self.create_subscription(
                Image, 'image', self._on_image_for_pairer, in_qos))
            self._subscriptions_kept.append(self.create_subscription(
                Image, 'depth', self._on_depth_for_pairer, in_qos))
            self._sync_kind = 'av_privacy_ros.sync'

    # -- parameters -------------------------------------------------------------------------
    def _on_set_parameters(self, parameters: List[Parameter]) -> SetParametersResult:
        """Validate live changes and apply them to the masker; reject with a reason."""
        new = dict(self._values)
        changed_names = []
        for parameter in parameters:
            if parameter.name not in params.PARAMETERS_BY_NAME:
                continue  # e.g. use_sim_time: not ours to judge
            reason = params.validate(parameter.name, parameter.value)
            if reason is not None:
                return SetParametersResult(successful=False, reason=reason)
            new[parameter.name] = params.coerce(parameter.name, parameter.value)
            changed_names.append(parameter.name)
        if not changed_names:
            return SetParametersResult(successful=True)
        problem = combination_problem(new)
        if problem:
            return SetParametersResult(successful=False, reason=problem)
        try:
            settings = PipelineSettings.from_values(new)
            if settings != self._settings:
                self._masker.update(self._masker.settings.with_live_from(settings))
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        self._values = new
        self._settings = settings
        self._fail_mode = str(new['fail_mode'])
        for name in changed_names:
            self.get_logger().info('parameter %s set to %r' % (name, new[name]))
        weakenings = settings.privacy_weakenings()
        if weakenings != self._weakenings:
            self._weakenings = weakenings
            self._log_weakenings()
        return SetParametersResult(successful=True)

    def _log_weakenings(self) -> None:
        """Log every setting that weakens privacy (at start and after each live change)."""
        for sentence in self._weakenings:
            self.get_logger().warning('privacy weakened: %s' % sentence)

    # -- input callbacks (executor thread) --------------------------------------------------
    def _count_image(self, _msg: Image) -> None:
        with self._stats.lock:
            self._stats.images_received += 1
            self._stats.input_arrived()

    def _count_depth(self, _msg: Image) -> None:
        with self._stats.lock:
            self._stats.depths_received += 1
            self._stats.input_arrived()

    def _count_image_for_filter(self, msg: Image) -> None:
        self._count_image(msg)
        self._guard_filter_queue(0, msg)

    def _count_depth_for_filter(self, msg: Image) -> None:
        self._count_depth(msg)
        self._guard_filter_queue(1, msg)

    def _guard_filter_queue(self, index: int, msg: Image) -> None:
        """
        Keep message_filters pairing after a jump back in time or a stamp in the future.

        Its synchronizer drops the message with the oldest stamp from a full queue: messages
        from before a jump back (a bag loop, a simulator reset) or stamped in the future would
        stay in the queue forever and, once they fill it, every new message would be dropped.
        Before the synchronizer sees a message, the queued ones of its input stamped after it
        (beyond sync.slop) are removed.
        """
        try:
            stamp = stamp_to_sec(msg.header.stamp)
        except ValueError:
            return  # the worker refuses the message and counts it
        newest = self._newest_stamp[index]
        if newest is not None and stamp < newest - self._slop:
            with self._stats.lock:
                self._stats.time_jumps += 1
        self._newest_stamp[index] = stamp
        queues = getattr(self._filter_sync, 'queues', None)
        lock = getattr(self._filter_sync, 'lock', None)
        if queues is None or lock is None:
            return  # another message_filters version: nothing to guard
        newest_kept = int(round((stamp + self._slop) * 1e9)) + 1000
        with lock:
            removed = prune_newer(queues[index], newest_kept)
        if removed:
            with self._stats.lock:
                self._stats.filter_pruned += removed

    def _on_image_for_pairer(self, msg: Image) -> None:
        self._count_image(msg)
        self._feed_pairer(0, msg)

    def _on_depth_for_pairer(self, msg: Image) -> None:
        self._count_depth(msg)
        self._feed_pairer(1, msg)

    def _feed_pairer(self, index: int, msg: Image) -> None:
        assert self._pairer is not None
        try:
            stamp = stamp_to_sec(msg.header.stamp)
            self._pairer.add(index, stamp, msg)
        except ValueError as exc:
            self._input_error(exc)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        """Give the masker the focal length (tracking.walking_speed needs it)."""
        try:
            focal = float(msg.k[0])
        except (IndexError, TypeError, ValueError):
            return
        if not focal > 0 or abs(focal - self._focal_px) < 1e-6:
            return
        self._focal_px = focal
        try:
            self._masker.set_focal_length(focal)
        except ValueError as exc:  # e.g. an infinite focal length
            self.get_logger().debug('focal length not used: %s' % exc)
            return
        self.get_logger().info('camera_info: focal length %.1f px' % focal)

    def _on_image_only(self, msg: Image) -> None:
        self._count_image(msg)
        self._on_pair(msg, None)

    def _on_pair(self, image: Image, depth: Optional[Image]) -> None:
        """Keep only the newest pair for the worker; a pair it did not take yet is dropped."""
        now = time.monotonic()
        with self._cond:
            with self._stats.lock:
                self._stats.frames_in += 1
                if self._pending is not None:
                    self._stats.dropped_busy += 1
            self._pending = (image, depth, now)
            self._cond.notify()

    # -- worker thread ----------------------------------------------------------------------
    def _warm_up(self) -> None:
        try:
            seconds = self._masker.warmup(*WARMUP_SIZE)
        except Exception as exc:  # noqa: BLE001 - any failure keeps the node fail-closed
            self._warmup_error = '%s: %s' % (type(exc).__name__, exc)
            self.get_logger().error(
                'detector warm-up failed (%s); every frame will be anonymized over its whole '
                'area (fail_mode %s)' % (self._warmup_error, self._fail_mode))
        else:
            self._ready = True
            self.get_logger().info('detector warm-up took %.2f s; anonymizing faces' % seconds)
        if not self._stop.is_set():
            try:
                self._publish_diagnostics()
            except Exception as exc:  # noqa: BLE001 - the node was destroyed meanwhile
                self.get_logger().debug('diagnostics after warm-up not published: %s' % exc)

    def _worker_loop(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._stop.is_set():
                    self._cond.wait(0.5)
                if self._stop.is_set():
                    return
                image, depth, received = self._pending  # type: ignore[misc]
                self._pending = None
            started = time.monotonic()
            try:
                self._process_pair(image, depth, received, started)
            except Exception as exc:  # noqa: BLE001 - the worker must survive any frame
                if self._stop.is_set() or not self.context.ok():
                    return  # shutting down: publishing through a dead context is expected
                self._count_error('publish_errors', exc)
                self.get_logger().error('frame not published: %s: %s'
                                        % (type(exc).__name__, exc),
                                        throttle_duration_sec=LOG_THROTTLE_S)

    def _process_pair(self, image: Image, depth_msg: Optional[Image], received: float,
                      started: float) -> None:
        try:
            stamp_to_sec(image.header.stamp)  # message_filters lets nanosec >= 1e9 through
            bgr, encoding = image_to_bgr(image)
            depth = None
            depth_encoding = ''
            if depth_msg is not None:
                stamp_to_sec(depth_msg.header.stamp)
                depth_encoding = canonical_encoding(depth_msg.encoding)
                depth = image_to_depth(depth_msg)
        except ValueError as exc:
            self._input_error(exc)
            return
        result: Optional[FrameResult]
        if not self._ready:
            reason = self._warmup_error or 'detector warm-up not finished'
            result = self._fail_closed(bgr, depth, reason)
        else:
            try:
                result = self._masker.process(bgr, depth)  # mask shape from its settings
            except ValueError as exc:  # input checks (e.g. depth size differs from colour)
                self._input_error(exc)
                return
            except Exception as exc:  # noqa: BLE001 - fail closed on anything else
                result = self._fail_closed(bgr, depth, '%s: %s' % (type(exc).__name__, exc))
            else:
                if result.failed_closed:  # the masker logged why (forwarded, throttled)
                    self._count_error('failed_closed', result.error)
                    if self._fail_mode == 'drop':
                        result = None
        if result is None:
            return
        self._publish(result, image, depth_msg, encoding, depth_encoding, received, started)

    def _fail_closed(self, bgr: np.ndarray, depth: Optional[np.ndarray],
                     reason: str) -> Optional[FrameResult]:
        """Return the whole-frame anonymized result, or None with ``fail_mode: drop``."""
        self._count_error('failed_closed', reason)
        if self._fail_mode == 'drop':
            return None
        try:
            return self._masker.anonymize_whole_frame(bgr, depth, error=reason)
        except Exception as exc:  # noqa: BLE001 - publish nothing rather than raw pixels
            self.get_logger().error('whole-frame anonymization failed, frame dropped: %s' % exc,
                                    throttle_duration_sec=LOG_THROTTLE_S)
            return None

    def _publish(self, result: FrameResult, image: Image, depth_msg: Optional[Image],
                 encoding: str, depth_encoding: str, received: float, started: float) -> None:
        height, width = result.image.shape[:2]
        # Convert everything first, so a conversion error publishes nothing at all.  The
        # outputs keep the inputs' row padding (step) and byte order.
        image_fields = bgr_to_image_fields(result.image, encoding, step=image.step)
        image_big = 1 if image.is_bigendian else 0
        mask_fields = mask_to_mono8_fields(result.mask)
        depth_fields = None
        depth_big = 0
        if depth_msg is not None and self._pub_depth is not None and result.depth is not None:
            depth_big = 1 if depth_msg.is_bigendian else 0
            depth_fields = depth_to_image_fields(result.depth, depth_encoding,
                                                 step=depth_msg.step, big_endian=bool(depth_big))
        if self._stop.is_set():
            return  # shutting down: the publishers' context may already be gone
        self._pub_image.publish(fill_image_msg(Image(), image.header, height, width,
                                               *image_fields, is_bigendian=image_big))
        if depth_fields is not None and depth_msg is not None and self._pub_depth is not None:
            self._pub_depth.publish(fill_image_msg(Image(), depth_msg.header, height, width,
                                                   *depth_fields, is_bigendian=depth_big))
        self._pub_mask.publish(fill_image_msg(Image(), image.header, height, width,
                                              *mask_fields))
        published = time.monotonic()
        latency = published - received
        with self._stats.lock:
            self._stats.output_published(
                published, latency, published - started,
                None if result.failed_closed else float(result.times.get('detect', 0.0)),
                len(result.detections),
                [(track.track_id, track.source) for track in result.tracks])

    # -- counting, logging, diagnostics -----------------------------------------------------
    def _count_error(self, counter: str, error: Any) -> None:
        self._stats.count_error(counter, error)

    def _input_error(self, exc: Exception) -> None:
        self._count_error('input_errors', exc)
        self.get_logger().warning(
            'malformed input dropped, nothing published (%d so far): %s'
            % (self._stats.input_errors, exc), throttle_duration_sec=LOG_THROTTLE_S)

    def statistics(self) -> Dict[str, Any]:
        """Return the counters since start (frames in/out, drops, errors, latency p50/p95)."""
        return statistics(self._stats.snapshot(self._sync_dropped(), self._pairer_time_jumps()),
                          self._ready)

    def _sync_dropped(self) -> int:
        if self._pairer is not None:
            return self._pairer.dropped
        with self._stats.lock:
            return self._stats.filter_pruned  # message_filters does not count its own drops

    def _pairer_time_jumps(self) -> int:
        return self._pairer.time_jumps if self._pairer is not None else 0

    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        snapshot = self._stats.snapshot(self._sync_dropped(), self._pairer_time_jumps(),
                                        new_period=True)
        last_time, last_in, last_out = self._last_diag
        self._last_diag = (now, snapshot.frames_in, snapshot.frames_out)
        elapsed = max(now - last_time, 1e-6)
        findings: List[Tuple[int, str]] = []
        if self._warmup_error:
            findings.append((ERROR, (
                'detector failed (%s); frames are anonymized over their whole area'
                % self._warmup_error)))
        elif not self._ready:
            findings.append((WARN, 'detector warming up; frames fail closed'))
        stall = self._stats.stall_reason(now, float(self._values['diagnostics_period']),
                                         self._fail_mode, self._use_depth,
                                         float(self._values['sync.slop']))
        if stall:
            findings.append((WARN, stall))
        for sentence in self._weakenings:
            findings.append((WARN, 'privacy weakened: ' + sentence))
        level_number, message = diagnostic_level(findings)
        level = bytes([level_number])
        state = NodeState(self._masker.backend, self._masker.provider, self._ready,
                          self._sync_kind, self._fail_mode, self._focal_px,
                          len(self._weakenings))
        values = diagnostic_values(snapshot, state, (snapshot.frames_in - last_in) / elapsed,
                                   (snapshot.frames_out - last_out) / elapsed, rss_mb())
        status = DiagnosticStatus(
            level=level, name='%s: face anonymization' % self.get_fully_qualified_name(),
            message=message, hardware_id='%s/%s' % (self._masker.backend, self._masker.provider),
            values=[KeyValue(key=key, value=value) for key, value in values])
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        try:
            self._pub_diag.publish(array)
        except Exception as exc:  # noqa: BLE001 - e.g. publishing during shutdown
            self.get_logger().debug('diagnostics not published: %s' % exc)

    # -- shutdown ---------------------------------------------------------------------------
    def _stop_worker(self) -> None:
        """Stop the worker thread and wait for the frame it is publishing, if any."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout=5.0)

    def destroy_node(self) -> None:
        """Stop the worker thread, detach the log forwarder and destroy the node."""
        self._stop_worker()
        self._remove_log_forwarder()
        super().destroy_node()

    def _remove_log_forwarder(self) -> None:
        if self._forwarder is not None:
            core = logging.getLogger('av_privacy_ros')
            core.removeHandler(self._forwarder)
            core.propagate = self._core_propagate
            self._forwarder = None


def main(args: Optional[List[str]] = None) -> int:
    """Run the anonymizer node until Ctrl-C; return the exit status."""
    from rclpy import executors
    from rclpy.logging import get_logger
    # Present on Humble and newer; the fallback only keeps older installations working.
    shutdown_error = getattr(executors, 'ExternalShutdownException', KeyboardInterrupt)
    rclpy.init(args=args)
    node: Optional[AnonymizerNode] = None
    status = 0
    try:
        node = AnonymizerNode()
        rclpy.spin(node)
    except (KeyboardInterrupt, shutdown_error):
        pass
    except (ValueError, RuntimeError) as exc:
        get_logger(NODE_NAME).fatal('cannot start: %s' % exc)
        status = 2
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return status


if __name__ == '__main__':
    sys.exit(main())
