"""``make demo``: the node and the sample camera in separate processes, outputs on disk."""

from __future__ import annotations

import json
from pathlib import Path
import subprocess
import sys

from anonymizer_harness import DOMAIN_ID, face_change, REPO, SampleFrames, subprocess_env
import cv2
import numpy as np
import pytest


@pytest.mark.timeout(180)
def test_demo_writes_anonymized_pictures_and_a_summary(tmp_path: Path) -> None:
    """The demo runs end to end over DDS and its pictures show anonymized faces."""
    output = tmp_path / 'demo_output'
    command = [sys.executable, '-m', 'av_privacy_ros.demo', '--output', str(output),
               '--seconds', '1', '--rate', '15', '--domain-id', str(DOMAIN_ID)]
    run = subprocess.run(command, cwd=str(REPO), env=subprocess_env(), capture_output=True,
                         text=True, timeout=170)
    assert run.returncode == 0, run.stdout + run.stderr
    for line in ('detector:', 'frames in:', 'frames out:', 'latency:', 'drops:'):
        assert line in run.stdout
    summary = json.loads((output / 'summary.json').read_text(encoding='utf-8'))
    assert summary['frames_out'] >= 5 and summary['backend'] in ('scrfd', 'centerface')
    assert summary['provider'].endswith('ExecutionProvider')
    assert summary['failed_closed'] == 0 and summary['input_errors'] == 0
    original = cv2.imread(str(output / 'input.png'))
    anonymized = cv2.imread(str(output / 'anonymized.png'))
    mask = cv2.imread(str(output / 'mask.png'), cv2.IMREAD_GRAYSCALE) > 0
    changed = np.any(original != anonymized, axis=2)
    assert not changed[~mask].any(), 'the demo changed pixels outside the mask'
    # The pictured frame is one of the sample camera's shifted frames: find its face boxes.
    frames = SampleFrames()
    index = next(i for i in range(72) if np.array_equal(frames.frame(i)[0], original))
    assert min(face_change(original, anonymized, frames.boxes(index))) > 0.6
    for name in ('depth_input.png', 'depth_anonymized.png', 'comparison.png'):
        assert cv2.imread(str(output / name)) is not None, name
