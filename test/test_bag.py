"""
Tests for the offline bag anonymizer (anonymize_bag) on real bags written with rosbags.

The bags hold the insightface sample photo ``t1`` (six real faces) resized to 640x480 and shifted
a few pixels per frame, as bgr8, rgb8, JPEG and PNG images, a 16UC1 depth topic, and non-image
topics (std_msgs/String and a latched tf2_msgs/TFMessage).  Faces are found by the real SCRFD
weights; the tests skip, saying how to get them, when none are found (test/weights.py).
"""

from __future__ import annotations

from pathlib import Path
import shutil
import subprocess
import sys
from typing import Any, Dict, List, Optional

from av_privacy_ros import bag as bagmod
from av_privacy_ros.bag import anonymize_bag, main, pair_depth_topics, pair_stamps
from av_privacy_ros.image_msgs import image_to_bgr, image_to_depth
import cv2
import numpy as np
import pytest
from weights import HOW_TO_GET_SCRFD, scrfd_weights

REPO = Path(__file__).resolve().parents[1]
MODEL = scrfd_weights()

FRAMES = 5
T0 = 1_700_000_000
BGR_TOPIC = '/camera/color/image_raw'
DEPTH_TOPIC = '/camera/aligned_depth_to_color/image_raw'
JPEG_TOPIC = '/camera/color/image_raw/compressed'
RGB_TOPIC = '/front/image_rgb'
PNG_TOPIC = '/front/image_rgb/compressed'
COLOUR_TOPICS = (BGR_TOPIC, JPEG_TOPIC, RGB_TOPIC, PNG_TOPIC)
OTHER_TOPICS = ('/chatter', '/tf_static', '/tf')
IMAGE = 'sensor_msgs/msg/Image'
COMPRESSED = 'sensor_msgs/msg/CompressedImage'


# -- helpers -------------------------------------------------------------------------------------
def _typestore(ros1: bool = False) -> Any:
    from rosbags.typesys import get_types_from_msg, get_typestore, Stores
    if not ros1:
        return get_typestore(Stores.LATEST)
    store = get_typestore(Stores.ROS1_NOETIC)
    # rosbags' Noetic store has no tf2_msgs; a ROS 1 recording carries its definition.
    store.register(get_types_from_msg('geometry_msgs/TransformStamped[] transforms',
                                      'tf2_msgs/msg/TFMessage'))
    return store


def _base_image() -> np.ndarray:
    import insightface
    t1 = insightface.data.get_image('t1')
    return cv2.resize(t1, (680, 480), interpolation=cv2.INTER_AREA)


def _frame(base: np.ndarray, index: int, step: int = 4) -> np.ndarray:
    return np.ascontiguousarray(base[:, step * index:step * index + 640])


def _header(ts: Any, stamp_ns: int, frame_id: str, ros1: bool = False) -> Any:
    time_cls = ts.types['builtin_interfaces/msg/Time']
    stamp = time_cls(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
    if ros1:
        return ts.types['std_msgs/msg/Header'](seq=0, stamp=stamp, frame_id=frame_id)
    return ts.types['std_msgs/msg/Header'](stamp=stamp, frame_id=frame_id)


def _image(ts: Any, stamp_ns: int, frame_id: str, pixels: np.ndarray, encoding: str,
           ros1: bool = False) -> Any:
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    raw = np.ascontiguousarray(pixels).view(np.uint8).reshape(-1)
    step = pixels.shape[1] * channels * pixels.dtype.itemsize
    return ts.types[IMAGE](header=_header(ts, stamp_ns, frame_id, ros1), height=pixels.shape[0],
                           width=pixels.shape[1], encoding=encoding, is_bigendian=0, step=step,
                           data=raw)


def _compressed(ts: Any, stamp_ns: int, frame_id: str, fmt: str, data: np.ndarray) -> Any:
    return ts.types[COMPRESSED](header=_header(ts, stamp_ns, frame_id), format=fmt,
                                data=np.asarray(data, np.uint8).reshape(-1))


def _tf(ts: Any, stamp_ns: int, x: float, ros1: bool = False) -> Any:
    t = ts.types
    transform = t['geometry_msgs/msg/TransformStamped'](
        header=_header(ts, stamp_ns, 'map', ros1), child_frame_id='camera_link',
        transform=t['geometry_msgs/msg/Transform'](
            translation=t['geometry_msgs/msg/Vector3'](x=x, y=2.0, z=3.0),
            rotation=t['geometry_msgs/msg/Quaternion'](x=0.0, y=0.0, z=0.0, w=1.0)))
    return t['tf2_msgs/msg/TFMessage'](transforms=[transform])


def _depth(index: int) -> np.ndarray:
    depth = np.full((480, 640), 1500 + 10 * index, np.uint16)
    depth[:, ::7] = 0  # invalid pixels must stay invalid
    return depth


def _latched_qos() -> List[Any]:
    from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness,
                                    QosReliability, QosTime)
    never = QosTime(0, 0)
    return [Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL,
                never, never, QosLiveliness.AUTOMATIC, never, False)]


def write_camera_bag(path: Path, storage: str, base: np.ndarray, frames: int = FRAMES) -> None:
    """Write the test bag: four colour topics, one depth topic and three non-image topics."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    ts = _typestore()
    plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conns = {
            BGR_TOPIC: writer.add_connection(BGR_TOPIC, IMAGE, typestore=ts),
            DEPTH_TOPIC: writer.add_connection(DEPTH_TOPIC, IMAGE, typestore=ts),
            JPEG_TOPIC: writer.add_connection(JPEG_TOPIC, COMPRESSED, typestore=ts),
            RGB_TOPIC: writer.add_connection(RGB_TOPIC, IMAGE, typestore=ts),
            PNG_TOPIC: writer.add_connection(PNG_TOPIC, COMPRESSED, typestore=ts),
            '/chatter': writer.add_connection('/chatter', 'std_msgs/msg/String', typestore=ts),
            '/tf': writer.add_connection('/tf', 'tf2_msgs/msg/TFMessage', typestore=ts),
            '/tf_static': writer.add_connection('/tf_static', 'tf2_msgs/msg/TFMessage',
                                                typestore=ts,
                                                offered_qos_profiles=_latched_qos()),
        }

        def put(topic: str, receive_ns: int, msg: Any) -> None:
            conn = conns[topic]
            writer.write(conn, receive_ns, ts.serialize_cdr(msg, conn.msgtype))

        put('/tf_static', T0 * 10**9, _tf(ts, T0 * 10**9, 0.5))
        for i in range(frames):
            img = _frame(base, i)
            stamp = T0 * 10**9 + i * 100_000_000
            put('/chatter', stamp + 1_000_000, ts.types['std_msgs/msg/String'](data='hi %d' % i))
            put('/tf', stamp + 2_000_000, _tf(ts, stamp, float(i)))
            # Depth stamps differ by 3 ms; it is received before its colour frame, or after.
            depth_rx = stamp + (15_000_000 if i % 2 else 25_000_000)
            put(DEPTH_TOPIC, depth_rx, _image(ts, stamp + 3_000_000, 'cam', _depth(i), '16UC1'))
            put(BGR_TOPIC, stamp + 20_000_000, _image(ts, stamp, 'cam', img, 'bgr8'))
            jpg = cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_QUALITY, 90])[1]
            put(JPEG_TOPIC, stamp + 21_000_000,
                _compressed(ts, stamp, 'cam', 'rgb8; jpeg compressed bgr8', jpg))
            rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            put(RGB_TOPIC, stamp + 22_000_000, _image(ts, stamp, 'front', rgb, 'rgb8'))
            put(PNG_TOPIC, stamp + 23_000_000,
                _compressed(ts, stamp, 'front', 'png', cv2.imencode('.png', img)[1]))


def read_bag(path: Path) -> Dict[str, Dict[str, Any]]:
    """Return per topic: connection info and the list of (receive ns, raw bytes, message)."""
    from rosbags.highlevel import AnyReader
    topics: Dict[str, Dict[str, Any]] = {}
    with AnyReader([path]) as reader:
        for conn in reader.connections:
            topics.setdefault(conn.topic, {'conn': conn, 'messages': []})
        for conn, timestamp, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            topics[conn.topic]['messages'].append((timestamp, bytes(raw), msg))
    return topics


def decode(msg: Any) -> np.ndarray:
    """Return a colour message as BGR."""
    if hasattr(msg, 'format'):
        image = cv2.imdecode(np.asarray(msg.data, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None, 'compressed output does not decode'
        return image
    return image_to_bgr(msg)[0]


def mean_abs_diff(a: np.ndarray, b: np.ndarray, where: Optional[np.ndarray] = None) -> float:
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    if where is not None:
        diff = diff[where]
    return float(diff.mean()) if diff.size else 0.0


def refound(faces: np.ndarray, found: np.ndarray) -> List[int]:
    """
    Return the input faces that a detection in the output overlaps (IoU >= 0.2).

    A mosaic can make SCRFD fire near a score of 0.5 on a patch of wall next to it; such a
    detection does not show a face.  A detection on an input face's place does.
    """
    iou = bagmod.box_iou(faces, found)
    return [i for i in range(len(faces)) if iou.shape[1] and iou[i].max() >= 0.2]


def _params(**extra: Any) -> Dict[str, Any]:
    values: Dict[str, Any] = {'detector.backend': 'scrfd', 'detector.model_path': str(MODEL),
                              'detector.providers': ['cpu'], 'seed': 3}
    values.update(extra)
    return values


def _params_file(path: Path, **extra: Any) -> Path:
    import yaml
    nested: Dict[str, Any] = {}
    for name, value in _params(**extra).items():
        node = nested
        parts = name.split('.')
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    path.write_text(yaml.safe_dump({'/**': {'ros__parameters': nested}}))
    return path


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def detector() -> Any:
    """Return the real SCRFD-500M detector on the CPU; skip every test that needs it."""
    from av_privacy_ros.detection import create_detector
    if MODEL is None:
        pytest.skip(HOW_TO_GET_SCRFD)
    det, _ = create_detector('scrfd', MODEL, providers=['cpu'])
    return det


@pytest.fixture(scope='module')
def base() -> np.ndarray:
    return _base_image()


@pytest.fixture(scope='module', params=['sqlite3', 'mcap'])
def run(request: Any, tmp_path_factory: Any, base: np.ndarray, detector: Any) -> Dict[str, Any]:
    """Write a bag in one storage, anonymize it (mcap: with depth noise), read both back."""
    storage = request.param
    folder = tmp_path_factory.mktemp('bag_' + storage)
    src, dst = folder / 'input', folder / 'output'
    write_camera_bag(src, storage, base)
    depth_noise = storage == 'mcap'
    lines: List[str] = []
    summary = anonymize_bag(src, dst, params=_params(**{'depth.enable_noise': depth_noise}),
                            write_masks=True, detector=detector, log=lines.append)
    return {'storage': storage, 'src': src, 'dst': dst, 'summary': summary, 'log': lines,
            'input': read_bag(src), 'output': read_bag(dst), 'depth_noise': depth_noise}


# -- topic choice and pairing (pure functions) ---------------------------------------------------
def test_the_largest_seed_works_for_several_cameras(detector: Any) -> None:
    """Per-camera seeds stay in the seed's range: three cameras with seed 2**31 - 1 all run."""
    largest = 2 ** 31 - 1
    maskers = bagmod.make_maskers([None, None, None], _params(seed=largest), detector)
    seeds = [masker.settings.seed for masker in maskers]
    assert seeds[0] == largest and len(set(seeds)) == 3
    assert all(0 <= seed <= largest for seed in seeds)


def test_depth_topics_pair_with_the_colour_topic_of_the_same_camera() -> None:
    """RealSense, CARLA and multi-camera names pair by camera; aligned depth wins."""
    pairs = pair_depth_topics(
        ['/camera/color/image_raw', '/carla/ego/rgb_front/image', '/carla/ego/rgb_left/image',
         '/camera/color/image_raw/compressed'],
        ['/carla/ego/depth_left/image', '/camera/depth/image_rect_raw',
         '/camera/aligned_depth_to_color/image_raw', '/carla/ego/depth_front/image'])
    assert pairs == {'/camera/color/image_raw': '/camera/aligned_depth_to_color/image_raw',
                     '/carla/ego/rgb_front/image': '/carla/ego/depth_front/image',
                     '/carla/ego/rgb_left/image': '/carla/ego/depth_left/image',
                     '/camera/color/image_raw/compressed': '/camera/depth/image_rect_raw'}
    # Another camera's depth is never used: no pairing rather than a wrong one.
    assert pair_depth_topics(['/left/color/image_raw'],
                             ['/right/depth/image_raw', '/rear/depth/image_raw']) == {}


def test_colour_and_depth_pair_by_nearest_stamp_within_slop() -> None:
    """Each message pairs at most once, closest stamps first; unpaired depth uses nearest."""
    colour = [0, 100, 200, None, 400]
    depth = [3, 98, 160, 299, 405, 406]
    c_to_d, d_to_c = pair_stamps(colour, depth, slop_ns=10)
    assert c_to_d == {0: 0, 1: 1, 4: 4}
    assert d_to_c[2] == 2  # 160 is out of slop: it takes the mask of colour 200
    assert d_to_c[5] == 4  # 406 lost to 405 but still uses colour 400's mask
    assert d_to_c[3] == 2


# -- the anonymized bag ---------------------------------------------------------------------------
def test_non_image_topics_are_copied_byte_for_byte(run: Dict[str, Any]) -> None:
    """Every non-image message keeps its bytes, timestamp, count, type and QoS."""
    for topic in OTHER_TOPICS:
        source, result = run['input'][topic], run['output'][topic]
        assert [(t, raw) for t, raw, _ in result['messages']] == \
            [(t, raw) for t, raw, _ in source['messages']], topic
        for attr in ('msgtype', 'digest', 'msgdef', 'ext'):
            assert getattr(result['conn'], attr) == getattr(source['conn'], attr), (topic, attr)
    qos = run['output']['/tf_static']['conn'].ext.offered_qos_profiles
    assert qos[0].durability.name == 'TRANSIENT_LOCAL'
    summary = run['summary']
    assert summary.messages_copied >= 1 + 2 * FRAMES
    assert summary.frames_anonymized == len(COLOUR_TOPICS) * FRAMES
    assert summary.frames_failed_closed == 0 and summary.messages_dropped == 0
    assert any('+ depth %s' % DEPTH_TOPIC in line for line in run['log']), run['log']


def test_image_topics_keep_stamps_frame_ids_and_counts(run: Dict[str, Any]) -> None:
    """Anonymized topics keep receive timestamps, header stamps, frame ids and formats."""
    for topic in COLOUR_TOPICS + (DEPTH_TOPIC,):
        source, result = run['input'][topic]['messages'], run['output'][topic]['messages']
        assert len(result) == len(source) == FRAMES, topic
        for (t_in, _, m_in), (t_out, _, m_out) in zip(source, result):
            assert t_out == t_in
            assert (m_out.header.stamp.sec, m_out.header.stamp.nanosec) == \
                (m_in.header.stamp.sec, m_in.header.stamp.nanosec)
            assert m_out.header.frame_id == m_in.header.frame_id
            if hasattr(m_in, 'format'):
                assert m_out.format == m_in.format
            else:
                assert m_out.encoding == m_in.encoding
                assert (m_out.height, m_out.width) == (m_in.height, m_in.width)
    # The whole bag is written in the input's order.
    in_order = [t for topic in run['input'].values() for t, _, _ in topic['messages']]
    assert run['output'][BGR_TOPIC + '/mask']['messages'][0][0] == \
        run['output'][BGR_TOPIC]['messages'][0][0]
    assert sorted(in_order)[0] == min(t for topic in run['output'].values()
                                      for t, _, _ in topic['messages'])


def test_faces_are_anonymized_and_nothing_else_changes(run: Dict[str, Any],
                                                       detector: Any) -> None:
    """Face regions change, raw and PNG pixels outside the mask are identical, JPEG is close."""
    for topic in COLOUR_TOPICS:
        masks = run['output'][topic + '/mask']['messages']
        pairs = zip(run['input'][topic]['messages'], run['output'][topic]['messages'], masks)
        for index, ((_, _, m_in), (_, raw_out, m_out), (_, _, m_mask)) in enumerate(pairs):
            before, after = decode(m_in), decode(m_out)
            mask = image_to_bgr(m_mask)[0][..., 0] > 0
            faces = detector.detect(before, 0.5).boxes
            assert len(faces) >= 5, (topic, index)
            for x1, y1, x2, y2 in faces.astype(int):
                x1, y1 = max(x1, 0), max(y1, 0)
                assert mask[y1:y2, x1:x2].mean() > 0.95, (topic, index)
                assert mean_abs_diff(before[y1:y2, x1:x2], after[y1:y2, x1:x2]) > 8.0, \
                    (topic, index)
            if topic == JPEG_TOPIC:
                assert raw_out[4:] and bytes(m_out.data[:3]) == b'\xff\xd8\xff'
                assert mean_abs_diff(before, after, ~mask) < 3.0
            else:
                if topic == PNG_TOPIC:
                    assert bytes(m_out.data[:8]) == b'\x89PNG\r\n\x1a\n'
                assert np.array_equal(before[~mask], after[~mask]), (topic, index)
            assert not refound(faces, detector.detect(after, 0.5).boxes), (topic, index)
    assert run['summary'].faces_found >= len(COLOUR_TOPICS) * FRAMES * 5


def test_depth_gets_noise_under_the_mask_only_when_enabled(run: Dict[str, Any]) -> None:
    """Depth noise lands under the colour mask, invalid pixels stay 0; off means a copy."""
    source = run['input'][DEPTH_TOPIC]['messages']
    result = run['output'][DEPTH_TOPIC]['messages']
    if not run['depth_noise']:
        assert [raw for _, raw, _ in result] == [raw for _, raw, _ in source]
        return
    masks = run['output'][BGR_TOPIC + '/mask']['messages']
    for (_, _, m_in), (_, _, m_out), (_, _, m_mask) in zip(source, result, masks):
        before, after = image_to_depth(m_in), image_to_depth(m_out)
        mask = image_to_bgr(m_mask)[0][..., 0] > 0
        assert mask.any()
        assert np.array_equal(before[~mask], after[~mask])
        assert np.array_equal(before == 0, after == 0)
        valid = mask & (before > 0)
        assert np.mean(before[valid] != after[valid]) > 0.9
    assert run['summary'].depth_anonymized == FRAMES


# -- errors leave no output ----------------------------------------------------------------------
def _no_leftovers(folder: Path, name: str) -> bool:
    return not (folder / name).exists() and not [p for p in folder.iterdir()
                                                 if p.name.startswith('.' + name)]


def test_truncated_bag_gives_a_clear_error_and_no_output(run: Dict[str, Any], tmp_path: Path,
                                                         capsys: Any) -> None:
    """A bag cut short (copy interrupted) is reported as corrupt or truncated."""
    broken = tmp_path / 'broken'
    shutil.copytree(run['src'], broken)
    storage_file = next(p for p in broken.iterdir() if p.suffix in ('.mcap', '.db3'))
    data = storage_file.read_bytes()
    storage_file.write_bytes(data[:len(data) * 2 // 3])
    rc = main([str(broken), str(tmp_path / 'out'), '--no-progress',
               '--params-file', str(_params_file(tmp_path / 'p.yaml'))])
    err = capsys.readouterr().err
    assert rc == 1
    assert 'corrupt or truncated' in err and str(broken) in err
    assert _no_leftovers(tmp_path, 'out')


def test_unknown_topic_gives_an_error_and_no_output(run: Dict[str, Any], tmp_path: Path,
                                                    capsys: Any) -> None:
    """Asking for a topic the bag does not have names it and lists the image topics."""
    rc = main([str(run['src']), str(tmp_path / 'out'), '--image-topic', '/no/such/image',
               '--no-progress', '--params-file', str(_params_file(tmp_path / 'p.yaml'))])
    err = capsys.readouterr().err
    assert rc == 1
    assert '/no/such/image is not in' in err and BGR_TOPIC in err
    assert _no_leftovers(tmp_path, 'out')


def test_interrupted_run_leaves_no_output(run: Dict[str, Any], tmp_path: Path,
                                          detector: Any) -> None:
    """Ctrl-C in the middle of a bag leaves neither the output nor a partial folder."""
    def interrupt(done: int, total: int) -> None:
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        anonymize_bag(run['src'], tmp_path / 'out', params=_params(), detector=detector,
                      progress=interrupt)
    assert _no_leftovers(tmp_path, 'out')


def test_existing_output_is_refused_without_force(run: Dict[str, Any], tmp_path: Path,
                                                  capsys: Any) -> None:
    """An existing output is left alone unless --force; --force replaces only a bag folder."""
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'keep.txt').write_text('old')
    params = str(_params_file(tmp_path / 'p.yaml'))
    rc = main([str(run['src']), str(out), '--no-progress', '--params-file', params])
    assert rc == 1 and 'exists already' in capsys.readouterr().err
    rc = main([str(run['src']), str(out), '--no-progress', '--params-file', params, '--force'])
    assert rc == 1 and 'no metadata.yaml' in capsys.readouterr().err
    assert (out / 'keep.txt').read_text() == 'old'
    previous = tmp_path / 'previous'
    shutil.copytree(run['dst'], previous)
    rc = main([str(run['src']), str(previous), '--no-progress', '--params-file', params,
               '--image-topic', PNG_TOPIC, '--force', '--storage', 'mcap',
               '--copy-topic', JPEG_TOPIC, '--copy-topic', RGB_TOPIC, '--copy-topic', BGR_TOPIC])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert 'frames anonymized: %d' % FRAMES in captured.out
    assert 'copied WITHOUT anonymization (--copy-topic): %s' % ', '.join(
        sorted((BGR_TOPIC, JPEG_TOPIC, RGB_TOPIC))) in captured.out
    assert list(previous.glob('*.mcap')) and not list(previous.glob('*.db3'))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith('.previous')]


def test_console_script_reports_errors_with_exit_status(run: Dict[str, Any],
                                                        tmp_path: Path) -> None:
    """The command run as a program exits non-zero with the message on stderr."""
    proc = subprocess.run(
        [sys.executable, '-m', 'av_privacy_ros.bag', str(run['src']), str(tmp_path / 'out'),
         '--depth-topic', '/chatter'], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert 'anonymize_bag: error: topic /chatter is a std_msgs/msg/String' in proc.stderr


# -- fail closed ---------------------------------------------------------------------------------
class _FaultyDetector:
    """The real SCRFD detector, except one call that raises or finds nothing (a miss)."""

    def __init__(self, inner: Any, on_call: int, fault: str) -> None:
        self.inner = inner
        self.on_call = on_call
        self.fault = fault
        self.calls = 0
        self.backend = inner.backend
        self.provider = inner.provider

    def detect(self, bgr: np.ndarray, conf_thresh: float) -> Any:
        from av_privacy_ros.detection import Detections
        self.calls += 1
        if self.calls == self.on_call:
            if self.fault == 'raise':
                raise RuntimeError('injected detector failure')
            return Detections.empty()
        return self.inner.detect(bgr, conf_thresh)


def test_failed_and_undecodable_frames_are_never_written_raw(tmp_path: Path, base: np.ndarray,
                                                             detector: Any) -> None:
    """A detector failure gives a whole-frame mosaic; a broken message is not written."""
    from rosbags.rosbag2 import Writer
    ts = _typestore()
    src = tmp_path / 'input'
    with Writer(src, version=9) as writer:
        raw = writer.add_connection('/cam/image_raw', IMAGE, typestore=ts)
        jpeg = writer.add_connection('/cam/image_raw/compressed', COMPRESSED, typestore=ts)
        for i in range(3):
            stamp = T0 * 10**9 + i * 100_000_000
            msg = _image(ts, stamp, 'cam', _frame(base, i), 'bgr8')
            if i == 1:  # truncated pixel data
                msg = _image(ts, stamp, 'cam', _frame(base, i), 'bgr8')
                msg.data = msg.data[:1000]
            writer.write(raw, stamp, ts.serialize_cdr(msg, IMAGE))
            data = cv2.imencode('.jpg', _frame(base, i))[1]
            if i == 2:
                data = np.frombuffer(b'not an image at all', np.uint8)
            writer.write(jpeg, stamp + 1, ts.serialize_cdr(
                _compressed(ts, stamp, 'cam', 'jpeg', data), COMPRESSED))
    # Calls: raw frame 0, jpeg frame 0 (crash), raw frame 2, jpeg frame 1.
    summary = anonymize_bag(src, tmp_path / 'out', params=_params(), backward_frames=0,
                            detector=_FaultyDetector(detector, 2, 'raise'))
    assert summary.frames_failed_closed == 1
    assert summary.messages_dropped == 2
    assert summary.frames_anonymized == 4
    source, result = read_bag(src), read_bag(tmp_path / 'out')
    assert [t for t, _, _ in result['/cam/image_raw']['messages']] == \
        [source['/cam/image_raw']['messages'][i][0] for i in (0, 2)]
    failed_in = decode(source['/cam/image_raw/compressed']['messages'][0][2])
    failed_out = decode(result['/cam/image_raw/compressed']['messages'][0][2])
    changed = np.abs(failed_in.astype(np.int16) - failed_out.astype(np.int16)).max(axis=2) > 3
    assert changed.mean() > 0.5  # anonymized over the whole frame, not around faces
    assert not refound(detector.detect(failed_in, 0.5).boxes,
                       detector.detect(failed_out, 0.3).boxes)
    assert len(result['/cam/image_raw/compressed']['messages']) == 2
    assert any('injected detector failure' in text for text in summary.errors)


def test_infrared_mono16_topics_are_not_copied_as_depth(tmp_path: Path, base: np.ndarray,
                                                        detector: Any) -> None:
    """16-bit grey infrared images (Image mono16, 16-bit PNG) never reach the output raw."""
    from rosbags.rosbag2 import Writer
    ts = _typestore()
    src = tmp_path / 'input'
    ir_topics = ('/ir/image_raw', '/ir/image_raw/compressed')
    with Writer(src, version=9) as writer:
        colour = writer.add_connection('/rgb/image_raw', IMAGE, typestore=ts)
        ir_raw = writer.add_connection(ir_topics[0], IMAGE, typestore=ts)
        ir_png = writer.add_connection(ir_topics[1], COMPRESSED, typestore=ts)
        for i in range(2):
            stamp = T0 * 10**9 + i * 100_000_000
            writer.write(colour, stamp, ts.serialize_cdr(
                _image(ts, stamp, 'rgb', _frame(base, i), 'bgr8'), IMAGE))
            # An Azure Kinect style infrared frame: the same faces, 16-bit grey.
            infrared = cv2.cvtColor(_frame(base, i), cv2.COLOR_BGR2GRAY).astype(np.uint16) * 200
            writer.write(ir_raw, stamp + 1, ts.serialize_cdr(
                _image(ts, stamp, 'ir', infrared, 'mono16'), IMAGE))
            writer.write(ir_png, stamp + 2, ts.serialize_cdr(
                _compressed(ts, stamp, 'ir', 'mono16; png compressed ',
                            cv2.imencode('.png', infrared)[1]), COMPRESSED))
    lines: List[str] = []
    summary = anonymize_bag(src, tmp_path / 'out', params=_params(), detector=detector,
                            log=lines.append)
    source, result = read_bag(src), read_bag(tmp_path / 'out')
    for topic in ir_topics:
        raw_in = {raw for _, raw, _ in source[topic]['messages']}
        raw_out = [raw for _, raw, _ in result.get(topic, {'messages': []})['messages']]
        assert not raw_in.intersection(raw_out), '%s was copied with its faces' % topic
    for topic in ir_topics:  # the user is told
        assert 'messages NOT written on %s: 2' % topic in summary.lines(), summary.lines()
    assert summary.frames_anonymized == 2 and summary.faces_found >= 10


def test_empty_first_compressed_message_does_not_stop_the_run(tmp_path: Path,
                                                              base: np.ndarray,
                                                              detector: Any) -> None:
    """A camera's empty first CompressedImage is dropped; the later frames are anonymized."""
    from rosbags.rosbag2 import Writer
    ts = _typestore()
    src = tmp_path / 'input'
    with Writer(src, version=9) as writer:
        conn = writer.add_connection('/cam/image_raw/compressed', COMPRESSED, typestore=ts)
        for i in range(3):
            stamp = T0 * 10**9 + i * 100_000_000
            data = (np.zeros(0, np.uint8) if i == 0
                    else cv2.imencode('.jpg', _frame(base, i))[1])
            writer.write(conn, stamp, ts.serialize_cdr(
                _compressed(ts, stamp, 'cam', 'jpeg', data), COMPRESSED))
    summary = anonymize_bag(src, tmp_path / 'out', params=_params(), detector=detector)
    assert summary.frames_anonymized == 2 and summary.messages_dropped == 1
    source, result = read_bag(src), read_bag(tmp_path / 'out')
    messages = result['/cam/image_raw/compressed']['messages']
    assert [t for t, _, _ in messages] == \
        [t for t, _, _ in source['/cam/image_raw/compressed']['messages'][1:]]
    for (_, _, m_in), (_, _, m_out) in zip(source['/cam/image_raw/compressed']['messages'][1:],
                                           messages):
        faces = detector.detect(decode(m_in), 0.5).boxes
        assert len(faces) >= 5
        assert not refound(faces, detector.detect(decode(m_out), 0.5).boxes)


# -- backward pass -------------------------------------------------------------------------------
def _covered(image: np.ndarray, boxes: np.ndarray, fraction: float = 0.8) -> np.ndarray:
    """Cover the left part of every face, as if people stood behind a pillar."""
    out = image.copy()
    for x1, y1, x2, y2 in boxes.astype(int):
        out[max(0, y1 - 5):y2 + 5, max(0, x1 - 5):x1 + int((x2 - x1) * fraction)] = 128
    return out


def test_backward_pass_masks_a_face_before_it_is_first_found(tmp_path: Path, base: np.ndarray,
                                                             detector: Any) -> None:
    """Faces the detector misses while mostly hidden are masked once they are found."""
    from rosbags.rosbag2 import Writer
    ts = _typestore()
    frames = [_frame(base, i, step=2) for i in range(6)]
    hidden = frames[:3]
    for i in range(3):
        hidden[i] = _covered(frames[i], detector.detect(frames[i], 0.3).boxes)
    frames = hidden + frames[3:]
    missed = [6 - len(detector.detect(f, 0.5)) for f in frames[:3]]
    assert min(missed) >= 3, 'the covered faces must be hard to detect for this test'
    src = tmp_path / 'input'
    with Writer(src, version=9) as writer:
        conn = writer.add_connection('/cam/image_raw', IMAGE, typestore=ts)
        for i, image in enumerate(frames):
            stamp = T0 * 10**9 + i * 33_000_000
            writer.write(conn, stamp, ts.serialize_cdr(_image(ts, stamp, 'cam', image, 'bgr8'),
                                                       IMAGE))
    outputs = {}
    for back in (0, 6):
        out = tmp_path / ('out%d' % back)
        summary = anonymize_bag(src, out, params=_params(**{'detector.conf_thresh': 0.5}),
                                backward_frames=back, detector=detector, write_masks=True)
        outputs[back] = read_bag(out)
        assert summary.frames_anonymized == 6
    faces = detector.detect(frames[3], 0.5).boxes
    assert len(faces) >= 5
    for i in range(3):
        shift = 2 * (3 - i)  # the camera pans 2 px per frame
        visible = np.zeros(frames[i].shape[:2], bool)
        for x1, y1, x2, y2 in (faces + np.array([shift, 0, shift, 0])).astype(int):
            visible[y1:y2, x1 + int((x2 - x1) * 0.8):x2] = True  # the uncovered fifth
        visible &= (frames[i] != 128).any(axis=2)
        without = decode(outputs[0]['/cam/image_raw']['messages'][i][2])
        with_back = decode(outputs[6]['/cam/image_raw']['messages'][i][2])
        mask = image_to_bgr(outputs[6]['/cam/image_raw/mask']['messages'][i][2])[0][..., 0] > 0
        # Without the backward pass, parts of the missed faces leak; with it they are masked.
        leaked = visible & (without == frames[i]).all(axis=2)
        assert leaked.sum() > 1000, i
        assert mask[leaked].mean() > 0.97, i
        assert np.mean((with_back != frames[i]).any(axis=2)[leaked]) > 0.5, i
        assert np.array_equal(with_back[~mask], frames[i][~mask])
    assert summary.frames_masked_backward == 3


def test_a_face_missed_on_one_frame_is_still_masked(
        tmp_path: Path, base: np.ndarray, detector: Any) -> None:
    """The temporal hold masks the faces on a frame where detection found none."""
    from rosbags.rosbag2 import Writer
    ts = _typestore()
    frames = [_frame(base, i) for i in range(4)]
    src = tmp_path / 'input'
    with Writer(src, version=9) as writer:
        conn = writer.add_connection('/cam/image_raw', IMAGE, typestore=ts)
        for i, image in enumerate(frames):
            stamp = T0 * 10**9 + i * 33_000_000
            writer.write(conn, stamp, ts.serialize_cdr(_image(ts, stamp, 'cam', image, 'bgr8'),
                                                       IMAGE))
    faces = detector.detect(frames[2], 0.5).boxes
    assert len(faces) == 6
    changed = {}
    for hold in (6, 0):
        out = tmp_path / ('out_hold%d' % hold)
        anonymize_bag(src, out, params=_params(**{'tracking.hold_frames': hold}),
                      backward_frames=0, detector=_FaultyDetector(detector, 3, 'miss'))
        missed = decode(read_bag(out)['/cam/image_raw']['messages'][2][2])
        differs = (missed != frames[2]).any(axis=2)
        changed[hold] = [differs[int(y1):int(y2), int(x1):int(x2)].mean()
                         for x1, y1, x2, y2 in faces]
    assert min(changed[6]) > 0.9, 'faces shown on the missed frame: %s' % changed[6]
    assert max(changed[0]) < 0.1, 'without the hold the missed faces show (control)'


# -- ROS 1 input ---------------------------------------------------------------------------------
def test_ros1_bag_is_converted_and_anonymized(tmp_path: Path, base: np.ndarray,
                                              detector: Any) -> None:
    """A ROS 1 bag becomes a rosbag2 bag: CDR messages, ROS 2 types, same stamps and data."""
    from rosbags.rosbag1 import Writer
    ts1 = _typestore(ros1=True)
    src = tmp_path / 'drive.bag'
    spacing = 700_000_000  # 0.7 s: the backward buffer also writes frames by age
    with Writer(src) as writer:
        image = writer.add_connection(BGR_TOPIC, IMAGE, typestore=ts1)
        chatter = writer.add_connection('/chatter', 'std_msgs/msg/String', typestore=ts1,
                                        latching=1)
        tf = writer.add_connection('/tf', 'tf2_msgs/msg/TFMessage', typestore=ts1)
        for i in range(3):
            stamp = T0 * 10**9 + i * spacing
            writer.write(chatter, stamp, ts1.serialize_ros1(
                ts1.types['std_msgs/msg/String'](data='ros1 %d' % i), 'std_msgs/msg/String'))
            writer.write(tf, stamp + 1, ts1.serialize_ros1(_tf(ts1, stamp, float(i), True),
                                                           'tf2_msgs/msg/TFMessage'))
            msg = _image(ts1, stamp, 'cam', _frame(base, i), 'bgr8', ros1=True)
            msg.header.seq = i
            writer.write(image, stamp + 2, ts1.serialize_ros1(msg, IMAGE))
    out = tmp_path / 'out'
    summary = anonymize_bag(src, out, params=_params(), detector=detector, write_masks=True)
    assert summary.frames_anonymized == 3 and summary.messages_copied == 6
    assert (out / 'metadata.yaml').is_file() and list(out.glob('*.mcap'))
    result = read_bag(out)
    ts2 = _typestore()
    chatter = [m.data for _, _, m in result['/chatter']['messages']]
    assert chatter == ['ros1 0', 'ros1 1', 'ros1 2']
    assert result['/chatter']['conn'].ext.offered_qos_profiles[0].durability.name == \
        'TRANSIENT_LOCAL'
    for i, (t, raw, msg) in enumerate(result['/tf']['messages']):
        assert t == T0 * 10**9 + i * spacing + 1
        assert msg.transforms[0].transform.translation.x == float(i)
        assert raw == bytes(ts2.serialize_cdr(_tf(ts2, t - 1, float(i)),
                                              'tf2_msgs/msg/TFMessage'))
    for i, (t, _, msg) in enumerate(result[BGR_TOPIC]['messages']):
        assert t == T0 * 10**9 + i * spacing + 2
        assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == T0 * 10**9 + i * spacing
        assert msg.header.frame_id == 'cam'
        assert not hasattr(msg.header, 'seq')
        faces = detector.detect(_frame(base, i), 0.5).boxes
        assert len(faces) >= 5
        assert not refound(faces, detector.detect(decode(msg), 0.5).boxes)
    masks = result[BGR_TOPIC + '/mask']['messages']
    assert [m.header.stamp for _, _, m in masks] == \
        [m.header.stamp for _, _, m in result[BGR_TOPIC]['messages']]
    assert all(m.encoding == 'mono8' and image_to_bgr(m)[0].any() for _, _, m in masks)


# -- small helpers ------------------------------------------------------------------------------
def test_compressed_codec_is_read_from_the_data_not_the_format_string(base: np.ndarray) -> None:
    """A PNG mislabelled as jpeg stays PNG; compressedDepth and garbage are refused."""
    from types import SimpleNamespace
    png = cv2.imencode('.png', base[:64, :64])[1]
    bgr, (codec, grey) = bagmod.decode_compressed(SimpleNamespace(format='jpeg', data=png))
    assert codec == 'png' and not grey and np.array_equal(bgr, base[:64, :64])
    for fmt, data in (('16UC1; compressedDepth png', png), ('jpeg', b'\x00' * 50)):
        with pytest.raises(ValueError):
            bagmod.decode_compressed(SimpleNamespace(format=fmt,
                                                     data=np.frombuffer(data, np.uint8)))


def test_depth_at_a_higher_rate_keeps_every_message(tmp_path: Path, base: np.ndarray,
                                                    detector: Any) -> None:
    """Depth at 3x the colour rate: every depth message is written, noisy under a face mask."""
    from rosbags.rosbag2 import Writer
    ts = _typestore()
    src = tmp_path / 'input'
    with Writer(src, version=9) as writer:
        colour = writer.add_connection('/cam/color/image_raw', IMAGE, typestore=ts)
        depth = writer.add_connection('/cam/depth/image_rect_raw', IMAGE, typestore=ts)
        for i in range(9):
            stamp = T0 * 10**9 + i * 33_333_333
            writer.write(depth, stamp + 5, ts.serialize_cdr(
                _image(ts, stamp, 'cam', _depth(i), '16UC1'), IMAGE))
            if i % 3 == 0:
                writer.write(colour, stamp + 9, ts.serialize_cdr(
                    _image(ts, stamp, 'cam', _frame(base, i), 'bgr8'), IMAGE))
    summary = anonymize_bag(src, tmp_path / 'out', params=_params(**{'depth.enable_noise': True}),
                            detector=detector, write_masks=True)
    assert summary.depth_anonymized == 9 and summary.depth_failed_closed == 0
    source, result = read_bag(src), read_bag(tmp_path / 'out')
    rows = zip(source['/cam/depth/image_rect_raw']['messages'],
               result['/cam/depth/image_rect_raw']['messages'])
    masks = [image_to_bgr(m)[0][..., 0] > 0 for _, _, m in
             result['/cam/color/image_raw/mask']['messages']]
    for i, ((t_in, _, m_in), (t_out, _, m_out)) in enumerate(rows):
        assert t_in == t_out
        before, after = image_to_depth(m_in), image_to_depth(m_out)
        mask = masks[min(2, (i + 1) // 3)]  # the colour frame nearest in stamp
        changed = before != after
        assert changed.any() and not changed[~mask].any(), i


def test_row_padding_and_byte_order_of_the_input_are_kept(tmp_path: Path, base: np.ndarray,
                                                          detector: Any) -> None:
    """Padded bgr8 rows keep their step (padding zeroed); big-endian depth stays big-endian."""
    from rosbags.rosbag2 import Writer
    ts = _typestore()
    src = tmp_path / 'input'
    pad = 64
    with Writer(src, version=9) as writer:
        colour = writer.add_connection('/camera/color/image_raw', IMAGE, typestore=ts)
        depth = writer.add_connection('/camera/depth/image_raw', IMAGE, typestore=ts)
        for i in range(2):
            stamp = T0 * 10**9 + i * 100_000_000
            img = _frame(base, i)
            padded = np.full((480, 640 * 3 + pad), 77, np.uint8)  # padding bytes hold 77
            padded[:, :640 * 3] = img.reshape(480, -1)
            msg = ts.types[IMAGE](header=_header(ts, stamp, 'cam'), height=480, width=640,
                                  encoding='bgr8', is_bigendian=0, step=640 * 3 + pad,
                                  data=padded.reshape(-1))
            writer.write(colour, stamp, ts.serialize_cdr(msg, IMAGE))
            big = _depth(i).astype('>u2')
            dmsg = ts.types[IMAGE](header=_header(ts, stamp, 'cam'), height=480, width=640,
                                   encoding='16UC1', is_bigendian=1, step=640 * 2,
                                   data=big.view(np.uint8).reshape(-1))
            writer.write(depth, stamp + 1, ts.serialize_cdr(dmsg, IMAGE))
    anonymize_bag(src, tmp_path / 'out', params=_params(**{'depth.enable_noise': True}),
                  detector=detector)
    source, result = read_bag(src), read_bag(tmp_path / 'out')
    for (_, _, m_in), (_, _, m_out) in zip(source['/camera/color/image_raw']['messages'],
                                           result['/camera/color/image_raw']['messages']):
        assert m_out.step == m_in.step and len(m_out.data) == len(m_in.data)
        rows = np.asarray(m_out.data).reshape(480, -1)
        assert not rows[:, 640 * 3:].any(), 'padding must be zeroed, not the input bytes'
        assert mean_abs_diff(image_to_bgr(m_out)[0], image_to_bgr(m_in)[0]) > 0
    for (_, _, m_in), (_, _, m_out) in zip(source['/camera/depth/image_raw']['messages'],
                                           result['/camera/depth/image_raw']['messages']):
        assert m_out.is_bigendian == 1 and m_out.step == m_in.step
        before, after = image_to_depth(m_in), image_to_depth(m_out)
        assert np.array_equal(before == 0, after == 0)
        changed = before != after
        assert 0 < changed.mean() < 0.5  # noise under the faces only, read as big-endian


def test_settings_that_weaken_privacy_are_reported(tmp_path: Path, base: np.ndarray,
                                                   detector: Any) -> None:
    """A higher threshold, no hold, no noise, finer cells: each one is named in the summary."""
    src = tmp_path / 'input'
    write_camera_bag(src, 'mcap', base, frames=1)
    weak = _params(**{'detector.conf_thresh': 0.4, 'tracking.hold_frames': 0,
                      'anonymizer.noise': 0, 'anonymizer.block': 8})
    lines = anonymize_bag(src, tmp_path / 'weak', params=weak, detector=detector).lines()
    warnings = [line for line in lines if line.startswith('WARNING: settings weaken privacy')]
    for name in ('detector.conf_thresh', 'tracking.hold_frames', 'anonymizer.noise',
                 'anonymizer.block'):
        assert any(name in line for line in warnings), (name, warnings)
    lines = anonymize_bag(src, tmp_path / 'default', params=_params(),
                          detector=detector).lines()
    assert not [line for line in lines if 'weaken privacy' in line]


# -- bags that other tools read ------------------------------------------------------------------
def _decode_with_mcap_ros2(folder: Path) -> Dict[str, List[Any]]:
    """Decode every message of an mcap output with mcap + mcap-ros2-support, per topic."""
    from mcap_ros2.reader import read_ros2_messages
    decoded: Dict[str, List[Any]] = {}
    for path in sorted(folder.glob('*.mcap')):
        for item in read_ros2_messages(str(path)):
            decoded.setdefault(item.channel.topic, []).append(item)
    return decoded


def _decode_images_with_rosbags_image(topics: Dict[str, Dict[str, Any]]) -> int:
    """Decode every Image / CompressedImage message with rosbags-image; return how many."""
    from rosbags.image import message_to_cvimage
    count = 0
    for info in topics.values():
        if info['conn'].msgtype not in (IMAGE, COMPRESSED):
            continue
        for _, _, msg in info['messages']:
            pixels = message_to_cvimage(msg)
            assert pixels.size and pixels.shape[:2] == (480, 640)
            count += 1
    return count


def test_independent_readers_decode_every_output_message(run: Dict[str, Any]) -> None:
    """mcap-ros2-support decodes every mcap message; rosbags-image decodes every image."""
    if run['storage'] == 'mcap':
        decoded = _decode_with_mcap_ros2(run['dst'])
        assert {t: len(v) for t, v in decoded.items()} == \
            {t: len(v['messages']) for t, v in run['output'].items()}
        for item in decoded[BGR_TOPIC]:
            assert item.ros_msg.encoding == 'bgr8' and len(item.ros_msg.data) == 640 * 480 * 3
    images = _decode_images_with_rosbags_image(run['output'])
    assert images == 4 * FRAMES + FRAMES + 4 * FRAMES  # colour, depth, masks


def test_ros1_input_gets_the_ros2_definitions_of_common_types(tmp_path: Path, base: np.ndarray,
                                                              detector: Any) -> None:
    """CameraInfo, Odometry, poses, tf: ROS 2 names and hashes; a type with none is skipped."""
    from rosbags.rosbag1 import Writer
    from rosbags.typesys import get_types_from_msg
    ts1 = _typestore(ros1=True)
    ts1.register(get_types_from_msg('float64 X\nstring label', 'my_msgs/msg/Legacy'))
    ts1.register(get_types_from_msg('uint8 level\nstring note', 'my_msgs/msg/Status'))
    t = ts1.types
    src = tmp_path / 'drive.bag'
    stamp = T0 * 10**9
    k = np.arange(9, dtype=np.float64)
    info = t['sensor_msgs/msg/CameraInfo'](
        header=_header(ts1, stamp, 'cam', True), height=480, width=640,
        distortion_model='plumb_bob', D=np.array([0.1, 0.2, 0.0, 0.0, 0.0]), K=k,
        R=np.eye(3).ravel(), P=np.arange(12, dtype=np.float64), binning_x=0, binning_y=0,
        roi=t['sensor_msgs/msg/RegionOfInterest'](x_offset=0, y_offset=0, height=0, width=0,
                                                  do_rectify=False))
    pose = t['geometry_msgs/msg/Pose'](
        position=t['geometry_msgs/msg/Point'](x=1.0, y=2.0, z=3.0),
        orientation=t['geometry_msgs/msg/Quaternion'](x=0.0, y=0.0, z=0.0, w=1.0))
    vector = t['geometry_msgs/msg/Vector3']
    twist = t['geometry_msgs/msg/Twist'](linear=vector(x=1.0, y=0.0, z=0.0),
                                         angular=vector(x=0.0, y=0.0, z=0.5))
    odom = t['nav_msgs/msg/Odometry'](
        header=_header(ts1, stamp, 'odom', True), child_frame_id='base_link',
        pose=t['geometry_msgs/msg/PoseWithCovariance'](pose=pose, covariance=np.zeros(36)),
        twist=t['geometry_msgs/msg/TwistWithCovariance'](twist=twist, covariance=np.zeros(36)))
    messages = [
        ('/camera/color/camera_info', 'sensor_msgs/msg/CameraInfo', info),
        ('/odom', 'nav_msgs/msg/Odometry', odom),
        ('/pose', 'geometry_msgs/msg/PoseStamped', t['geometry_msgs/msg/PoseStamped'](
            header=_header(ts1, stamp, 'map', True), pose=pose)),
        ('/tf', 'tf2_msgs/msg/TFMessage', _tf(ts1, stamp, 1.0, True)),
        ('/chatter', 'std_msgs/msg/String', t['std_msgs/msg/String'](data='ros1')),
        ('/status', 'my_msgs/msg/Status', t['my_msgs/msg/Status'](level=2, note='ok')),
        ('/legacy', 'my_msgs/msg/Legacy', t['my_msgs/msg/Legacy'](X=1.5, label='old')),
        (BGR_TOPIC, IMAGE, _image(ts1, stamp, 'cam', _frame(base, 0), 'bgr8', ros1=True)),
    ]
    with Writer(src) as writer:
        for index, (topic, msgtype, msg) in enumerate(messages):
            conn = writer.add_connection(topic, msgtype, typestore=ts1)
            writer.write(conn, stamp + index, ts1.serialize_ros1(msg, msgtype))
    out = tmp_path / 'out'
    summary = anonymize_bag(src, out, params=_params(), detector=detector)
    decoded = _decode_with_mcap_ros2(out)
    assert set(decoded) == {m[0] for m in messages} - {'/legacy'}
    assert any('/legacy' in line and 'not a valid ROS 2 field name' in line
               for line in summary.lines()), summary.lines()
    camera_info = decoded['/camera/color/camera_info'][0]
    assert list(camera_info.ros_msg.k) == list(k) and list(camera_info.ros_msg.d)[:2] == \
        [0.1, 0.2] and list(camera_info.ros_msg.p) == list(range(12))
    latest = _typestore()
    for topic, msgtype, _ in messages:
        if topic in ('/legacy', '/status'):
            continue
        schema = decoded[topic][0].schema
        assert schema.name == msgtype
    result = read_bag(out)
    for topic, msgtype, _ in messages:
        if topic not in ('/legacy', '/status'):
            assert result[topic]['conn'].digest == latest.hash_rihs01(msgtype), topic
    assert decoded['/odom'][0].ros_msg.pose.pose.position.y == 2.0
    assert decoded['/status'][0].ros_msg.note == 'ok'
    assert decoded['/tf'][0].ros_msg.transforms[0].transform.translation.x == 1.0


SERVICE_EVENT_SCHEMA = ('=' * 80 + '\nSRV: example_interfaces/srv/AddTwoInts\n'
                        'int64 a\nint64 b\n---\nint64 sum\n')
"""What ``ros2 bag record`` on Jazzy stores as the schema of a service-event topic."""


def _service_event_cdr() -> bytes:
    """Return the CDR bytes of one AddTwoInts service event (request sent, a=2, b=3)."""
    from rosbags.typesys import get_types_from_msg
    ts = _typestore()
    ts.register(get_types_from_msg('int64 a\nint64 b', 'test_msgs/msg/AddRequest'))
    ts.register(get_types_from_msg('int64 sum', 'test_msgs/msg/AddResponse'))
    ts.register(get_types_from_msg(
        'uint8 event_type\nbuiltin_interfaces/Time stamp\nchar[16] client_gid\n'
        'int64 sequence_number', 'test_msgs/msg/EventInfo'))
    ts.register(get_types_from_msg(
        'test_msgs/EventInfo info\ntest_msgs/AddRequest[<=1] request\n'
        'test_msgs/AddResponse[<=1] response', 'test_msgs/msg/AddEvent'))
    t = ts.types
    event = t['test_msgs/msg/AddEvent'](
        info=t['test_msgs/msg/EventInfo'](
            event_type=0, stamp=t['builtin_interfaces/msg/Time'](sec=1, nanosec=2),
            client_gid=np.arange(16, dtype=np.uint8), sequence_number=7),
        request=[t['test_msgs/msg/AddRequest'](a=2, b=3)], response=[])
    return bytes(ts.serialize_cdr(event, 'test_msgs/msg/AddEvent'))


def test_service_event_topics_are_copied_with_their_own_schema(tmp_path: Path,
                                                               base: np.ndarray,
                                                               detector: Any) -> None:
    """A schema rosbags cannot parse no longer stops the bag: bytes and schema are kept."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    ts = _typestore()
    src = tmp_path / 'input'
    event_topic = '/add_two_ints/_service_event'
    event = _service_event_cdr()
    with Writer(src, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        events = writer.add_connection(event_topic, 'example_interfaces/srv/AddTwoInts_Event',
                                       msgdef=SERVICE_EVENT_SCHEMA, rihs01='RIHS01_' + 'ab' * 32)
        colour = writer.add_connection(BGR_TOPIC, IMAGE, typestore=ts)
        for i in range(2):
            stamp = T0 * 10**9 + i * 100_000_000
            writer.write(events, stamp, event)
            writer.write(colour, stamp + 1, ts.serialize_cdr(
                _image(ts, stamp, 'cam', _frame(base, i), 'bgr8'), IMAGE))
    summary = anonymize_bag(src, tmp_path / 'out', params=_params(), detector=detector)
    assert summary.frames_anonymized == 2
    assert any(event_topic in line and 'copied as bytes' in line for line in summary.lines())
    from mcap.reader import make_reader
    with open(next((tmp_path / 'out').glob('*.mcap')), 'rb') as stream:
        reader = make_reader(stream)
        found = [(schema, channel, message) for schema, channel, message
                 in reader.iter_messages(topics=[event_topic])]
    assert [bytes(m.data) for _, _, m in found] == [event, event]
    assert found[0][0].data.decode() == SERVICE_EVENT_SCHEMA
    assert found[0][0].name == 'example_interfaces/srv/AddTwoInts_Event'
    decoded = _decode_with_mcap_ros2_except(tmp_path / 'out', event_topic)
    assert len(decoded[BGR_TOPIC]) == 2


def _decode_with_mcap_ros2_except(folder: Path, raw_topic: str) -> Dict[str, List[Any]]:
    """Decode every message but those of a topic kept with the input's own unparsable schema."""
    from mcap.reader import make_reader
    from mcap_ros2.reader import read_ros2_messages
    decoded: Dict[str, List[Any]] = {}
    for path in sorted(folder.glob('*.mcap')):
        with open(path, 'rb') as stream:
            summary = make_reader(stream).get_summary()
        assert summary is not None
        topics = [c.topic for c in summary.channels.values() if c.topic != raw_topic]
        for item in read_ros2_messages(str(path), topics=topics):
            decoded.setdefault(item.channel.topic, []).append(item)
    return decoded


def test_bag_without_image_topics_is_copied_with_a_warning(tmp_path: Path, capsys: Any) -> None:
    """A fleet pipeline runs over every bag: one without images is copied verbatim, exit 0."""
    from rosbags.rosbag2 import Writer
    ts = _typestore()
    src = tmp_path / 'input'
    with Writer(src, version=9) as writer:
        chatter = writer.add_connection('/chatter', 'std_msgs/msg/String', typestore=ts)
        tf = writer.add_connection('/tf', 'tf2_msgs/msg/TFMessage', typestore=ts)
        for i in range(3):
            writer.write(chatter, T0 * 10**9 + i, ts.serialize_cdr(
                ts.types['std_msgs/msg/String'](data='m%d' % i), 'std_msgs/msg/String'))
            writer.write(tf, T0 * 10**9 + i, ts.serialize_cdr(_tf(ts, T0 * 10**9, float(i)),
                                                              'tf2_msgs/msg/TFMessage'))
    rc = main([str(src), str(tmp_path / 'out'), '--no-progress',
               '--params-file', str(_params_file(tmp_path / 'p.yaml'))])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert 'warning: no image topics' in captured.out
    source, result = read_bag(src), read_bag(tmp_path / 'out')
    for topic in ('/chatter', '/tf'):
        assert [(t, raw) for t, raw, _ in result[topic]['messages']] == \
            [(t, raw) for t, raw, _ in source[topic]['messages']]
