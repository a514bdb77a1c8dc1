"""
A face the detector misses on one frame is still masked in that frame's output (node).

The node runs in this process with a real detector wrapped so that chosen calls find nothing
(a missed detection, as a turned head gives; ``AnonymizerNode(masker=...)``); frames travel
over DDS from the test client, one at a time.
"""

from __future__ import annotations

import threading
from typing import Iterator

from anonymizer_harness import (
    AnonymizerClient, backend, decode_outputs, face_change, NAMESPACE_PREFIX, scrfd_path,
    wait_until)
from av_privacy_ros.detection import create_detector, Detections, FaceDetector
from av_privacy_ros.masker import AVPrivacyMasker
from av_privacy_ros.node import AnonymizerNode
from av_privacy_ros.sample_camera import SampleFrames
import numpy as np
import pytest
from rclpy.parameter import Parameter

pytestmark = pytest.mark.timeout(180)


class MissingDetector(FaceDetector):
    """A real detector that finds nothing on the calls the test asks it to miss."""

    def __init__(self, real: object) -> None:
        """Wrap ``real`` (a SCRFD or CenterFace detector)."""
        self.real = real
        self.backend = getattr(real, 'backend')
        self.provider = getattr(real, 'provider')
        self.miss = threading.Event()

    def detect(self, bgr: np.ndarray, conf_thresh: float) -> Detections:
        """Return no face while ``miss`` is set, else what the real detector finds."""
        if self.miss.is_set():
            return Detections.empty()
        return self.real.detect(bgr, conf_thresh)


@pytest.fixture()
def client() -> Iterator[AnonymizerClient]:
    """Return a test client in its own namespace."""
    test_client = AnonymizerClient(NAMESPACE_PREFIX + '/hold')
    try:
        yield test_client
    finally:
        test_client.close()


def test_a_face_missed_on_one_frame_is_still_masked(client: AnonymizerClient) -> None:
    """With the hold on, a missed frame is masked; with hold_frames 0 the faces would show."""
    real, _ = create_detector(backend=backend(), model_path=scrfd_path(), providers=['cpu'])
    detector = MissingDetector(real)
    masker = AVPrivacyMasker(device='cpu', detector=detector, seed=5)
    node = AnonymizerNode(masker=masker, context=client.context, namespace=client.namespace,
                          parameter_overrides=[Parameter('diagnostics_period', value=0.2)])
    client.executor.add_node(node)
    frames = SampleFrames()
    try:
        client.wait_connected(depth=True)
        assert wait_until(lambda: node.statistics()['ready'], 60.0), 'no warm-up'

        def send(index: int) -> np.ndarray:
            bgr, depth = frames.frame(index)
            stamp = client.send(bgr, depth)
            assert client.wait_outputs([stamp], 20.0), 'no output for frame %d' % index
            out, mask, _ = decode_outputs(client, stamp)
            return np.array(face_change(bgr, out, frames.boxes(index)))

        assert (send(0) > 0.9).all() and (send(1) > 0.9).all()
        detector.miss.set()  # frame 2: the detector finds nothing
        held = send(2)
        assert (held > 0.9).all(), 'faces shown on the missed frame: %s' % held
        assert int(node.statistics()['tracks_held']) == len(held)
        sources = node.statistics()['track_sources'].split()
        assert len(sources) == len(held) and all(s.endswith(':held') for s in sources)
        diag = client.wait_diag(lambda v: v.get('tracks_held') == str(len(held)))
        assert diag['track_sources'].count(':held') == len(held)
        # The same miss with the hold turned off shows the faces: the hold is what masks them.
        detector.miss.clear()
        assert node.set_parameters([Parameter('tracking.hold_frames', value=0)])[0].successful
        assert (send(3) > 0.9).all()
        detector.miss.set()
        assert (send(4) < 0.1).all(), 'without the hold the missed faces are not masked'
    finally:
        client.executor.remove_node(node)
        node.destroy_node()
