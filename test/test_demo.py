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
    for line in ('detector:', 'settings:', 'frames in:', 'frames out:', 'latency:', 'drops:'):
        assert line in run.stdout
    assert 'depth.enable_noise true (default false)' in run.stdout
    summary = json.loads((output / 'summary.json').read_text(encoding='utf-8'))
    assert summary['frames_out'] >= 5 and summary['backend'] in ('scrfd', 'centerface')
    # Figures are JSON numbers, not strings.
    assert isinstance(summary['detect_p50_ms'], float) and summary['detect_p50_ms'] > 0
    assert isinstance(summary['output_fps'], float)
    assert summary['parameters']['depth.enable_noise'] is True
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
    for name in ('depth_input.png', 'depth_anonymized.png'):
        assert cv2.imread(str(output / name)) is not None, name
    # comparison.png: the four pictures, each labelled in its top-left corner, and a caption.
    comparison = cv2.imread(str(output / 'comparison.png'))
    height, width = original.shape[:2]
    assert comparison.shape[0] > 2 * height and comparison.shape[1] == 2 * width
    depth_input = cv2.imread(str(output / 'depth_input.png'))
    for panel, picture in ((comparison[:height, :width], original),
                           (comparison[height:2 * height, :width], depth_input)):
        differs = np.any(panel != picture, axis=2)
        assert differs[:20, :150].mean() > 0.5, 'a panel has no label'
        assert not differs[60:, :].any(), 'a panel differs from its picture below the label'
    caption = comparison[2 * height:]
    assert caption.max() > 200, 'the caption strip is empty'
