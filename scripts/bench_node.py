#!/usr/bin/env python3
"""
Benchmark the anonymizer node end to end through DDS at 640×480.

Starts the real ``anonymizer_node`` in its own process (random ROS domain, this machine only,
the package's Fast DDS profile) and feeds it the sample camera's RGB-D frames from this
process, in three ways:

* lockstep: the next frame is sent when the previous one came back (latency without queueing);
* window 2: at most two frames in flight (the most the node can take without dropping);
* flood: frames sent at a fixed high rate (the node drops what it cannot process).

It prints output FPS and latency (camera stamp → anonymized frame back here, and the node's own
receive → publish from ``/diagnostics``) next to the detection time measured in this process
with the same settings, and writes ``bench_output/node.json``.

Usage: ``python scripts/bench_node.py [--seconds 6] [--flood-rate 300] [--backend auto]``
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

from av_privacy_ros.boxes import percentile_ms
import numpy as np

Stamp = Tuple[int, int]


def _percentiles(samples: List[float]) -> Tuple[Optional[float], Optional[float]]:
    return percentile_ms(samples, 50), percentile_ms(samples, 95)


def measure_in_process(backend: str, frames: Any, count: int = 60) -> Dict[str, float]:
    """Return detection and whole-pipeline times (ms) of the masker in this process."""
    from av_privacy_ros import params
    from av_privacy_ros.masker import AVPrivacyMasker
    values = params.resolve({'detector.backend': backend})
    masker = AVPrivacyMasker(**params.masker_kwargs(values))
    masker.warmup(640, 480)
    detect, total = [], []
    for index in range(count):
        bgr, depth = frames.frame(index)
        result = masker.process(bgr, depth, **params.process_kwargs(values))
        detect.append(result.times['detect'])
        total.append(result.times['total'])
    d50, d95 = _percentiles(detect)
    t50, t95 = _percentiles(total)
    return {'backend': masker.backend, 'provider': masker.provider, 'detect_p50_ms': d50,
            'detect_p95_ms': d95, 'pipeline_p50_ms': t50, 'pipeline_p95_ms': t95}


class Feeder:
    """Publish prepared RGB-D frames to the node and time what comes back."""

    def __init__(self, domain_id: int) -> None:
        """Create a node with publishers, output subscriptions and a spinning thread."""
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
        rclpy.init(domain_id=domain_id)
        self.node = rclpy.create_node('bench_node_feeder')
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_image = self.node.create_publisher(Image, 'image', qos)
        self.pub_depth = self.node.create_publisher(Image, 'depth', qos)
        self.lock = threading.Lock()
        self.sent: Dict[Stamp, float] = {}
        self.back: Dict[Stamp, float] = {}
        self.diagnostics: List[Dict[str, str]] = []
        self._subs = [
            self.node.create_subscription(Image, 'image_anonymized', self._on_output,
                                          QoSProfile(depth=50,
                                                     reliability=ReliabilityPolicy.RELIABLE)),
            self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, 20)]
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _on_output(self, msg: Any) -> None:
        with self.lock:
            self.back[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = time.time()

    def _on_diag(self, msg: Any) -> None:
        for status in msg.status:
            if status.name.endswith(': face anonymization'):
                with self.lock:
                    self.diagnostics.append({kv.key: kv.value for kv in status.values})

    def wait(self, predicate: Any, timeout: float) -> bool:
        """Poll ``predicate`` until true or timeout; return its value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.002)
        return bool(predicate())

    def send(self, image: Any, depth: Any) -> Stamp:
        """Stamp prepared messages with the wall clock and publish them."""
        from std_msgs.msg import Header
        now = time.time_ns()
        header = Header(frame_id='camera_color_optical_frame')
        header.stamp.sec, header.stamp.nanosec = now // 1_000_000_000, now % 1_000_000_000
        image.header = header
        depth.header = header
        stamp = (header.stamp.sec, header.stamp.nanosec)
        with self.lock:
            self.sent[stamp] = now * 1e-9
        self.pub_depth.publish(depth)
        self.pub_image.publish(image)
        return stamp

    def in_flight(self, stamps: List[Stamp]) -> int:
        """Return how many of ``stamps`` have not come back."""
        with self.lock:
            return sum(1 for stamp in stamps if stamp not in self.back)

    def result(self, stamps: List[Stamp], elapsed: float) -> Dict[str, Any]:
        """Return FPS and latency of one phase."""
        with self.lock:
            latencies = [self.back[s] - self.sent[s] for s in stamps if s in self.back]
        p50, p95 = _percentiles(latencies)
        return {'sent': len(stamps), 'out': len(latencies), 'seconds': elapsed,
                'input_fps': len(stamps) / elapsed, 'output_fps': len(latencies) / elapsed,
                'latency_p50_ms': p50, 'latency_p95_ms': p95}

    def close(self) -> None:
        """Shut down."""
        import rclpy
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


def run_phase(feeder: Feeder, prepared: List[Any], seconds: float, window: int = 0,
              rate: float = 0.0) -> Dict[str, Any]:
    """Send frames for ``seconds``: at most ``window`` in flight, or at ``rate`` Hz."""
    stamps: List[Stamp] = []
    diag_start = len(feeder.diagnostics)
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if window:
            recent = stamps[-window:]
            feeder.wait(lambda: feeder.in_flight(recent) < window, 2.0)
        stamps.append(feeder.send(*prepared[len(stamps) % len(prepared)]))
        if rate:
            delay = start + len(stamps) / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    elapsed = time.monotonic() - start
    feeder.wait(lambda: feeder.in_flight(stamps[-3:]) == 0, 3.0)
    result = feeder.result(stamps, elapsed)
    with feeder.lock:
        diags = feeder.diagnostics[diag_start:]
    node_p50 = [float(d['latency_p50_ms']) for d in diags if d['latency_p50_ms'] != 'n/a']
    node_p95 = [float(d['latency_p95_ms']) for d in diags if d['latency_p95_ms'] != 'n/a']
    result['node_latency_p50_ms'] = float(np.median(node_p50)) if node_p50 else None
    result['node_latency_p95_ms'] = float(np.median(node_p95)) if node_p95 else None
    result['node_process_p50_ms'] = diags[-1].get('process_p50_ms') if diags else None
    return result


def _fmt(value: Optional[float]) -> str:
    return '   n/a' if value is None else '%6.1f' % value


def _ratio(value: Optional[float]) -> str:
    return '  n/a' if value is None else '%5.2f' % value


def main() -> int:
    """Run the benchmark and print the table; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--seconds', type=float, default=6.0, help='seconds per phase (6)')
    parser.add_argument('--flood-rate', type=float, default=300.0,
                        help='frames per second sent in the flood phase (300)')
    parser.add_argument('--backend', default='auto', choices=('auto', 'scrfd', 'centerface'))
    parser.add_argument('--output', default='bench_output', help='folder for node.json')
    args = parser.parse_args()

    from av_privacy_ros.demo import node_command, ros_environment, stop_process
    from av_privacy_ros.sample_camera import depth_message, image_message, SampleFrames
    from std_msgs.msg import Header

    frames = SampleFrames()
    print('in-process pipeline (same settings, this process) ...', flush=True)
    local = measure_in_process(args.backend, frames)
    env = ros_environment()
    os.environ.update(env)
    log = open(Path(os.environ.get('TMPDIR', '/tmp')) / 'bench_node_anonymizer.log', 'w',
               encoding='utf-8')
    node = subprocess.Popen(node_command({'detector.backend': args.backend,
                                          'diagnostics_period': '0.5'}),
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    feeder = Feeder(int(env['ROS_DOMAIN_ID']))
    results: Dict[str, Any] = {'in_process': local}
    try:
        ready = feeder.wait(lambda: any(d.get('ready') == 'True' for d in feeder.diagnostics)
                            and feeder.pub_image.get_subscription_count() > 0, 120.0)
        if not ready:
            print('the node did not start; see %s' % log.name)
            return 1
        prepared = [(image_message(bgr, 'bgr8', Header()), depth_message(depth, '16UC1',
                                                                         Header()))
                    for bgr, depth in (frames.frame(i) for i in range(8))]
        run_phase(feeder, prepared, 1.0, window=1)  # warm the path up
        for name, kwargs in (('lockstep', {'window': 1}), ('window 2', {'window': 2}),
                             ('flood', {'rate': args.flood_rate})):
            print('phase %s ...' % name, flush=True)
            results[name] = run_phase(feeder, prepared, args.seconds, **kwargs)
        with feeder.lock:
            last = dict(feeder.diagnostics[-1]) if feeder.diagnostics else {}
        results['node_last_diagnostics'] = last
    finally:
        feeder.close()
        stop_process(node)
        log.close()

    detect = local['detect_p50_ms'] or float('nan')
    print()
    print('anonymizer node, 640x480 RGB-D through DDS, %s on %s' % (local['backend'],
                                                                    local['provider']))
    print('in this process: detection p50 %.1f ms (p95 %.1f), whole pipeline p50 %.1f ms '
          '-> at most %.0f FPS from detection alone' % (
              detect, local['detect_p95_ms'], local['pipeline_p50_ms'], 1000.0 / detect))
    print('%-9s %7s %7s %7s %9s %9s %9s %9s %8s' % (
        'phase', 'in/s', 'out/s', 'out/max', 'e2e p50', 'e2e p95', 'node p50', 'node p95',
        'dropped'))
    for name in ('lockstep', 'window 2', 'flood'):
        row = results[name]
        print('%-9s %7.1f %7.1f %6.0f%% %s ms %s ms %s ms %s ms %8d' % (
            name, row['input_fps'], row['output_fps'], 100 * row['output_fps'] * detect / 1000,
            _fmt(row['latency_p50_ms']), _fmt(row['latency_p95_ms']),
            _fmt(row['node_latency_p50_ms']), _fmt(row['node_latency_p95_ms']),
            row['sent'] - row['out']))
    print('out/max: output FPS as a share of 1 / detection time; e2e: camera stamp -> '
          'anonymized frame back in this process; node: receive -> publish inside the node')
    pipeline_p95 = local['pipeline_p95_ms'] or float('nan')
    print()
    print('latency as a ratio to the in-process pipeline p95 (%.1f ms, this run); with no '
          'backlog the flood ratio stays near the lockstep one' % pipeline_p95)
    for name in ('lockstep', 'window 2', 'flood'):
        row = results[name]
        node_p95 = row['node_latency_p95_ms']
        e2e_p95 = row['latency_p95_ms']
        row['node_p95_over_pipeline_p95'] = (None if node_p95 is None
                                             else node_p95 / pipeline_p95)
        row['e2e_p95_over_pipeline_p95'] = None if e2e_p95 is None else e2e_p95 / pipeline_p95
        print('%-9s node p95 / pipeline p95 %s   e2e p95 / pipeline p95 %s' % (
            name, _ratio(row['node_p95_over_pipeline_p95']),
            _ratio(row['e2e_p95_over_pipeline_p95'])))
    print('node memory after the flood: %s MB (rss_mb in /diagnostics)'
          % results['node_last_diagnostics'].get('rss_mb', 'n/a'))
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / 'node.json').write_text(json.dumps(results, indent=2) + '\n', encoding='utf-8')
    print('wrote %s' % (output / 'node.json'))
    return 0


if __name__ == '__main__':
    sys.exit(main())
