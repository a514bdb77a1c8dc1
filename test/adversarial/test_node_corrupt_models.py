"""
A corrupt, truncated, empty or foreign ONNX model: the node refuses to start, in one line.

The node runs as ``anonymizer_node`` does on a robot (its own process); the model files are
made by the test from the real SCRFD weights.  What a user must see: one FATAL line that names
the file, exit status 2 (as for a missing file), no Python traceback, and nothing published.
"""

from __future__ import annotations

import os
from pathlib import Path
import re
from typing import Any, Callable, Dict

from anonymizer_harness import NAMESPACE_PREFIX, NodeProcess, wait_until
from av_privacy_ros.detection import centerface_model_path, create_detector, ModelLoadError
import pytest

pytestmark = pytest.mark.timeout(120)


def _empty(real: Path, target: Path) -> None:
    target.write_bytes(b'')


def _truncated(real: Path, target: Path) -> None:
    target.write_bytes(real.read_bytes()[:len(real.read_bytes()) // 3])


def _garbage(real: Path, target: Path) -> None:
    target.write_bytes(bytes(range(256)) * 64)


def _other_network(real: Path, target: Path) -> None:
    target.write_bytes(centerface_model_path().read_bytes())  # valid ONNX, not SCRFD


MAKERS: Dict[str, Callable[[Path, Path], None]] = {
    'empty': _empty, 'truncated': _truncated, 'garbage': _garbage,
    'other_network': _other_network}


@pytest.mark.parametrize('kind', sorted(MAKERS))
def test_a_bad_model_file_raises_a_value_error_naming_it(scrfd_path: Path, tmp_path: Path,
                                                         kind: str) -> None:
    """The library: ModelLoadError (a ValueError) with the file name, for every bad file."""
    bad = tmp_path / ('det_500m_%s.onnx' % kind)
    MAKERS[kind](scrfd_path, bad)
    with pytest.raises(ModelLoadError, match=re.escape(str(bad))) as caught:
        create_detector(backend='scrfd', model_path=bad, providers=['cpu'])
    assert isinstance(caught.value, ValueError) and caught.value.path == str(bad)


@pytest.mark.parametrize('where', ['model_path', 'AV_PRIVACY_MODELS'])
@pytest.mark.parametrize('kind', ['empty', 'truncated', 'other_network'])
def test_node_with_a_bad_model_logs_one_fatal_line_and_exits_2(
        scrfd_path: Path, tmp_path: Path, monkeypatch: Any, adversarial: Any, kind: str,
        where: str) -> None:
    """detector.model_path or $AV_PRIVACY_MODELS with a bad file: FATAL, exit 2, no traceback."""
    if where == 'model_path':
        bad = tmp_path / ('bad_%s.onnx' % kind)
        parameters = {'detector.model_path': str(bad)}
    else:
        bad = tmp_path / 'det_500m.onnx'  # the name the search looks for
        monkeypatch.setenv('AV_PRIVACY_MODELS', str(tmp_path))
        parameters = {'detector.backend': 'auto'}
    MAKERS[kind](scrfd_path, bad)
    before = bad.read_bytes()
    node = NodeProcess('%s/corrupt_%s_%d' % (NAMESPACE_PREFIX, kind, os.getpid()), parameters)
    try:
        assert wait_until(lambda: not node.alive(), 60.0), 'the node did not stop'
    finally:
        status = node.stop()
    log = node.log()
    fatal = [line for line in log.splitlines() if 'FATAL' in line]
    assert status == 2, log
    assert len(fatal) == 1 and str(bad) in fatal[0], log
    assert 'Traceback' not in log, log
    lost = int(bad.read_bytes() != before)
    adversarial.record('node: %s model in %s refused' % (kind, where),
                       raw_face_pixels=0, inputs_lost=lost)
    assert lost == 0
