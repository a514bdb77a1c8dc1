"""``make sample-bag``: a small real rosbag2 that anonymize_bag and evaluate_masks both run on."""

from __future__ import annotations

import csv
from pathlib import Path
import subprocess
import sys
from typing import Dict, List

from anonymizer_harness import backend, face_change, REPO, SampleFrames, subprocess_env
import numpy as np
import pytest

SCRIPT = REPO / 'scripts' / 'make_sample_bag.py'
FRAMES = 4


def _messages(bag: Path) -> Dict[str, List[bytes]]:
    """Return the raw messages of every topic of a bag, in order."""
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import get_typestore, Stores
    topics: Dict[str, List[bytes]] = {}
    with AnyReader([bag], default_typestore=get_typestore(Stores.ROS2_HUMBLE)) as reader:
        for conn, _, raw in reader.messages():
            topics.setdefault(conn.topic, []).append(bytes(raw))
    return topics


def _run(tool: str, *args: str) -> subprocess.CompletedProcess:
    """Run a tool's command line the way its console script does."""
    code = 'import sys; from av_privacy_ros.%s import main; sys.exit(main())' % tool
    return subprocess.run([sys.executable, '-c', code, *args], cwd=str(REPO),
                          env=subprocess_env(), capture_output=True, text=True, timeout=240)


@pytest.mark.timeout(300)
def test_sample_bag_is_anonymized_and_evaluated(tmp_path: Path) -> None:
    """The sample bag has faces, depth and other topics; both tools run on it as documented."""
    data = tmp_path / 'sample_data'
    made = subprocess.run([sys.executable, str(SCRIPT), '--output', str(data), '--frames',
                           str(FRAMES)], capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stdout + made.stderr
    assert 'anonymize_bag' in made.stdout and 'evaluate_masks' in made.stdout
    source = _messages(data / 'bag')
    assert {topic: len(msgs) for topic, msgs in source.items()} == {
        '/camera/color/image_raw': FRAMES, '/camera/aligned_depth_to_color/image_raw': FRAMES,
        '/camera/color/camera_info': FRAMES, '/tf_static': 1}

    anonymized = data / 'bag_anonymized'
    run = _run('bag', str(data / 'bag'), str(anonymized), '--write-masks', '--no-progress',
               '-p', 'detector.backend=%s' % backend())
    assert run.returncode == 0, run.stdout + run.stderr
    output = _messages(anonymized)
    for topic in ('/camera/color/camera_info', '/tf_static',
                  '/camera/aligned_depth_to_color/image_raw'):
        assert output[topic] == source[topic], '%s must be copied unchanged' % topic
    assert len(output['/camera/color/image_raw/mask']) == FRAMES

    from rosbags.typesys import get_typestore, Stores
    store = get_typestore(Stores.ROS2_HUMBLE)
    frames = SampleFrames()
    for index, raw in enumerate(output['/camera/color/image_raw']):
        msg = store.deserialize_cdr(raw, 'sensor_msgs/msg/Image')
        bgr = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.width, 3)
        assert min(face_change(frames.frame(index)[0], bgr, frames.boxes(index))) > 0.6, (
            'a face of sample frame %d is shown' % index)

    run = _run('evaluation', str(data / 'sessions.yaml'), '-o', str(data / 'evaluation'),
               '--no-plots')
    assert run.returncode == 0, run.stdout + run.stderr
    with open(data / 'evaluation' / 'frames.csv', encoding='utf-8') as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == FRAMES and {row['shift'] for row in rows} == {'0'}
    assert all(float(row['recall']) > 0.95 for row in rows), rows
    with open(data / 'evaluation' / 'faces.csv', encoding='utf-8') as handle:
        faces = list(csv.DictReader(handle))
    assert len(faces) == 6 * FRAMES and not any(face['leaked'] == '1' for face in faces)
