"""
The demo behind ``make demo``: the real node and a sample camera, as separate processes, over DDS.

``python -m av_privacy_ros.demo --output demo_output`` starts ``anonymizer_node`` and
``sample_camera`` (the t1 group photo at 640×480 with a synthetic aligned depth image, 30 Hz,
a few seconds), collects their topics in this process, writes PNGs of one frame (input,
anonymized, mask, depth before and after) and prints frames in/out, FPS, latency, drops and
the detector in use (read from ``/diagnostics``).

The processes get a random ``ROS_DOMAIN_ID``, discovery limited to this machine, and the
package's Fast DDS profile (``config/fastdds_large_frames.xml``, a 16 MB shared-memory segment;
without it Fast DDS drops about half of the 640×480 frames between processes) unless
``FASTDDS_DEFAULT_PROFILES_FILE`` is already set.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import random
import signal
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .boxes import percentile_ms

PROFILE_NAME = 'fastdds_large_frames.xml'
# Node defaults except these: depth noise is off by default and turned on here so that the
# depth pictures show what it does; diagnostics come often enough for a 3 s run.
DEMO_PARAMETER_VALUES: Dict[str, Any] = {'depth.enable_noise': True, 'diagnostics_period': 0.5}
DEMO_PARAMETERS = {name: (('true' if value else 'false') if isinstance(value, bool)
                          else str(value)) for name, value in DEMO_PARAMETER_VALUES.items()}
DEMO_SETTINGS = ('node defaults, except depth.enable_noise true (default false) so that the '
                 'depth pictures show the depth noise')
PANEL_LABELS = ('input (colour from the camera)', 'anonymized (mask outlined in green)',
                'depth input (near red, far blue, black invalid)',
                'depth anonymized (noise under the mask)')


def fastdds_profile() -> Optional[Path]:
    """Return the package's Fast DDS profile (source tree or installed share folder)."""
    candidate = Path(__file__).resolve().parents[1] / 'config' / PROFILE_NAME
    if candidate.is_file():
        return candidate
    try:
        from ament_index_python.packages import get_package_share_directory
        shared = Path(get_package_share_directory('av_privacy_ros')) / 'config' / PROFILE_NAME
    except Exception:  # noqa: BLE001 - not installed as a ROS package
        return None
    return shared if shared.is_file() else None


def ros_environment(domain_id: Optional[int] = None) -> Dict[str, str]:
    """
    Return an environment for isolated demo processes.

    A random ``ROS_DOMAIN_ID`` (unless given), discovery on this machine only, and the Fast
    DDS profile unless ``FASTDDS_DEFAULT_PROFILES_FILE`` is set already.
    """
    env = dict(os.environ)
    env['ROS_DOMAIN_ID'] = str(domain_id if domain_id is not None else random.randint(1, 100))
    env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    if env.get('ROS_DISTRO') == 'humble':
        env['ROS_LOCALHOST_ONLY'] = '1'  # Humble predates ROS_AUTOMATIC_DISCOVERY_RANGE
    if not env.get('FASTDDS_DEFAULT_PROFILES_FILE'):
        profile = fastdds_profile()
        if profile is not None:
            env['FASTDDS_DEFAULT_PROFILES_FILE'] = str(profile)
    return env


def node_command(parameters: Dict[str, str], namespace: str = '') -> List[str]:
    """Return the command line that runs the anonymizer node with these parameters."""
    command = [sys.executable, '-m', 'av_privacy_ros.node', '--ros-args']
    if namespace:
        command += ['-r', '__ns:=' + namespace]
    for name, value in parameters.items():
        command += ['-p', '%s:=%s' % (name, value)]
    return command


def stop_process(process: subprocess.Popen, timeout: float = 10.0) -> Optional[int]:
    """Stop a child with SIGINT (Ctrl-C), then SIGKILL; return its exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
    return process.returncode


def colorize_depth(depth: np.ndarray, near_m: float = 0.5, far_m: float = 4.5) -> np.ndarray:
    """Return a BGR picture of a depth image (uint16 mm or float32 m); invalid pixels black."""
    metres = depth.astype(np.float32)
    if depth.dtype == np.uint16:
        metres *= 0.001
    valid = np.isfinite(metres) & (metres > 0)
    scaled = np.clip((metres - near_m) / (far_m - near_m), 0.0, 1.0)
    scaled[~valid] = 0.0
    picture = cv2.applyColorMap((255 * (1.0 - scaled)).astype(np.uint8), cv2.COLORMAP_TURBO)
    picture[~valid] = 0
    return picture


def _fmt(value: Optional[float], unit: str = ' ms') -> str:
    return 'n/a' if value is None else '%.1f%s' % (value, unit)


class Collector:
    """Subscribe to the camera and the anonymizer; keep statistics and the newest frames."""

    KEEP = 8

    def __init__(self, node: Any) -> None:
        """Create the subscriptions on ``node``."""
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.frames: Dict[str, Dict[Tuple[int, int], Any]] = {
            name: {} for name in ('image', 'depth', 'image_anonymized', 'depth_anonymized',
                                  'mask')}
        self.arrivals: Dict[str, List[Tuple[Tuple[int, int], float]]] = {
            name: [] for name in self.frames}
        self.diagnostics: List[Dict[str, str]] = []
        self.subscriptions = [
            node.create_subscription(Image, topic, self._callback(topic), qos)
            for topic in self.frames]
        self.subscriptions.append(node.create_subscription(
            DiagnosticArray, '/diagnostics', self._on_diagnostics, 20))

    def _callback(self, topic: str) -> Any:
        def store(msg: Any) -> None:
            stamp = (int(msg.header.stamp.sec), int(msg.header.stamp.nanosec))
            self.arrivals[topic].append((stamp, time.time()))
            table = self.frames[topic]
            table[stamp] = msg
            while len(table) > self.KEEP:
                del table[min(table)]
        return store

    def _on_diagnostics(self, msg: Any) -> None:
        for status in msg.status:
            if status.name.endswith(': face anonymization'):
                values = {kv.key: kv.value for kv in status.values}
                values['_message'] = status.message
                self.diagnostics.append(values)

    def ready(self) -> bool:
        """Return whether the anonymizer reported that its detector is warmed up."""
        return any(values.get('ready') == 'True' for values in self.diagnostics)

    def newest_complete(self) -> Optional[Tuple[int, int]]:
        """Return the newest stamp for which every topic has a message."""
        common = set(self.frames['image'])
        for table in self.frames.values():
            common &= set(table)
        return max(common) if common else None


def label_panel(picture: np.ndarray, text: str) -> np.ndarray:
    """Return a copy of a BGR picture with ``text`` on a dark band in its top-left corner."""
    labelled = picture.copy()
    font, scale, thickness = cv2.FONT_HERSHEY_SIMPLEX, 0.6, 1
    (width, height), baseline = cv2.getTextSize(text, font, scale, thickness)
    cv2.rectangle(labelled, (0, 0), (width + 12, height + baseline + 12), (0, 0, 0), -1)
    cv2.putText(labelled, text, (6, height + 6), font, scale, (255, 255, 255), thickness,
                cv2.LINE_AA)
    return labelled


def caption_strip(width: int, lines: Sequence[str]) -> np.ndarray:
    """Return a dark BGR strip ``width`` pixels wide holding ``lines`` of text."""
    strip = np.zeros((14 + 24 * len(lines), width, 3), np.uint8)
    for row, text in enumerate(lines):
        cv2.putText(strip, text, (8, 26 + 24 * row), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                    (255, 255, 255), 1, cv2.LINE_AA)
    return strip


def comparison_picture(original: np.ndarray, overlay: np.ndarray, depth_before: np.ndarray,
                       depth_after: np.ndarray, caption: Sequence[str]) -> np.ndarray:
    """Return the four pictures as a labelled 2×2 grid with a caption below."""
    panels = [label_panel(picture, text) for picture, text in
              zip((original, overlay, depth_before, depth_after), PANEL_LABELS)]
    grid = np.vstack([np.hstack(panels[:2]), np.hstack(panels[2:])])
    return np.vstack([grid, caption_strip(grid.shape[1], caption)])


def _write_pictures(collector: Collector, stamp: Tuple[int, int], output: Path,
                    summary: Dict[str, Any]) -> List[str]:
    from .image_msgs import image_to_bgr, image_to_depth
    frames = collector.frames
    original, _ = image_to_bgr(frames['image'][stamp])
    anonymized, _ = image_to_bgr(frames['image_anonymized'][stamp])
    mask_msg = frames['mask'][stamp]
    mask = np.frombuffer(mask_msg.data, np.uint8).reshape(mask_msg.height, mask_msg.step)
    mask = np.ascontiguousarray(mask[:, :mask_msg.width])
    depth_before = colorize_depth(image_to_depth(frames['depth'][stamp]))
    depth_after = colorize_depth(image_to_depth(frames['depth_anonymized'][stamp]))
    overlay = anonymized.copy()
    contours, _ = cv2.findContours((mask > 0).astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(overlay, contours, -1, (0, 255, 0), 2)
    caption = ['make demo: %s on %s, %dx%d, t1 sample photo, synthetic depth' % (
                   summary['backend'], summary['provider'], original.shape[1],
                   original.shape[0]),
               'settings: ' + DEMO_SETTINGS]
    pictures = {
        'input.png': original, 'anonymized.png': anonymized, 'mask.png': mask,
        'depth_input.png': depth_before, 'depth_anonymized.png': depth_after,
        'comparison.png': comparison_picture(original, overlay, depth_before, depth_after,
                                             caption)}
    for name, picture in pictures.items():
        cv2.imwrite(str(output / name), picture)
    return list(pictures)


def _number(value: Optional[str]) -> Optional[float]:
    """Return a diagnostics value as a number, None when it is missing or 'n/a'."""
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _summary(collector: Collector, published: int) -> Dict[str, Any]:
    inputs = collector.arrivals['image']
    outputs = collector.arrivals['image_anonymized']
    latencies = [arrival - (stamp[0] + stamp[1] * 1e-9) for stamp, arrival in outputs]

    def rate(arrivals: List[Tuple[Tuple[int, int], float]]) -> Optional[float]:
        if len(arrivals) < 2:
            return None
        return (len(arrivals) - 1) / max(arrivals[-1][1] - arrivals[0][1], 1e-6)

    last = collector.diagnostics[-1] if collector.diagnostics else {}
    node_p50 = [float(v['latency_p50_ms']) for v in collector.diagnostics
                if v.get('latency_p50_ms', 'n/a') != 'n/a']
    node_p95 = [float(v['latency_p95_ms']) for v in collector.diagnostics
                if v.get('latency_p95_ms', 'n/a') != 'n/a']
    return {
        'frames_published_by_camera': published,
        'frames_in': len(inputs),
        'frames_out': len(outputs),
        'input_fps': rate(inputs),
        'output_fps': rate(outputs),
        'latency_end_to_end_p50_ms': percentile_ms(latencies, 50),
        'latency_end_to_end_p95_ms': percentile_ms(latencies, 95),
        'node_latency_p50_ms': float(np.median(node_p50)) if node_p50 else None,
        'node_latency_p95_ms': max(node_p95) if node_p95 else None,
        'node_frames_in': int(last.get('frames_in', 0)),
        'node_frames_out': int(last.get('frames_out', 0)),
        'frames_dropped': int(last.get('frames_dropped', 0)),
        'failed_closed': int(last.get('failed_closed', 0)),
        'input_errors': int(last.get('input_errors', 0)),
        'backend': last.get('backend', 'unknown'),
        'provider': last.get('provider', 'unknown'),
        'detect_p50_ms': _number(last.get('detect_p50_ms')),
        'settings': DEMO_SETTINGS,
        'parameters': dict(DEMO_PARAMETER_VALUES),
    }


def _parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog='av_privacy_demo',
        description='Run the anonymizer node on a sample RGB-D camera over DDS and write '
                    'PNGs of the result.')
    parser.add_argument('--output', default='demo_output', help='output folder (demo_output)')
    parser.add_argument('--seconds', type=float, default=3.0,
                        help='seconds the camera publishes (3)')
    parser.add_argument('--rate', type=float, default=30.0, help='camera frame rate (30)')
    parser.add_argument('--domain-id', type=int, default=None,
                        help='ROS_DOMAIN_ID to use (default: a random one from 1 to 100)')
    parser.add_argument('--startup-timeout', type=float, default=120.0,
                        help='seconds to wait for the node to warm up its detector (120)')
    return parser.parse_args(list(argv))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the demo; return 0 when anonymized frames came out, 1 otherwise."""
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    env = ros_environment(args.domain_id)
    os.environ.update(env)  # this process talks on the same domain
    import rclpy
    rclpy.init(domain_id=int(env['ROS_DOMAIN_ID']))
    node = rclpy.create_node('av_privacy_demo')
    collector = Collector(node)
    print('av_privacy_ros demo: ROS_DOMAIN_ID %s, Fast DDS profile %s'
          % (env['ROS_DOMAIN_ID'], env.get('FASTDDS_DEFAULT_PROFILES_FILE', '(default)')))
    node_log = open(output / 'anonymizer.log', 'w', encoding='utf-8')
    camera_log = open(output / 'sample_camera.log', 'w', encoding='utf-8')
    anonymizer = subprocess.Popen(node_command(DEMO_PARAMETERS), env=env, stdout=node_log,
                                  stderr=subprocess.STDOUT)
    camera: Optional[subprocess.Popen] = None
    status = 1
    try:
        deadline = time.monotonic() + args.startup_timeout
        while not collector.ready():
            if anonymizer.poll() is not None or time.monotonic() > deadline:
                node_log.flush()
                print('the anonymizer did not start:\n'
                      + (output / 'anonymizer.log').read_text(encoding='utf-8')[-3000:])
                return 1
            rclpy.spin_once(node, timeout_sec=0.1)
        frames = int(round(args.seconds * args.rate))
        camera = subprocess.Popen(
            [sys.executable, '-m', 'av_privacy_ros.sample_camera', '--rate', str(args.rate),
             '--frames', str(frames), '--wait-subscribers', '2'], env=env, stdout=camera_log,
            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + args.seconds + 60.0
        while camera.poll() is None and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
        # Let the last frames and one more diagnostics message arrive.
        settle = time.monotonic()
        diagnostics_seen = len(collector.diagnostics)
        while time.monotonic() - settle < 3.0:
            done = len(collector.arrivals['image_anonymized']) >= len(collector.arrivals['image'])
            if done and len(collector.diagnostics) > diagnostics_seen:
                break
            rclpy.spin_once(node, timeout_sec=0.05)
        summary = _summary(collector, frames)
        stamp = collector.newest_complete()
        written = (_write_pictures(collector, stamp, output, summary) if stamp is not None
                   else [])
        summary['pictures'] = written
        (output / 'summary.json').write_text(json.dumps(summary, indent=2) + '\n',
                                             encoding='utf-8')
        _print_summary(summary, output)
        _print_node_warnings(output / 'anonymizer.log')
        status = 0 if summary['frames_out'] > 0 and written else 1
    finally:
        if camera is not None:
            stop_process(camera)
        stop_process(anonymizer)
        node_log.close()
        camera_log.close()
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return status


def _print_summary(summary: Dict[str, Any], output: Path) -> None:
    lost = summary['frames_in'] - summary['frames_out']
    print('detector:        %s on %s (detection p50 %s)' % (
        summary['backend'], summary['provider'], _fmt(summary['detect_p50_ms'])))
    print('settings:        ' + DEMO_SETTINGS)
    print('frames in:       %d received of %d published (%s)' % (
        summary['frames_in'], summary['frames_published_by_camera'],
        _fmt(summary['input_fps'], ' FPS')))
    print('frames out:      %d anonymized (%s)'
          % (summary['frames_out'], _fmt(summary['output_fps'], ' FPS')))
    print('latency:         camera stamp -> anonymized frame here p50 %s, p95 %s' % (
        _fmt(summary['latency_end_to_end_p50_ms']), _fmt(summary['latency_end_to_end_p95_ms'])))
    print('                 inside the node (receive -> publish) p50 %s, p95 %s' % (
        _fmt(summary['node_latency_p50_ms']), _fmt(summary['node_latency_p95_ms'])))
    print('drops:           %d dropped by the node (newest frame wins), %d without output, '
          '%d failed closed, %d malformed' % (summary['frames_dropped'], max(lost, 0),
                                              summary['failed_closed'],
                                              summary['input_errors']))
    if summary['pictures']:
        print('wrote:           %s/{%s}' % (output, ','.join(summary['pictures'])))
    else:
        print('no complete frame was received; see %s/anonymizer.log' % output)


def _print_node_warnings(log_path: Path, limit: int = 6) -> None:
    """Print the node's warnings and errors (e.g. which detector it fell back to)."""
    try:
        lines = log_path.read_text(encoding='utf-8', errors='replace').splitlines()
    except OSError:
        return
    notes: List[str] = []
    for line in lines:
        if any(level in line for level in ('[WARN]', '[ERROR]', '[FATAL]')):
            text = line.split(']: ', 1)[-1]
            if text not in notes:
                notes.append(text)
    for text in notes[:limit]:
        print('node said:       ' + text)


if __name__ == '__main__':
    sys.exit(main())
