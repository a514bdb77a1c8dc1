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

from collections import deque
import logging
import os
import sys
import threading
import time
from typing import Any, Deque, Dict, List, Optional, Tuple

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
from .boxes import percentile_ms
from .image_msgs import (
    bgr_to_image_fields, canonical_encoding, depth_to_image_fields, fill_image_msg,
    image_to_bgr, image_to_depth, mask_to_mono8_fields)
from .masker import AVPrivacyMasker, FrameResult
from .sync import ApproximateTimePairer, prune_newer, stamp_to_sec

try:  # message_filters is part of a ROS install but not on PyPI.
    from message_filters import ApproximateTimeSynchronizer, Subscriber as FilterSubscriber
except ImportError:  # pragma: no cover - depends on the installation
    ApproximateTimeSynchronizer = None
    FilterSubscriber = None

NODE_NAME = 'anonymizer'
WARMUP_SIZE = (640, 480)
LOG_THROTTLE_S = 5.0
LATENCY_WINDOW = 512
STALL_S = 1.0
"""Seconds of input without any output after which /diagnostics reports WARN with a reason."""

# AVPrivacyMasker keyword arguments that only its constructor takes (read-only parameters).
_CONSTRUCTION_KEYS = frozenset((
    'backend', 'model_path', 'allow_download', 'providers', 'trt_fp16', 'trt_cache_dir',
    'det_size', 'seed'))


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


def _fmt_ms(value: Optional[float]) -> str:
    return 'n/a' if value is None else '%.1f' % value


def _rss_mb() -> Optional[float]:
    """Return the resident memory of this process in MiB (Linux), or None."""
    try:
        with open('/proc/self/statm', 'r', encoding='ascii') as handle:
            pages = int(handle.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf('SC_PAGE_SIZE') / (1024.0 * 1024.0)


class _Stats:
    """Counters and latency samples shared by the callbacks, the worker and diagnostics."""

    def __init__(self) -> None:
        self.lock = threading.RLock()  # statistics() reads the sync counters under it
        self.images_received = 0
        self.depths_received = 0
        self.frames_in = 0
        self.frames_out = 0
        self.dropped_busy = 0
        self.failed_closed = 0
        self.input_errors = 0
        self.publish_errors = 0
        self.latencies: Deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.detect_times: Deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.process_times: Deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.period_latencies: List[float] = []
        self.faces = 0
        self.tracks = 0
        self.tracks_held = 0
        self.track_sources = ''
        self.last_error = ''
        self.time_jumps = 0
        self.filter_pruned = 0
        # Stall detection: when the last output left, when input first arrived after it, and
        # the counters at the last output (what changed since tells why nothing is published).
        self.last_output = time.monotonic()
        self.last_input = 0.0
        self.first_input_since_output: Optional[float] = None
        self.at_last_output: Dict[str, int] = {}

    def counters(self) -> Dict[str, int]:
        """Return the counters that explain a stall (call with the lock held)."""
        return {'images': self.images_received, 'depths': self.depths_received,
                'pairs': self.frames_in, 'input_errors': self.input_errors,
                'failed_closed': self.failed_closed}

    def input_arrived(self) -> None:
        """Note that an input message arrived now (call with the lock held)."""
        now = time.monotonic()
        self.last_input = now
        if self.first_input_since_output is None:
            self.first_input_since_output = now


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
        self._stats = _Stats()
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
        self._process_kwargs = params.process_kwargs(self._values)
        self._install_log_forwarder()
        if masker is None:
            try:
                masker = AVPrivacyMasker(**params.masker_kwargs(self._values))
            except Exception:
                self._remove_log_forwarder()
                raise
        else:
            for message in getattr(masker, 'warnings', []):
                self.get_logger().warning(message)
            self._apply_live_settings(masker)
        self._masker = masker
        self.get_logger().info('face detector: %s on %s' % (masker.backend, masker.provider))
        self._weakenings = params.privacy_weakenings(self._values)
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

    def _apply_live_settings(self, masker: AVPrivacyMasker) -> None:
        """Give an injected masker the node's live settings (those it can change)."""
        kwargs = params.masker_kwargs(self._values)
        for name, value in kwargs.items():
            if name in _CONSTRUCTION_KEYS:
                continue
            try:
                masker.configure(**{name: value})
            except ValueError as exc:
                self.get_logger().warning('injected masker keeps its own %s: %s' % (name, exc))

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
        old_kwargs = params.masker_kwargs(self._values)
        new_kwargs = params.masker_kwargs(new)
        settings = {name: value for name, value in new_kwargs.items()
                    if old_kwargs.get(name) != value}
        if settings:
            try:
                self._masker.configure(**settings)
            except ValueError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
        self._values = new
        self._process_kwargs = params.process_kwargs(new)
        self._fail_mode = str(new['fail_mode'])
        for name in changed_names:
            self.get_logger().info('parameter %s set to %r' % (name, new[name]))
        weakenings = params.privacy_weakenings(new)
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
            self._masker.configure(focal_px=focal)
        except ValueError as exc:  # a masker without walking-speed growth
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
                result = self._masker.process(bgr, depth, **self._process_kwargs)
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
            stats = self._stats
            stats.last_output = published
            stats.first_input_since_output = None
            stats.at_last_output = stats.counters()
            stats.frames_out += 1
            stats.latencies.append(latency)
            stats.period_latencies.append(latency)
            stats.process_times.append(published - started)
            if not result.failed_closed:
                stats.detect_times.append(float(result.times.get('detect', 0.0)))
            stats.faces = len(result.detections)
            stats.tracks = len(result.tracks)
            stats.tracks_held = result.held_count
            # Track ids and where each masked box came from, e.g. '3:detected 5:held'.
            stats.track_sources = ' '.join('%d:%s' % (track.track_id, track.source)
                                           for track in result.tracks)

    # -- counting, logging, diagnostics -----------------------------------------------------
    def _count_error(self, counter: str, error: Any) -> None:
        with self._stats.lock:
            setattr(self._stats, counter, getattr(self._stats, counter) + 1)
            self._stats.last_error = str(error or '')

    def _input_error(self, exc: Exception) -> None:
        self._count_error('input_errors', exc)
        self.get_logger().warning(
            'malformed input dropped, nothing published (%d so far): %s'
            % (self._stats.input_errors, exc), throttle_duration_sec=LOG_THROTTLE_S)

    def statistics(self) -> Dict[str, Any]:
        """Return the counters since start (frames in/out, drops, errors, latency p50/p95)."""
        with self._stats.lock:
            stats = self._stats
            latencies = list(stats.latencies)
            detect = list(stats.detect_times)
            process = list(stats.process_times)
            result: Dict[str, Any] = {
                'ready': self._ready,
                'images_received': stats.images_received,
                'depths_received': stats.depths_received,
                'frames_in': stats.frames_in,
                'frames_out': stats.frames_out,
                'frames_dropped': stats.dropped_busy + self._sync_dropped(),
                'dropped_busy': stats.dropped_busy,
                'failed_closed': stats.failed_closed,
                'input_errors': stats.input_errors,
                'publish_errors': stats.publish_errors,
                'faces': stats.faces,
                'tracks': stats.tracks,
                'tracks_held': stats.tracks_held,
                'track_sources': stats.track_sources,
                'last_error': stats.last_error,
            }
        result['latency_p50_ms'] = percentile_ms(latencies, 50)
        result['latency_p95_ms'] = percentile_ms(latencies, 95)
        result['detect_p50_ms'] = percentile_ms(detect, 50)
        result['process_p50_ms'] = percentile_ms(process, 50)
        return result

    def _sync_dropped(self) -> int:
        if self._pairer is not None:
            return self._pairer.dropped
        with self._stats.lock:
            return self._stats.filter_pruned  # message_filters does not count its own drops

    def _time_jumps(self) -> int:
        with self._stats.lock:
            jumps = self._stats.time_jumps
        return jumps + (self._pairer.time_jumps if self._pairer is not None else 0)

    def _stall_reason(self, now: float) -> Optional[str]:
        """
        Return why nothing was published for STALL_S while input arrives, or None.

        Compares the counters with those at the last output: which inputs arrived, whether they
        were paired, refused as malformed, or failed closed with fail_mode drop.
        """
        with self._stats.lock:
            stats = self._stats
            first = stats.first_input_since_output
            if first is None or now - first < STALL_S:
                return None
            if now - stats.last_input > max(STALL_S, float(self._values['diagnostics_period'])):
                return None  # the input stopped: idle, not stalled
            current = stats.counters()
            before = stats.at_last_output
            last_error = stats.last_error
            silent_s = now - max(stats.last_output, 0.0)
        delta = {name: value - before.get(name, 0) for name, value in current.items()}
        if delta['input_errors'] > 0:
            why = 'the inputs are malformed and dropped (%s)' % last_error[:160]
        elif delta['pairs'] > 0 and delta['failed_closed'] > 0 and self._fail_mode == 'drop':
            why = ('frames fail closed (%s) and fail_mode is drop'
                   % (last_error[:160] or 'detector warm-up not finished'))
        elif delta['pairs'] > 0:
            why = ('frames arrive but are not processed: the worker is stuck or takes more '
                   'than %.0f s a frame' % STALL_S)
        elif self._use_depth and delta['images'] > 0 and delta['depths'] == 0:
            why = 'colour images arrive but no depth image (use_depth is true)'
        elif self._use_depth and delta['depths'] > 0 and delta['images'] == 0:
            why = 'depth images arrive but no colour image'
        elif self._use_depth:
            why = ('colour and depth images arrive but are not paired: their stamps differ by '
                   'more than sync.slop (%g s); check that depth is aligned and stamped like '
                   'colour' % self._slop)
        else:
            why = 'images arrive but none was processed'
        return 'nothing published for %.1f s while input arrives: %s' % (
            min(silent_s, now - first), why)

    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        with self._stats.lock:
            stats = self._stats
            period = stats.period_latencies
            stats.period_latencies = []
            frames_in, frames_out = stats.frames_in, stats.frames_out
            images = stats.images_received
            last_time, last_in, last_out = self._last_diag
            self._last_diag = (now, frames_in, frames_out)
            detect = list(stats.detect_times)[-64:]
            process = list(stats.process_times)[-64:]
            snapshot = {
                'dropped_busy': stats.dropped_busy, 'failed_closed': stats.failed_closed,
                'input_errors': stats.input_errors, 'publish_errors': stats.publish_errors,
                'faces': stats.faces, 'tracks': stats.tracks, 'tracks_held': stats.tracks_held,
                'track_sources': stats.track_sources,
                'depths': stats.depths_received, 'last_error': stats.last_error}
        elapsed = max(now - last_time, 1e-6)
        in_fps = (frames_in - last_in) / elapsed
        out_fps = (frames_out - last_out) / elapsed
        sync_dropped = self._sync_dropped()
        findings: List[Tuple[int, str]] = []
        if self._warmup_error:
            findings.append((ord(DiagnosticStatus.ERROR), (
                'detector failed (%s); frames are anonymized over their whole area'
                % self._warmup_error)))
        elif not self._ready:
            findings.append((ord(DiagnosticStatus.WARN),
                             'detector warming up; frames fail closed'))
        stall = self._stall_reason(now)
        if stall:
            findings.append((ord(DiagnosticStatus.WARN), stall))
        for sentence in self._weakenings:
            findings.append((ord(DiagnosticStatus.WARN), 'privacy weakened: ' + sentence))
        if findings:
            level = bytes([max(found_level for found_level, _ in findings)])
            message = '; '.join(text for _, text in findings)
        else:
            level, message = DiagnosticStatus.OK, 'anonymizing faces'
        values = [
            ('backend', self._masker.backend),
            ('provider', self._masker.provider),
            ('ready', str(self._ready)),
            ('sync', self._sync_kind),
            ('input_fps', '%.1f' % in_fps),
            ('output_fps', '%.1f' % out_fps),
            ('latency_p50_ms', _fmt_ms(percentile_ms(period, 50))),
            ('latency_p95_ms', _fmt_ms(percentile_ms(period, 95))),
            ('detect_p50_ms', _fmt_ms(percentile_ms(detect, 50))),
            ('process_p50_ms', _fmt_ms(percentile_ms(process, 50))),
            ('frames_in', str(frames_in)),
            ('frames_out', str(frames_out)),
            ('frames_dropped', str(snapshot['dropped_busy'] + sync_dropped)),
            ('dropped_busy', str(snapshot['dropped_busy'])),
            ('dropped_unpaired', str(sync_dropped)),
            ('time_jumps', str(self._time_jumps())),
            ('privacy_weakened', str(len(self._weakenings))),
            ('failed_closed', str(snapshot['failed_closed'])),
            ('input_errors', str(snapshot['input_errors'])),
            ('publish_errors', str(snapshot['publish_errors'])),
            ('images_received', str(images)),
            ('depths_received', str(snapshot['depths'])),
            ('faces', str(snapshot['faces'])),
            ('fail_mode', self._fail_mode),
            ('focal_px', '%.1f' % self._focal_px),
        ]
        values += [('tracks', str(snapshot['tracks'])),
                   ('tracks_held', str(snapshot['tracks_held'])),
                   ('track_sources', snapshot['track_sources'])]
        rss = _rss_mb()
        if rss is not None:
            values.append(('rss_mb', '%.1f' % rss))
        if snapshot['last_error']:
            values.append(('last_error', snapshot['last_error'][:200]))
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
