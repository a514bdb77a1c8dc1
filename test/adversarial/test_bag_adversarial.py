"""
Adversarial cases of the bag tool: hostile bags, output-path traps, faults and interruptions.

Each case writes a real rosbag2 bag of the real group photo (six faces), runs ``anonymize_bag``
with the real SCRFD-500M weights, and measures what a user would care about: raw face pixels in
any output frame (face-box cores compared with the input frame of the same stamp) and inputs
lost (input files changed, other topics not byte-identical).  Both must be 0; each case is
recorded in the suite's ledger.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
import shutil
import signal
import subprocess
import sys
import time
from typing import Any, Dict, List, Sequence, Tuple

from av_privacy_ros import bag as bagmod
from av_privacy_ros.bag import anonymize_bag, BagError, main
import cv2
import numpy as np
import pytest

from .bag_attack import (COMPRESSED, compressed, file_hashes, files_lost, frame, FRAME_NS,
                         IMAGE, image, jpeg, Message, other_topics_lost, raw_face_pixels,
                         read_messages, STRING, string, T0_NS, typestore, write_bag)

REPO = Path(__file__).resolve().parents[2]
FRAMES = 4
FRAMES_TO_KILL = 100


@pytest.fixture(scope='module')
def base(t1_full: np.ndarray) -> np.ndarray:
    """Return the group photo at 680x480 (frames are 640x480 windows of it)."""
    return cv2.resize(t1_full, (680, 480), interpolation=cv2.INTER_AREA)


def _params(model: Path, **extra: Any) -> Dict[str, Any]:
    values: Dict[str, Any] = {'detector.backend': 'scrfd', 'detector.model_path': str(model),
                              'detector.providers': ['cpu'], 'seed': 5}
    values.update(extra)
    return values


def _params_file(path: Path, model: Any, **extra: Any) -> Path:
    import yaml
    nested: Dict[str, Any] = {}
    for name, value in _params(model, **extra).items():
        node = nested
        parts = name.split('.')
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    path.write_text(yaml.safe_dump({'/**': {'ros__parameters': nested}}))
    return path


def _stamp(index: int, offset_ns: int = 0) -> int:
    return T0_NS + index * FRAME_NS + offset_ns


def _one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, 'expected one error line, got:\n' + err
    assert lines[0].startswith('anonymize_bag: error: '), lines[0]
    return lines[0]


def _attack(tmp_path: Path, scrfd: Any, messages: Sequence[Message],
            originals: Dict[int, np.ndarray], adversarial: Any, case: str,
            dropped_topics: Sequence[str] = (), **options: Any) -> Dict[str, Any]:
    """Write the bag, anonymize it, measure and record the case; return what was found."""
    src, dst = tmp_path / 'input', tmp_path / 'output'
    write_bag(src, messages)
    before = file_hashes([src])
    summary = anonymize_bag(src, dst, params=_params(Path('')), detector=scrfd, **options)
    source, result = read_messages(src), read_messages(dst)
    raw = raw_face_pixels(scrfd, originals, source, result)
    kept = [m for m in source if m[0] not in dropped_topics]
    lost = files_lost(before, file_hashes([src])) + other_topics_lost(kept, result)
    adversarial.record('bag: ' + case, raw_face_pixels=raw, inputs_lost=lost)
    assert raw == 0, '%s: %d raw face pixels written' % (case, raw)
    assert lost == 0, '%s: %d inputs lost' % (case, lost)
    _independent_readers_accept(dst, result)
    return {'summary': summary, 'input': source, 'output': result}


def _independent_readers_accept(dst: Path, result: Sequence[Tuple[Any, ...]]) -> None:
    """mcap-ros2-support decodes every output message; rosbags-image every colour image."""
    from mcap_ros2.reader import read_ros2_messages
    from rosbags.image import message_to_cvimage
    decoded = sum(1 for path in dst.glob('*.mcap') for _ in read_ros2_messages(str(path)))
    assert decoded == len(result)
    for _, msgtype, _, _, msg in result:
        if msgtype == IMAGE or (msgtype == COMPRESSED
                                and 'compresseddepth' not in msg.format.lower()):
            assert message_to_cvimage(msg).size


def _count(messages: Sequence[Tuple[Any, ...]], topic: str) -> int:
    return sum(1 for m in messages if m[0] == topic)


# -- misleading first messages -------------------------------------------------------------------
@pytest.mark.parametrize('encoding', ['16UC1', '32FC1', 'mono16'])
def test_colour_topic_whose_first_message_claims_depth(tmp_path: Path, base: np.ndarray,
                                                       scrfd: Any, adversarial: Any,
                                                       encoding: str) -> None:
    """A colour frame labelled as depth first, then bgr8 frames, beside a second camera."""
    ts = typestore()
    messages: List[Message] = [('/chatter', STRING, _stamp(0, -1), string(ts, 'hello'))]
    originals: Dict[int, np.ndarray] = {}
    for i in range(FRAMES):
        pixels = frame(base, i)
        originals[_stamp(i)] = pixels
        originals[_stamp(i, 1_000_000)] = pixels
        if i == 0:  # the same bytes, with a depth label that fits their size
            width = 640 * 3 // (4 if encoding == '32FC1' else 2)
            msg = image(ts, _stamp(i), pixels, encoding, width=width, step=640 * 3)
        else:
            msg = image(ts, _stamp(i), pixels, 'bgr8')
        messages.append(('/cam/image_raw', IMAGE, _stamp(i, 20_000_000), msg))
        messages.append(('/cam2/image_raw', IMAGE, _stamp(i, 21_000_000),
                         image(ts, _stamp(i, 1_000_000), pixels, 'bgr8')))
    found = _attack(tmp_path, scrfd, messages, originals, adversarial,
                    'colour topic, first message %s, second camera named' % encoding,
                    image_topics=['/cam2/image_raw'])
    assert _count(found['output'], '/cam/image_raw') == FRAMES - 1
    assert _count(found['output'], '/cam2/image_raw') == FRAMES
    lines = found['summary'].lines()
    assert 'topic /cam/image_raw changes kind: 3 colour, 1 drop' in lines, lines


def test_compressed_depth_first_on_a_colour_topic(tmp_path: Path, base: np.ndarray,
                                                  scrfd: Any, adversarial: Any) -> None:
    """A compressedDepth-labelled JPEG first, then JPEG frames: nothing passes raw."""
    ts = typestore()
    messages: List[Message] = []
    originals: Dict[int, np.ndarray] = {}
    for i in range(FRAMES):
        pixels = frame(base, i)
        originals[_stamp(i)] = cv2.imdecode(jpeg(pixels), cv2.IMREAD_COLOR)
        if i == 0:
            fake = np.concatenate([np.zeros(12, np.uint8), jpeg(pixels)])
            msg = compressed(ts, _stamp(i), '16UC1; compressedDepth', fake)
        else:
            msg = compressed(ts, _stamp(i), 'jpeg', jpeg(pixels))
        messages.append(('/cam/image_raw/compressed', COMPRESSED, _stamp(i, 5), msg))
    found = _attack(tmp_path, scrfd, messages, originals, adversarial,
                    'compressedDepth-labelled JPEG first on a colour topic')
    assert _count(found['output'], '/cam/image_raw/compressed') == FRAMES - 1


def test_depth_topic_with_compressed_depth_first_then_jpeg(tmp_path: Path, base: np.ndarray,
                                                           scrfd: Any, adversarial: Any) -> None:
    """A genuine compressedDepth message first on a depth topic, then JPEG colour frames."""
    ts = typestore()
    topic = '/cam/depth/image_raw/compressed'
    depth = np.full((480, 640), 1500, np.uint16)
    genuine = np.concatenate([np.zeros(12, np.uint8), cv2.imencode('.png', depth)[1].ravel()])
    messages: List[Message] = [(topic, COMPRESSED, _stamp(0, -5),
                                compressed(ts, _stamp(0, -5), '16UC1; compressedDepth',
                                           genuine))]
    originals: Dict[int, np.ndarray] = {}
    for i in range(FRAMES):
        pixels = frame(base, i)
        originals[_stamp(i)] = cv2.imdecode(jpeg(pixels), cv2.IMREAD_COLOR)
        messages.append((topic, COMPRESSED, _stamp(i, 5),
                         compressed(ts, _stamp(i), 'jpeg', jpeg(pixels))))
    found = _attack(tmp_path, scrfd, messages, originals, adversarial,
                    'depth topic: compressedDepth first, then JPEG frames')
    out = [m for m in found['output'] if m[0] == topic]
    assert len(out) == FRAMES + 1
    assert out[0][3] == found['input'][0][3]  # the genuine depth image is kept as it was


def test_topic_whose_first_connection_is_not_an_image(tmp_path: Path, base: np.ndarray,
                                                      scrfd: Any, adversarial: Any) -> None:
    """A String connection first on the topic, then an Image connection with bgr8 frames."""
    ts = typestore()
    topic = '/cam/image_raw'
    messages: List[Message] = [(topic, STRING, _stamp(0, -10), string(ts, 'not an image'))]
    originals: Dict[int, np.ndarray] = {}
    for i in range(FRAMES):
        originals[_stamp(i)] = frame(base, i)
        messages.append((topic, IMAGE, _stamp(i, 3), image(ts, _stamp(i), frame(base, i),
                                                           'bgr8')))
    found = _attack(tmp_path, scrfd, messages, originals, adversarial,
                    'first connection of the topic is a String')
    assert _count(found['output'], topic) == FRAMES + 1


def test_mixed_image_and_compressed_connections_on_one_topic(tmp_path: Path, base: np.ndarray,
                                                             scrfd: Any,
                                                             adversarial: Any) -> None:
    """Image and CompressedImage messages interleaved on one topic: each decoded by its type."""
    ts = typestore()
    topic = '/cam/image'
    messages: List[Message] = []
    originals: Dict[int, np.ndarray] = {}
    for i in range(FRAMES):
        pixels = frame(base, i)
        if i % 2:
            originals[_stamp(i)] = cv2.imdecode(jpeg(pixels), cv2.IMREAD_COLOR)
            messages.append((topic, COMPRESSED, _stamp(i, 3),
                             compressed(ts, _stamp(i), 'png', jpeg(pixels))))  # format lies
        else:
            originals[_stamp(i)] = pixels
            rgb = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
            messages.append((topic, IMAGE, _stamp(i, 3), image(ts, _stamp(i), rgb, 'rgb8')))
    found = _attack(tmp_path, scrfd, messages, originals, adversarial,
                    'Image and CompressedImage connections on one topic')
    assert _count(found['output'], topic) == FRAMES
    assert found['summary'].frames_anonymized == FRAMES


def test_depth_named_topic_carrying_colour_frames(tmp_path: Path, base: np.ndarray,
                                                  scrfd: Any, adversarial: Any) -> None:
    """bgr8 frames on a topic named like depth, paired with a real colour camera."""
    ts = typestore()
    messages: List[Message] = []
    originals: Dict[int, np.ndarray] = {}
    for i in range(FRAMES):
        pixels = frame(base, i)
        originals[_stamp(i)] = pixels
        originals[_stamp(i, 3_000_000)] = pixels
        messages.append(('/camera/color/image_raw', IMAGE, _stamp(i, 5),
                         image(ts, _stamp(i), pixels, 'bgr8')))
        messages.append(('/camera/depth/image_raw', IMAGE, _stamp(i, 6),
                         image(ts, _stamp(i, 3_000_000), pixels, 'bgr8')))
    found = _attack(tmp_path, scrfd, messages, originals, adversarial,
                    'colour frames on a depth-named topic')
    assert _count(found['output'], '/camera/depth/image_raw') == FRAMES


@pytest.mark.parametrize('encoding', ['bayer_bggr8', 'yuv422', '8UC3', 'rgb16', '16uc1', ''])
def test_face_capable_encodings_that_cannot_be_anonymized_are_not_written(
        tmp_path: Path, base: np.ndarray, scrfd: Any, adversarial: Any, encoding: str) -> None:
    """The photo's bytes under encodings the tool cannot decode are dropped, not copied."""
    ts = typestore()
    messages: List[Message] = []
    originals: Dict[int, np.ndarray] = {}
    for i in range(2):
        pixels = frame(base, i)
        originals[_stamp(i)] = pixels
        messages.append(('/cam/image_raw', IMAGE, _stamp(i, 5),
                         image(ts, _stamp(i), pixels, encoding)))
        messages.append(('/ok/image_raw', IMAGE, _stamp(i, 6),
                         image(ts, _stamp(i), pixels, 'bgr8')))
    found = _attack(tmp_path, scrfd, messages, originals, adversarial,
                    'undecodable face-capable encoding %r' % encoding)
    assert _count(found['output'], '/cam/image_raw') == 0
    assert 'messages NOT written on /cam/image_raw: 2' in found['summary'].lines()


def test_types_that_embed_images_are_not_copied(tmp_path: Path, base: np.ndarray, scrfd: Any,
                                                adversarial: Any) -> None:
    """A stereo_msgs/DisparityImage (an Image inside) is not copied unless --copy-topic."""
    ts = typestore()
    pixels = frame(base, 0)
    inner = image(ts, _stamp(0), pixels, 'bgr8')
    disparity = ts.types['stereo_msgs/msg/DisparityImage'](
        header=inner.header, image=inner, f=1.0, t=0.1,
        valid_window=ts.types['sensor_msgs/msg/RegionOfInterest'](
            x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
        min_disparity=0.0, max_disparity=1.0, delta_d=0.1)
    messages: List[Message] = [
        ('/cam/image_raw', IMAGE, _stamp(0, 1), image(ts, _stamp(0), pixels, 'bgr8')),
        ('/stereo/disparity', 'stereo_msgs/msg/DisparityImage', _stamp(0, 2), disparity)]
    found = _attack(tmp_path, scrfd, messages, {_stamp(0): pixels}, adversarial,
                    'Image inside another message type', dropped_topics=['/stereo/disparity'])
    assert _count(found['output'], '/stereo/disparity') == 0
    assert 'messages NOT written on /stereo/disparity: 1' in found['summary'].lines()


def test_copy_topic_is_the_only_way_to_copy_an_image_topic(tmp_path: Path, base: np.ndarray,
                                                           scrfd: Any) -> None:
    """--copy-topic copies the named topic byte for byte, and the summary says so."""
    ts = typestore()
    messages: List[Message] = [
        ('/cam/image_raw', IMAGE, _stamp(0, 1), image(ts, _stamp(0), frame(base, 0), 'bgr8')),
        ('/keep/image_raw', IMAGE, _stamp(0, 2), image(ts, _stamp(0), frame(base, 0), 'bgr8'))]
    src = tmp_path / 'input'
    write_bag(src, messages)
    summary = anonymize_bag(src, tmp_path / 'out', params=_params(Path('')), detector=scrfd,
                            copy_topics=['/keep/image_raw'])
    source, result = read_messages(src), read_messages(tmp_path / 'out')
    assert [m[3] for m in result if m[0] == '/keep/image_raw'] == \
        [m[3] for m in source if m[0] == '/keep/image_raw']
    assert [m[3] for m in result if m[0] == '/cam/image_raw'] != \
        [m[3] for m in source if m[0] == '/cam/image_raw']
    assert 'image topics copied WITHOUT anonymization (--copy-topic): /keep/image_raw' \
        in summary.lines()


# -- output-path traps ---------------------------------------------------------------------------
def _small_bag(path: Path, base: np.ndarray) -> None:
    ts = typestore()
    photo = image(ts, _stamp(0), frame(base, 0), 'bgr8')
    write_bag(path, [('/cam/image_raw', IMAGE, _stamp(0), photo),
                     ('/chatter', STRING, _stamp(0, 1), string(ts, 'hi'))])


def _trap(name: str, root: Path, base: np.ndarray) -> Tuple[List[str], Path]:
    """Build one output-path trap under ``root``; return the CLI arguments and the input."""
    parent = root / 'parent'
    parent.mkdir()
    src = parent / 'in_bag'
    _small_bag(src, base)
    (parent / 'notes.txt').write_text('the user keeps this')
    if name == 'output is the input':
        return [str(src), str(src), '--force'], src
    if name == 'output contains the input':
        return [str(src), str(parent), '--force'], src
    if name == 'output inside the input':
        return [str(src), str(src / 'out')], src
    if name == 'output is the folder of a single-file input':
        storage = next(src.glob('*.mcap'))
        return [str(storage), str(parent), '--force'], src
    if name == 'output is a link to the input':
        (root / 'link').symlink_to(src)
        return [str(src), str(root / 'link'), '--force'], src
    if name == 'output under a link into the input':
        (root / 'link').symlink_to(src)
        return [str(src), str(root / 'link' / 'out')], src
    if name == 'input through a link, output its real parent':
        (root / 'link').symlink_to(src)
        return [str(root / 'link'), str(parent), '--force'], src
    if name == '--force on a regular file':
        (root / 'file.txt').write_text('user data')
        return [str(src), str(root / 'file.txt'), '--force'], src
    if name == '--force on a folder without metadata.yaml':
        (root / 'photos').mkdir()
        (root / 'photos' / 'a.jpg').write_text('user data')
        return [str(src), str(root / 'photos'), '--force'], src
    if name == '--force on a bag folder holding user files':
        other = root / 'other_bag'
        _small_bag(other, base)
        (other / 'thesis.tex').write_text('user data')
        return [str(src), str(other), '--force'], src
    raise AssertionError(name)


TRAPS = ['output is the input', 'output contains the input', 'output inside the input',
         'output is the folder of a single-file input', 'output is a link to the input',
         'output under a link into the input', 'input through a link, output its real parent',
         '--force on a regular file', '--force on a folder without metadata.yaml',
         '--force on a bag folder holding user files']


@pytest.mark.parametrize('trap', TRAPS)
def test_output_path_traps_touch_nothing(tmp_path: Path, base: np.ndarray, capsys: Any,
                                         adversarial: Any, trap: str) -> None:
    """Each trap is refused with one error line before anything is read or written."""
    argv, src = _trap(trap, tmp_path, base)
    before = file_hashes([tmp_path])
    names_before = sorted(str(p) for p in tmp_path.rglob('*'))
    rc = main(argv + ['--no-progress'])
    err = capsys.readouterr().err
    lost = files_lost(before, file_hashes([tmp_path]))
    changed = names_before != sorted(str(p) for p in tmp_path.rglob('*'))
    adversarial.record('bag output trap: ' + trap, inputs_lost=lost + int(changed))
    assert rc == 1
    _one_error_line(err)
    assert lost == 0 and not changed, 'files changed by: %s' % trap


# -- unwritable output, full disk, corrupt models ------------------------------------------------
def _unwritable(tmp_path: Path, where: str) -> Path:
    if where == 'under a regular file':
        (tmp_path / 'plain').write_text('x')
        return tmp_path / 'plain' / 'out'
    if where == 'under /proc':
        return Path('/proc/av_privacy_ros_test_%d/out' % os.getpid())
    return Path('/sys/av_privacy_ros_test_%d/out' % os.getpid())


@pytest.mark.parametrize('where', ['under a regular file', 'under /proc', 'under /sys'])
def test_unwritable_output_gives_one_error_line(tmp_path: Path, base: np.ndarray,
                                                scrfd_path: Path, capsys: Any,
                                                adversarial: Any, where: str) -> None:
    """An output that cannot be created: one error line, exit 1, nothing left behind."""
    src = tmp_path / 'input'
    _small_bag(src, base)
    before = file_hashes([src])
    out = _unwritable(tmp_path, where)
    rc = main([str(src), str(out), '--no-progress', '--params-file',
               str(_params_file(tmp_path / 'p.yaml', scrfd_path))])
    line = _one_error_line(capsys.readouterr().err)
    lost = files_lost(before, file_hashes([src]))
    adversarial.record('bag: unwritable output %s' % where, inputs_lost=lost)
    assert rc == 1 and 'cannot write the output' in line
    assert lost == 0 and not os.path.lexists(out)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith('.out')]


def test_full_disk_gives_one_error_line_and_no_output(tmp_path: Path, base: np.ndarray,
                                                      scrfd_path: Path, capsys: Any,
                                                      monkeypatch: Any,
                                                      adversarial: Any) -> None:
    """ENOSPC in the middle of writing (fault injected into the writer): nothing is left."""
    from rosbags.rosbag2 import Writer
    src = tmp_path / 'input'
    ts = typestore()
    photo = image(ts, _stamp(0), frame(base, 0), 'bgr8')
    write_bag(src, [('/chatter', STRING, _stamp(i), string(ts, 'm%d' % i)) for i in range(5)]
              + [('/cam/image_raw', IMAGE, _stamp(0, 7), photo)])
    before = file_hashes([src])
    real_write = Writer.write
    written: List[int] = []

    def write(self: Any, *args: Any, **kwargs: Any) -> None:
        if len(written) >= 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written.append(1)
        real_write(self, *args, **kwargs)

    monkeypatch.setattr(Writer, 'write', write)
    out = tmp_path / 'deep' / 'out'
    rc = main([str(src), str(out), '--no-progress', '--params-file',
               str(_params_file(tmp_path / 'p.yaml', scrfd_path))])
    line = _one_error_line(capsys.readouterr().err)
    lost = files_lost(before, file_hashes([src]))
    adversarial.record('bag: disk full while writing', inputs_lost=lost)
    assert rc == 1 and 'No space left on device' in line
    assert lost == 0
    assert not (tmp_path / 'deep').exists()  # the folder it created is gone too


@pytest.mark.parametrize('damage', ['empty', 'truncated', 'garbage'])
@pytest.mark.parametrize('given', ['detector.model_path', 'AV_PRIVACY_MODELS'])
def test_corrupt_model_gives_one_error_line(tmp_path: Path, base: np.ndarray, scrfd_path: Path,
                                            capsys: Any, monkeypatch: Any, adversarial: Any,
                                            damage: str, given: str) -> None:
    """A corrupt, truncated or empty ONNX file: one line naming the file, exit 1, no output."""
    src = tmp_path / 'input'
    _small_bag(src, base)
    models = tmp_path / 'models'
    models.mkdir()
    bad = models / 'det_500m.onnx'
    good = scrfd_path.read_bytes()
    bad.write_bytes({'empty': b'', 'truncated': good[:len(good) // 3],
                     'garbage': os.urandom(4096)}[damage])
    if given == 'AV_PRIVACY_MODELS':
        monkeypatch.setenv('AV_PRIVACY_MODELS', str(models))
        params = _params_file(tmp_path / 'p.yaml', '')
    else:
        params = _params_file(tmp_path / 'p.yaml', bad)
    rc = main([str(src), str(tmp_path / 'out'), '--no-progress', '--params-file', str(params)])
    line = _one_error_line(capsys.readouterr().err)
    adversarial.record('bag: %s model via %s' % (damage, given))
    assert rc == 1 and str(bad) in line
    assert not os.path.lexists(tmp_path / 'out')


# -- broken inputs and interrupted runs ----------------------------------------------------------
@pytest.mark.parametrize('damage', ['empty .mcap file', 'truncated .mcap', 'empty folder bag'])
def test_broken_input_gives_one_error_line(tmp_path: Path, base: np.ndarray, scrfd_path: Path,
                                           capsys: Any, adversarial: Any, damage: str) -> None:
    """Empty and truncated inputs: one error line, the input untouched, no output."""
    src = tmp_path / 'input'
    _small_bag(src, base)
    storage = next(src.glob('*.mcap'))
    if damage == 'empty .mcap file':
        storage.write_bytes(b'')
        arg = storage
    elif damage == 'truncated .mcap':
        data = storage.read_bytes()
        storage.write_bytes(data[:len(data) // 2])
        arg = src
    else:
        storage.unlink()
        (src / 'metadata.yaml').write_text('')
        arg = src
    before = file_hashes([src])
    rc = main([str(arg), str(tmp_path / 'out'), '--no-progress', '--params-file',
               str(_params_file(tmp_path / 'p.yaml', scrfd_path))])
    _one_error_line(capsys.readouterr().err)
    lost = files_lost(before, file_hashes([src]))
    adversarial.record('bag: input %s' % damage, inputs_lost=lost)
    assert rc == 1 and lost == 0 and not os.path.lexists(tmp_path / 'out')


def test_staging_folder_of_a_killed_run_is_removed_by_the_next(tmp_path: Path,
                                                               base: np.ndarray,
                                                               scrfd_path: Path,
                                                               adversarial: Any) -> None:
    """SIGKILL leaves .out.partial-PID; the next run removes it, says so, and succeeds."""
    ts = typestore()
    src = tmp_path / 'input'
    write_bag(src, [('/cam/image_raw/compressed', COMPRESSED, _stamp(i),
                     compressed(ts, _stamp(i), 'jpeg', jpeg(frame(base, i % 8))))
                    for i in range(FRAMES_TO_KILL)])
    params = str(_params_file(tmp_path / 'p.yaml', scrfd_path))
    out = tmp_path / 'out'
    argv = [sys.executable, '-m', 'av_privacy_ros.bag', str(src), str(out), '--no-progress',
            '--params-file', params]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    staging = tmp_path / ('.out.partial-%d' % proc.pid)
    deadline = time.monotonic() + 120.0
    while not any(staging.glob('out/*.mcap')) and proc.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.01)  # polling for the staging folder, not waiting a fixed time
    assert proc.poll() is None, 'the run ended before it could be killed:\n%s' % (
        proc.stdout.read() if proc.stdout else '')
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    if proc.stdout:
        proc.stdout.close()
    assert staging.is_dir() and not out.exists()
    lines: List[str] = []
    summary = anonymize_bag(src, out, params=_params(scrfd_path), log=lines.append,
                            backward_frames=0)
    adversarial.record('bag: staging folder of a killed run')
    assert not staging.exists()
    assert any(str(staging) in line and 'interrupted run' in line for line in lines), lines
    assert summary.frames_anonymized == FRAMES_TO_KILL and out.is_dir()


def test_staging_folder_of_a_running_process_is_left_alone(tmp_path: Path) -> None:
    """A staging folder whose process still runs (here: this test's parent) is not touched."""
    live = tmp_path / ('.out.partial-%d' % os.getppid())
    (live / 'out').mkdir(parents=True)
    lines: List[str] = []
    assert bagmod.clean_stale_staging(tmp_path / 'out', lines.append) == []
    assert live.is_dir() and any('left alone' in line for line in lines)


def _relative_hashes(folder: Path) -> Dict[str, str]:
    """Return the file hashes of ``folder`` keyed by path inside it."""
    return {str(Path(name).relative_to(folder)): digest
            for name, digest in file_hashes([folder]).items()}


def _dead_pid() -> int:
    """Return the pid of a process that has ended."""
    proc = subprocess.Popen([sys.executable, '-c', 'pass'])
    proc.wait(timeout=60)
    return proc.pid


def test_output_moved_aside_by_a_killed_replacement_is_restored(
        tmp_path: Path, base: np.ndarray, scrfd: Any, adversarial: Any) -> None:
    """A run killed while replacing an output never costs the user that output."""
    src = tmp_path / 'input'
    _small_bag(src, base)
    previous = tmp_path / 'previous'
    anonymize_bag(src, previous, params=_params(Path('')), detector=scrfd)
    before = _relative_hashes(previous)
    # Killed between moving the old output aside and moving the new one in: no output at all.
    aside = tmp_path / ('.out.old-%d' % _dead_pid())
    previous.rename(aside)
    lines: List[str] = []
    with pytest.raises(BagError, match='exists already'):
        anonymize_bag(src, tmp_path / 'out', params=_params(Path('')), detector=scrfd,
                      log=lines.append)
    lost = files_lost(before, _relative_hashes(tmp_path / 'out'))
    adversarial.record('bag: output moved aside by a killed replacement', inputs_lost=lost)
    assert lost == 0 and not aside.exists()
    assert any('restored' in line for line in lines), lines
    # Killed after the new output was in place: the replaced one (--force) is deleted.
    stale = tmp_path / ('.out.old-%d' % _dead_pid())
    shutil.copytree(tmp_path / 'out', stale)
    # A folder of the user's that only looks like one is never deleted.
    users = tmp_path / ('.out.old-%d' % _dead_pid())
    (users / 'notes').mkdir(parents=True)
    (users / 'metadata.yaml').write_text('mine')
    anonymize_bag(src, tmp_path / 'out', params=_params(Path('')), detector=scrfd, force=True,
                  log=lines.append)
    assert not stale.exists() and (tmp_path / 'out' / 'metadata.yaml').is_file()
    assert (users / 'notes').is_dir() and (users / 'metadata.yaml').read_text() == 'mine'
    assert any(str(users) in line and 'left alone' in line for line in lines), lines
    # A running process's folder is not touched.
    live = tmp_path / ('.out.old-%d' % os.getppid())
    live.mkdir()
    assert bagmod.staging.recover_interrupted_replacement(tmp_path / 'out', lines.append) == []
    assert live.is_dir()


def test_force_replaces_a_previous_output(tmp_path: Path, base: np.ndarray, scrfd: Any) -> None:
    """--force replaces a folder that is a rosbag2 output, and only that."""
    src = tmp_path / 'input'
    _small_bag(src, base)
    anonymize_bag(src, tmp_path / 'out', params=_params(Path('')), detector=scrfd)
    with pytest.raises(BagError, match='exists already'):
        anonymize_bag(src, tmp_path / 'out', params=_params(Path('')), detector=scrfd)
    anonymize_bag(src, tmp_path / 'out', params=_params(Path('')), detector=scrfd, force=True,
                  storage='sqlite3')
    assert list((tmp_path / 'out').glob('*.db3')) and not list((tmp_path / 'out').glob('*.mcap'))


@pytest.mark.parametrize('damage', ['empty', 'garbage'])
def test_evaluation_tool_corrupt_model_gives_one_error_line(tmp_path: Path, base: np.ndarray,
                                                            capsys: Any, adversarial: Any,
                                                            damage: str) -> None:
    """evaluate_masks --produce with a corrupt model: one error line naming the file."""
    import yaml
    from av_privacy_ros import evaluation
    (tmp_path / 'images').mkdir()
    (tmp_path / 'reference').mkdir()
    cv2.imwrite(str(tmp_path / 'images' / 'frame_000000.png'), frame(base, 0))
    cv2.imwrite(str(tmp_path / 'reference' / 'frame_000000.png'),
                np.zeros((480, 640), np.uint8))
    bad = tmp_path / 'det_500m.onnx'
    bad.write_bytes(b'' if damage == 'empty' else os.urandom(4096))
    params = _params_file(tmp_path / 'p.yaml', bad)
    (tmp_path / 'sessions.yaml').write_text(yaml.safe_dump([{
        'id': 's', 'environment': 'Lab', 'faces': 6, 'images': 'images',
        'reference': 'reference'}]), encoding='utf-8')
    rc = evaluation.main([str(tmp_path / 'sessions.yaml'), '-o', str(tmp_path / 'out'),
                          '--produce', '--params-file', str(params), '--no-plots'])
    err = [line for line in capsys.readouterr().err.splitlines()
           if line.startswith('evaluate_masks: error')]
    adversarial.record('evaluate_masks: %s model' % damage)
    assert rc == 2 and len(err) == 1 and str(bad) in err[0], err
