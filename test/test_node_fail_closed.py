"""
Fail-closed behaviour of the anonymizer node with an injected detector fault.

The node runs in this process with a real detector wrapped so that its warm-up waits for the
test and every later detection raises (``AnonymizerNode(masker=...)``, no test hook in the
node); the frames come from the real ``sample_camera`` in another process, over DDS.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Iterator, List

from anonymizer_harness import (
    AnonymizerClient, backend, decode_outputs, NAMESPACE_PREFIX, REPO, scrfd_path,
    subprocess_env, wait_until)
from av_privacy_ros.detection import create_detector, Detections, FaceDetector
from av_privacy_ros.image_msgs import image_to_bgr, image_to_depth
from av_privacy_ros.masker import AVPrivacyMasker
from av_privacy_ros.node import AnonymizerNode
import numpy as np
import pytest
from rclpy.parameter import Parameter

pytestmark = pytest.mark.timeout(180)


class GatedFailingDetector(FaceDetector):
    """A real detector whose warm-up waits for ``gate`` and whose later calls all raise."""

    def __init__(self, real: object) -> None:
        """Wrap ``real`` (a SCRFD or CenterFace detector)."""
        self.real = real
        self.backend = getattr(real, 'backend')
        self.provider = getattr(real, 'provider')
        self.gate = threading.Event()
        self.calls = 0

    def detect(self, bgr: np.ndarray, conf_thresh: float) -> Detections:
        """Run the warm-up once the gate opens; raise on every frame after it."""
        self.calls += 1
        if self.calls == 1:
            assert self.gate.wait(60.0)
            return self.real.detect(bgr, conf_thresh)
        raise RuntimeError('injected detector failure')


@pytest.fixture()
def camera_client() -> Iterator[AnonymizerClient]:
    """Return a client that also records the camera's input frames."""
    client = AnonymizerClient(NAMESPACE_PREFIX + '/failing', listen_inputs=True)
    try:
        yield client
    finally:
        client.close()


def _assert_whole_frame_anonymized(client: AnonymizerClient, stamp: object) -> None:
    with client.received.lock:
        source = client.received.inputs[stamp]
    bgr_in, _ = image_to_bgr(source)
    out, mask, depth_out = decode_outputs(client, stamp)
    assert mask.all(), 'a failed frame must be masked over its whole area'
    changed = np.any(out != bgr_in, axis=2)
    assert changed.mean() > 0.85, 'only %.0f %% of the frame changed' % (100 * changed.mean())
    # No 40×40 tile of the original survives anywhere (a face is larger than that).
    tiles = changed[:480 // 40 * 40, :640 // 40 * 40].reshape(12, 40, 16, 40).mean(axis=(1, 3))
    assert tiles.min() > 0.5
    assert depth_out is not None
    with client.received.lock:
        depth_in = image_to_depth(client.received.input_depths[stamp])
    valid = depth_in > 0
    assert np.mean(depth_out[valid] != depth_in[valid]) > 0.8, 'depth must be noised everywhere'


def _outputs_since(client: AnonymizerClient, count: int) -> List[object]:
    with client.received.lock:
        return [s for s, _ in client.received.arrivals[count:]]


def test_detector_failure_publishes_whole_frame_anonymized_or_nothing(
        camera_client: AnonymizerClient) -> None:
    """Before warm-up and on detector errors: whole frame anonymized; fail_mode drop: nothing."""
    client = camera_client
    real, _ = create_detector(backend=backend(), model_path=scrfd_path(), providers=['cpu'])
    detector = GatedFailingDetector(real)
    masker = AVPrivacyMasker(device='cpu', detector=detector, seed=3)
    node = AnonymizerNode(masker=masker, context=client.context, namespace=client.namespace,
                          parameter_overrides=[Parameter('diagnostics_period', value=0.2)])
    client.executor.add_node(node)
    camera = subprocess.Popen(
        [sys.executable, '-m', 'av_privacy_ros.sample_camera', '--rate', '15',
         '--seconds', '60', '--wait-subscribers', '2', '--ros-args', '-r',
         '__ns:=' + client.namespace], cwd=str(REPO), env=subprocess_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # 1. Warm-up has not finished: every frame is anonymized over its whole area.
        assert wait_until(lambda: client.received.image_count >= 3, 30.0), 'no output'
        assert not node.statistics()['ready']
        diag = client.wait_diag(lambda v: v['ready'] == 'False')
        assert diag['_level'] == '1' and 'warming up' in diag['_message']
        for stamp in _outputs_since(client, 0)[:3]:
            _assert_whole_frame_anonymized(client, stamp)
        # 2. Warm-up done, but every detection raises: still whole-frame anonymized.
        detector.gate.set()
        client.wait_diag(lambda v: v['ready'] == 'True')
        count = client.received.image_count
        assert wait_until(lambda: client.received.image_count >= count + 3, 10.0)
        for stamp in _outputs_since(client, count)[:3]:
            _assert_whole_frame_anonymized(client, stamp)
        stats = node.statistics()
        assert stats['failed_closed'] >= 6 and 'injected detector failure' in stats['last_error']
        # 3. fail_mode drop: nothing at all is published, the node keeps counting.
        assert node.set_parameters([Parameter('fail_mode', value='drop')])[0].successful
        count = client.received.image_count
        before = node.statistics()
        assert wait_until(lambda: node.statistics()['frames_in'] >= before['frames_in'] + 5,
                          10.0)
        assert client.received.image_count <= count + 1  # one frame may have been in flight
        after = node.statistics()
        assert after['failed_closed'] >= before['failed_closed'] + 4
        # Input arrives, nothing is published: /diagnostics says so, and why.
        stalled = client.wait_diag(lambda v: v['_level'] == '1'
                                   and 'nothing published' in v['_message'])
        assert 'fail_mode is drop' in stalled['_message']
        assert 'injected detector failure' in stalled['_message']
    finally:
        camera.terminate()
        camera.wait(10.0)
        client.executor.remove_node(node)
        node.destroy_node()
    assert detector.calls > 1
