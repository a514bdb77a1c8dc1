"""
Shared pieces of the anonymizer node tests: isolated DDS, a node process, a test-side client.

Every test process gets its own ``ROS_DOMAIN_ID`` (from its pid), discovery limited to this
machine, the repository's Fast DDS profile (16 MB shared memory, so 640×480 frames are not
dropped), and its own namespace so that two test processes never see each other's topics.
Nothing here sleeps a fixed time: every wait polls a condition with a timeout.
"""

from __future__ import annotations

import os
from pathlib import Path
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from av_privacy_ros.image_msgs import image_to_bgr, image_to_depth
from av_privacy_ros.sample_camera import depth_message, FRAME_ID, image_message, SampleFrames
from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
from rcl_interfaces.srv import GetParameters, SetParameters
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter, parameter_value_to_python
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from weights import scrfd_weights

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / 'config' / 'fastdds_large_frames.xml'
DOMAIN_ID = 101 + os.getpid() % 100
NAMESPACE_PREFIX = '/avp_test_%d' % os.getpid()

# Read by rclpy.init in this process and inherited by the node processes.
os.environ['ROS_DOMAIN_ID'] = str(DOMAIN_ID)
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ.setdefault('FASTDDS_DEFAULT_PROFILES_FILE', str(PROFILE))
os.environ.setdefault('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp')

Stamp = Tuple[int, int]


def have_scrfd() -> bool:
    """Return whether SCRFD weights are found (where the tools look, or ../shared/models)."""
    return scrfd_weights() is not None


def scrfd_path() -> Optional[str]:
    """Return the SCRFD weights file, or None when they are absent."""
    path = scrfd_weights()
    return None if path is None else str(path)


def subprocess_env() -> Dict[str, str]:
    """Return the environment of node and camera processes (SCRFD weights when present)."""
    env = dict(os.environ)
    path = scrfd_weights()
    if path is not None:
        env.setdefault('AV_PRIVACY_MODELS', str(path.parent))
    return env


def backend() -> str:
    """Return the detector backend the tests use: SCRFD (fast) when present, else CenterFace."""
    return 'scrfd' if have_scrfd() else 'centerface'


def key(stamp: Any) -> Stamp:
    """Return a hashable (sec, nanosec) key of a header stamp."""
    return int(stamp.sec), int(stamp.nanosec)


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.01) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds passed; return its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


class NodeProcess:
    """The real ``anonymizer_node`` in its own process, in namespace ``namespace``."""

    def __init__(self, namespace: str, parameters: Dict[str, Any],
                 extra_args: Sequence[str] = ()) -> None:
        """Start the node with ``-p name:=value`` for every parameter."""
        self.namespace = namespace
        self.log_file = tempfile.NamedTemporaryFile(prefix='anonymizer_', suffix='.log',
                                                    delete=False)
        command = [sys.executable, '-m', 'av_privacy_ros.node', '--ros-args',
                   '-r', '__ns:=' + namespace]
        for name, value in parameters.items():
            if isinstance(value, bool):
                text = 'true' if value else 'false'
            else:
                text = str(value)
            command += ['-p', '%s:=%s' % (name, text)]
        command += list(extra_args)
        self.process = subprocess.Popen(command, stdout=self.log_file,
                                        stderr=subprocess.STDOUT, cwd=str(REPO),
                                        env=subprocess_env())

    @property
    def pid(self) -> int:
        """Return the process id."""
        return self.process.pid

    def alive(self) -> bool:
        """Return whether the node process is still running."""
        return self.process.poll() is None

    def log(self) -> str:
        """Return what the node printed so far."""
        return Path(self.log_file.name).read_text(encoding='utf-8', errors='replace')

    def stop(self, timeout: float = 10.0) -> Optional[int]:
        """Stop the node with SIGINT (Ctrl-C), then SIGKILL; return its exit status."""
        if self.alive():
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        self.log_file.close()
        return self.process.returncode


class Received:
    """Outputs of one node, keyed by stamp, with the wall-clock time they arrived."""

    def __init__(self) -> None:
        """Start empty."""
        self.lock = threading.Lock()
        self.images: Dict[Stamp, Image] = {}
        self.masks: Dict[Stamp, Image] = {}
        self.depths: Dict[Stamp, Image] = {}
        self.inputs: Dict[Stamp, Image] = {}
        self.input_depths: Dict[Stamp, Image] = {}
        self.arrivals: List[Tuple[Stamp, float]] = []
        self.image_count = 0
        self.diagnostics: List[Dict[str, str]] = []


class AnonymizerClient:
    """A node in the test process that feeds an anonymizer and records what it publishes."""

    def __init__(self, namespace: str, keep_messages: bool = True,
                 listen_inputs: bool = False) -> None:
        """Create a context, a node, publishers, subscriptions and a spinning thread."""
        self.namespace = namespace
        self.keep_messages = keep_messages
        self.context = Context()
        rclpy.init(context=self.context, domain_id=DOMAIN_ID)
        self.node = Node('anonymizer_test_client', namespace=namespace, context=self.context)
        self.received = Received()
        self.fqn = namespace.rstrip('/') + '/anonymizer'
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        keep_all = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_image = self.node.create_publisher(Image, 'image', reliable)
        self.pub_depth = self.node.create_publisher(Image, 'depth', reliable)
        self._subs = [
            self.node.create_subscription(Image, 'image_anonymized', self._on_image, keep_all),
            self.node.create_subscription(Image, 'mask', self._on_mask, keep_all),
            self.node.create_subscription(Image, 'depth_anonymized', self._on_depth, keep_all),
            self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, 50),
        ]
        if listen_inputs:
            self._subs.append(self.node.create_subscription(Image, 'image', self._on_input,
                                                            keep_all))
            self._subs.append(self.node.create_subscription(Image, 'depth',
                                                            self._on_input_depth, keep_all))
        self.set_client = self.node.create_client(SetParameters,
                                                  self.fqn + '/set_parameters')
        self.get_client = self.node.create_client(GetParameters,
                                                  self.fqn + '/get_parameters')
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

    def close(self) -> None:
        """Shut the client down."""
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)
        self._thread.join(timeout=2.0)

    # -- recording --------------------------------------------------------------------------
    def _store(self, table: Dict[Stamp, Image], msg: Image) -> None:
        if self.keep_messages:
            with self.received.lock:
                table[key(msg.header.stamp)] = msg

    def _on_image(self, msg: Image) -> None:
        now = time.time()
        with self.received.lock:
            self.received.image_count += 1
            self.received.arrivals.append((key(msg.header.stamp), now))
        self._store(self.received.images, msg)

    def _on_mask(self, msg: Image) -> None:
        self._store(self.received.masks, msg)

    def _on_depth(self, msg: Image) -> None:
        self._store(self.received.depths, msg)

    def _on_input(self, msg: Image) -> None:
        self._store(self.received.inputs, msg)

    def _on_input_depth(self, msg: Image) -> None:
        self._store(self.received.input_depths, msg)

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith(self.fqn + ':'):
                values = {kv.key: kv.value for kv in status.values}
                values['_level'] = str(status.level[0] if isinstance(status.level, bytes)
                                       else status.level)
                values['_message'] = status.message
                with self.received.lock:
                    self.received.diagnostics.append(values)

    def last_diagnostics(self) -> Optional[Dict[str, str]]:
        """Return the newest diagnostics values of the anonymizer, or None."""
        with self.received.lock:
            return dict(self.received.diagnostics[-1]) if self.received.diagnostics else None

    def diag_count(self) -> int:
        """Return how many diagnostics messages of the anonymizer arrived."""
        with self.received.lock:
            return len(self.received.diagnostics)

    def wait_diag(self, predicate: Callable[[Dict[str, str]], bool],
                  timeout: float = 10.0) -> Dict[str, str]:
        """Wait for a diagnostics message that satisfies ``predicate``; return it."""
        start = self.diag_count()
        found: List[Dict[str, str]] = []

        def check() -> bool:
            with self.received.lock:
                for values in self.received.diagnostics[start:]:
                    if predicate(values):
                        found.append(values)
                        return True
            return False

        assert wait_until(check, timeout), 'no matching diagnostics within %.0f s; last: %s' % (
            timeout, self.last_diagnostics())
        return found[0]

    # -- connecting -------------------------------------------------------------------------
    def wait_connected(self, depth: bool = True, timeout: float = 30.0) -> None:
        """Wait until the anonymizer subscribes to our inputs and publishes its outputs."""
        def connected() -> bool:
            ok = (self.pub_image.get_subscription_count() > 0
                  and self.node.count_publishers(self.namespace + '/image_anonymized') > 0
                  and self.node.count_publishers(self.namespace + '/mask') > 0)
            if depth:
                ok = ok and (self.pub_depth.get_subscription_count() > 0
                             and self.node.count_publishers(
                                 self.namespace + '/depth_anonymized') > 0)
            return ok
        assert wait_until(connected, timeout), 'the anonymizer did not connect'

    def wait_ready(self, timeout: float = 60.0) -> Dict[str, str]:
        """Wait until the anonymizer reports that its detector finished warming up."""
        return self.wait_diag(lambda values: values.get('ready') == 'True', timeout)

    # -- sending ----------------------------------------------------------------------------
    @staticmethod
    def now_header() -> Header:
        """Return a header stamped with the wall clock and the sample camera frame id."""
        now = time.time_ns()
        header = Header(frame_id=FRAME_ID)
        header.stamp.sec = now // 1_000_000_000
        header.stamp.nanosec = now % 1_000_000_000
        return header

    def send(self, bgr: np.ndarray, depth: Optional[np.ndarray], encoding: str = 'bgr8',
             depth_encoding: str = '16UC1', header: Optional[Header] = None) -> Stamp:
        """Publish a colour (and depth) frame with one header; return its stamp key."""
        header = header or self.now_header()
        if depth is not None:
            self.pub_depth.publish(depth_message(depth, depth_encoding, header))
        self.pub_image.publish(image_message(bgr, encoding, header))
        return key(header.stamp)

    def prepare(self, bgr: np.ndarray, depth: Optional[np.ndarray], encoding: str = 'bgr8',
                depth_encoding: str = '16UC1') -> Tuple[Image, Optional[Image]]:
        """Return ready-made (colour, depth) messages to send later with send_prepared."""
        header = self.now_header()
        return (image_message(bgr, encoding, header),
                None if depth is None else depth_message(depth, depth_encoding, header))

    def send_prepared(self, image: Image, depth: Optional[Image]) -> Stamp:
        """Stamp prepared messages with the current time, publish them; return the stamp."""
        header = self.now_header()
        image.header = header
        if depth is not None:
            depth.header = header
            self.pub_depth.publish(depth)
        self.pub_image.publish(image)
        return key(header.stamp)

    def send_raw(self, image: Optional[Image], depth: Optional[Image]) -> None:
        """Publish ready-made (possibly malformed) messages."""
        if depth is not None:
            self.pub_depth.publish(depth)
        if image is not None:
            self.pub_image.publish(image)

    def wait_outputs(self, stamps: Sequence[Stamp], timeout: float = 10.0,
                     depth: bool = True) -> bool:
        """Wait until image and mask (and depth) outputs of all ``stamps`` arrived."""
        def done() -> bool:
            with self.received.lock:
                tables = [self.received.images, self.received.masks]
                if depth:
                    tables.append(self.received.depths)
                return all(s in table for s in stamps for table in tables)
        return wait_until(done, timeout)

    # -- parameters -------------------------------------------------------------------------
    def set_parameters(self, **values: Any) -> List[Any]:
        """Call the anonymizer's SetParameters service; return the results."""
        assert self.set_client.wait_for_service(timeout_sec=10.0)
        request = SetParameters.Request()
        request.parameters = [Parameter(name.replace('__', '.'), value=value).to_parameter_msg()
                              for name, value in values.items()]
        return list(self._call(self.set_client, request).results)

    def get_parameter(self, name: str) -> Any:
        """Return the value of one of the anonymizer's parameters."""
        assert self.get_client.wait_for_service(timeout_sec=10.0)
        request = GetParameters.Request(names=[name])
        return parameter_value_to_python(self._call(self.get_client, request).values[0])

    @staticmethod
    def _call(client: Any, request: Any) -> Any:
        future = client.call_async(request)
        assert wait_until(future.done, 10.0), 'service call timed out'
        return future.result()


def decode_outputs(client: AnonymizerClient,
                   stamp: Stamp) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """Return the (BGR image, bool mask, depth or None) the anonymizer published for a stamp."""
    with client.received.lock:
        image = client.received.images[stamp]
        mask_msg = client.received.masks[stamp]
        depth_msg = client.received.depths.get(stamp)
    bgr, _ = image_to_bgr(image)
    mask_raw = np.frombuffer(mask_msg.data, np.uint8).reshape(mask_msg.height, mask_msg.step)
    mask_raw = mask_raw[:, :mask_msg.width]
    assert set(np.unique(mask_raw).tolist()) <= {0, 255}, 'mask must be mono8 0/255'
    depth = image_to_depth(depth_msg) if depth_msg is not None else None
    return bgr, mask_raw == 255, depth


def face_change(before: np.ndarray, after: np.ndarray, boxes: np.ndarray) -> List[float]:
    """Return, per face box, the fraction of pixels in its inner half that changed."""
    changed = np.any(before != after, axis=2)
    fractions = []
    for x1, y1, x2, y2 in boxes:
        w, h = x2 - x1, y2 - y1
        inner = changed[int(y1 + h / 4):int(y2 - h / 4), int(x1 + w / 4):int(x2 - w / 4)]
        fractions.append(float(inner.mean()))
    return fractions


__all__ = ['SampleFrames', 'NodeProcess', 'AnonymizerClient', 'decode_outputs', 'face_change',
           'wait_until', 'backend', 'have_scrfd', 'NAMESPACE_PREFIX', 'key']
