"""Tests for the mask evaluation toolkit (evaluate_masks)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Dict, List, Sequence

from av_privacy_ros import evaluation as ev
import cv2
import numpy as np
import pytest
from weights import HOW_TO_GET_SCRFD, scrfd_weights
import yaml

SCRFD = scrfd_weights()

# The six faces of insightface's t1 photo (1280×886), read once with SCRFD-2.5G and rounded.
T1_FACES = [[746, 339, 846, 481], [465, 265, 573, 416], [59, 263, 169, 396],
            [1131, 271, 1226, 399], [905, 54, 1013, 204], [269, 147, 371, 265]]


def _square(shape: Sequence[int], x: int, y: int, size: int) -> np.ndarray:
    mask = np.zeros(tuple(shape), np.bool_)
    mask[y:y + size, x:x + size] = True
    return mask


def _write_masks(folder: Path, masks: Dict[int, np.ndarray], pattern: str = 'frame_%06d.png'
                 ) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for key, mask in masks.items():
        assert cv2.imwrite(str(folder / (pattern % key)), mask.astype(np.uint8) * 255)
    return folder


def _read_csv(path: Path) -> List[Dict[str, str]]:
    with open(path, newline='', encoding='utf-8') as handle:
        return list(csv.DictReader(handle))


def _moving_squares(count: int, shape=(60, 80)) -> Dict[int, np.ndarray]:
    """Return one square per frame that moves 3 px right and 1 px down every frame."""
    return {k: _square(shape, 3 * k % 60, k % 30, 16) for k in range(count)}


# -- pure metrics ------------------------------------------------------------------------------
def test_dice_and_recall_match_hand_computed_values() -> None:
    """Dice and Recall follow 2|A∩B|/(|A|+|B|) and |A∩B|/|B| on a tiny example."""
    ours = np.zeros((4, 4), np.uint8)
    ours[0, 0:4] = 255                 # 4 pixels
    ref = np.zeros((4, 4), np.uint8)
    ref[0, 1:4] = 1                    # 3 pixels shared with ours
    ref[1, 0:3] = 1                    # 3 more pixels: |B| = 6
    dice, recall, both_empty = ev.dice_recall(ours, ref)
    assert dice == pytest.approx(2 * 3 / (4 + 6))
    assert recall == pytest.approx(3 / 6)
    assert not both_empty


def test_empty_frames_count_as_agreement_and_one_empty_scores_zero() -> None:
    """Both empty is agreement; a missed face gives Recall 0; a false mask keeps Recall 1."""
    empty = np.zeros((5, 5), np.bool_)
    face = _square((5, 5), 1, 1, 2)
    assert ev.dice_recall(empty, empty) == (1.0, 1.0, True)
    assert ev.dice_recall(empty, face) == (0.0, 0.0, False)     # our mask missed the face
    assert ev.dice_recall(face, empty) == (0.0, 1.0, False)     # mask where there is no face
    with pytest.raises(ValueError, match='differ in size'):
        ev.dice_recall(face, np.zeros((5, 6), np.bool_))


def test_shift_search_recovers_an_injected_two_frame_offset() -> None:
    """Our masks lagging the reference by 2 frames are found at shift +2 with Dice 1."""
    ref = _moving_squares(20)
    ours = {k + 2: m for k, m in ref.items()}
    scores = ev.shift_scores(ref, ours, max_shift=3)
    assert set(scores) == {-3, -2, -1, 0, 1, 2, 3}
    assert ev.best_shift(scores) == 2
    assert scores[2] == (pytest.approx(1.0), 20)
    assert scores[0][0] < 0.9
    ahead = {k - 2: m for k, m in ref.items()}
    assert ev.best_shift(ev.shift_scores(ref, ahead, max_shift=3)) == -2


def test_shift_search_prefers_no_shift_on_ties_and_ignores_tiny_overlaps() -> None:
    """Static masks score the same at every shift; the search keeps 0."""
    ref = {k: _square((20, 20), 2, 2, 5) for k in range(10)}
    assert ev.best_shift(ev.shift_scores(ref, dict(ref), max_shift=3)) == 0
    # A shift that pairs only 1 of 10 frames cannot win even with a perfect Dice.
    assert ev.best_shift({0: (0.8, 10), 5: (1.0, 1)}) == 0


def test_aggregates_match_a_direct_numpy_computation() -> None:
    """Per-environment and overall statistics equal numpy's mean/std/median/percentile."""
    rng = np.random.default_rng(3)
    rows = []
    for i in range(40):
        both_empty = i % 7 == 0
        rows.append({'session': 's%d' % (i % 4), 'environment': ('Lab', 'Hallway')[i % 2],
                     'faces': 1 + i % 3 // 2, 'both_empty': both_empty,
                     'dice': 1.0 if both_empty else float(rng.uniform()),
                     'recall': 1.0 if both_empty else float(rng.uniform())})
    tables = ev.aggregate_tables(rows)
    for env in ('Lab', 'Hallway'):
        dice = np.array([r['dice'] for r in rows if r['environment'] == env])
        agg = tables['environment'][env]
        assert agg['frames'] == dice.size
        assert agg['dice']['mean'] == pytest.approx(dice.mean())
        assert agg['dice']['std'] == pytest.approx(dice.std())
        assert agg['dice']['median'] == pytest.approx(np.median(dice))
        assert agg['dice']['p5'] == pytest.approx(np.percentile(dice, 5))
    overall = tables['overall']['all']
    recall = np.array([r['recall'] for r in rows])
    assert overall['recall']['mean'] == pytest.approx(recall.mean())
    assert overall['both_empty'] == sum(1 for r in rows if r['both_empty'])
    faces_only = np.array([r['dice'] for r in rows if not r['both_empty']])
    assert overall['dice_faces']['mean'] == pytest.approx(faces_only.mean())
    assert overall['dice_faces']['n'] == faces_only.size
    assert set(tables['faces']) == {'1', '2'}
    assert sum(a['frames'] for a in tables['session'].values()) == len(rows)


def test_frame_keys_from_indices_and_stamps() -> None:
    """File names give frame indices or stamps in nanoseconds."""
    assert ev.frame_key('cam0_frame_000123.png') == 123
    assert ev.frame_key('1700000000_000000042.png', 'stamp') == 1_700_000_000_000_000_042
    assert ev.frame_key('1700000000.25.png', 'stamp') == 1_700_000_000_250_000_000
    assert ev.frame_key('mask_1700000000123456789.png', 'stamp') == 1700000000123456789
    with pytest.raises(ValueError, match='no frame number'):
        ev.frame_key('mask.png')
    assert ev.box_frame_key(12, 'index') == ev.box_frame_key('12.0', 'index') == 12
    assert ev.box_frame_key('frame_000012.png', 'index') == 12
    assert ev.box_frame_key(1700000000.5, 'stamp') == 1_700_000_000_500_000_000


def test_longest_run_finds_consecutive_frames_only() -> None:
    """Runs break at gaps; the first frame of the longest run is returned."""
    assert ev.longest_run([1, 3, 4, 5, 8, 9]) == (3, 3)
    assert ev.longest_run([]) == (0, None)


# -- command line ------------------------------------------------------------------------------
def _two_sessions(tmp_path: Path) -> Path:
    """Write a Lab/1-face session with a 2-frame lag and a Hallway/2-face session."""
    ref_a = _moving_squares(12)
    ref_a.update({12: np.zeros((60, 80), np.bool_), 13: np.zeros((60, 80), np.bool_)})
    _write_masks(tmp_path / 'ref_a', ref_a)
    _write_masks(tmp_path / 'ours_a', {k + 2: m for k, m in ref_a.items()})
    ref_b = {k: _square((60, 80), 5, 5, 10) | _square((60, 80), 40, 30, 12) for k in range(8)}
    ours_b = {k: _square((60, 80), 5, 5, 10) for k in range(8)}  # misses the second face
    _write_masks(tmp_path / 'ref_b', ref_b)
    _write_masks(tmp_path / 'ours_b', ours_b)
    sessions = {'sessions': [
        {'id': 'lab 1', 'environment': 'Lab', 'faces': 1, 'ours': 'ours_a',
         'reference': 'ref_a'},
        {'id': 'hall-2', 'environment': 'Hallway', 'faces': 2, 'ours': 'ours_b',
         'reference': 'ref_b', 'start': 2, 'stop': 6}]}
    path = tmp_path / 'sessions.yaml'
    path.write_text(yaml.safe_dump(sessions), encoding='utf-8')
    return path


def test_cli_writes_csv_report_and_plots_that_decode(tmp_path: Path) -> None:
    """One command writes frames.csv, report.md/html and PNG plots an image viewer opens."""
    sessions = _two_sessions(tmp_path)
    out = tmp_path / 'out'
    assert ev.main([str(sessions), '-o', str(out), '--html']) == 0
    rows = _read_csv(out / 'frames.csv')
    lab = [r for r in rows if r['session'] == 'lab 1']
    hall = [r for r in rows if r['session'] == 'hall-2']
    assert len(lab) == 14 and {r['shift'] for r in lab} == {'2'}
    assert all(float(r['dice']) == 1.0 for r in lab)
    assert sum(r['both_empty'] == '1' for r in lab) == 2
    assert [int(r['frame']) for r in hall] == [2, 3, 4, 5]       # start 2, stop 6
    dice_b = 2 * 100 / (100 + 244)
    assert all(float(r['dice']) == pytest.approx(dice_b, abs=1e-5) for r in hall)
    assert all(float(r['recall']) == pytest.approx(100 / 244, abs=1e-5) for r in hall)
    report = (out / 'report.md').read_text(encoding='utf-8')
    assert '## Alignment' in report and '| lab 1 | Lab | 1 |' in report and '| +2 |' in report
    assert '### Per environment' in report and '| Hallway | 4 | 0 |' in report
    assert '%.3f' % dice_b in report
    assert (out / 'report.html').read_text(encoding='utf-8').startswith('<!DOCTYPE html>')
    plots = ['dice_recall_by_environment.png', 'dice_recall_by_faces.png',
             'dice_over_time_lab_1.png', 'dice_over_time_hall-2.png']
    for name in plots:
        image = cv2.imread(str(out / name))
        assert image is not None and image.shape[0] > 100 and image.shape[1] > 100, name
        assert '(%s)' % name in report


def test_cli_reads_a_csv_sessions_file_and_frame_stamps(tmp_path: Path) -> None:
    """A CSV sessions file works, and masks can be matched by the stamps in their names."""
    base = 1_700_000_000_000_000_000
    ref = _moving_squares(6)
    stamp = '%d_%09d.png'
    for name, offset in (('ref', 0), ('ours', 1_000_000)):   # ours stamped 1 ms later
        folder = tmp_path / name
        folder.mkdir()
        for k, mask in ref.items():
            ns = base + k * 33_333_333 + offset
            cv2.imwrite(str(folder / (stamp % (ns // 10 ** 9, ns % 10 ** 9))),
                        mask.astype(np.uint8) * 255)
    (tmp_path / 's.csv').write_text('id,environment,faces,ours,reference\n'
                                    '# comment lines are skipped\n'
                                    'out1,Outside,1,ours,ref\n', encoding='utf-8')
    out = tmp_path / 'out'
    assert ev.main([str(tmp_path / 's.csv'), '-o', str(out), '--match', 'stamp',
                    '--no-plots']) == 0
    rows = _read_csv(out / 'frames.csv')
    assert len(rows) == 6 and all(float(r['dice']) == 1.0 for r in rows)
    assert int(rows[0]['frame']) == base and int(rows[0]['ours_frame']) == base + 1_000_000


def test_size_mismatch_is_an_error_unless_resize(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    """Masks of another size stop the run with a hint; --resize scales ours to the reference."""
    _write_masks(tmp_path / 'ref', {0: _square((40, 60), 10, 10, 20)})
    _write_masks(tmp_path / 'ours', {0: _square((80, 120), 20, 20, 40)})
    (tmp_path / 's.yaml').write_text(yaml.safe_dump([{'id': 'a', 'ours': 'ours',
                                                      'reference': 'ref'}]), encoding='utf-8')
    args = [str(tmp_path / 's.yaml'), '-o', str(tmp_path / 'out'), '--no-plots']
    assert ev.main(args) == 2
    assert '--resize' in capsys.readouterr().err
    assert ev.main(args + ['--resize']) == 0
    rows = _read_csv(tmp_path / 'out' / 'frames.csv')
    assert float(rows[0]['dice']) == pytest.approx(1.0)


def test_bad_sessions_file_gives_a_clear_error(tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    """Unknown fields and missing folders are reported in words, with exit status 2."""
    path = tmp_path / 's.yaml'
    path.write_text(yaml.safe_dump([{'id': 'a', 'ours': 'x', 'refrence': 'y'}]),
                    encoding='utf-8')
    assert ev.main([str(path), '-o', str(tmp_path / 'out')]) == 2
    assert 'unknown fields refrence' in capsys.readouterr().err
    path.write_text(yaml.safe_dump([{'id': 'a', 'ours': 'x', 'reference': 'y'}]),
                    encoding='utf-8')
    assert ev.main([str(path), '-o', str(tmp_path / 'out')]) == 2
    err = capsys.readouterr().err
    assert 'our mask folder' in err and 'does not exist' in err


def test_masks_are_read_from_a_mono8_topic_in_a_bag(tmp_path: Path) -> None:
    """Our masks can come from a rosbag2 mask topic (mono8), matched by message order."""
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import get_typestore, Stores

    store = get_typestore(Stores.ROS2_HUMBLE)
    image_type = store.types['sensor_msgs/msg/Image']
    header_type = store.types['std_msgs/msg/Header']
    time_type = store.types['builtin_interfaces/msg/Time']
    ref = _moving_squares(5, shape=(30, 40))
    with Writer(tmp_path / 'bag', version=8) as writer:
        conn = writer.add_connection('/anonymizer/mask', image_type.__msgtype__,
                                     typestore=store)
        for k, mask in ref.items():
            padded = np.zeros((30, 48), np.uint8)                 # step > width
            padded[:, :40] = mask.astype(np.uint8) * 255
            msg = image_type(header_type(time_type(100 + k, 0), 'cam'), 30, 40, 'mono8', 0,
                             48, padded.reshape(-1))
            writer.write(conn, (100 + k) * 10 ** 9,
                         store.serialize_cdr(msg, image_type.__msgtype__))
    masks = ev.read_bag_masks(tmp_path / 'bag', '/anonymizer/mask', 'index')
    assert sorted(masks) == list(range(5))
    assert all(np.array_equal(masks[k], ref[k]) for k in ref)
    with pytest.raises(ValueError, match='no topic /mask'):
        ev.read_bag_masks(tmp_path / 'bag', '/mask', 'index')


def test_masks_are_read_from_a_bag_that_also_holds_a_service_event_topic(tmp_path: Path
                                                                         ) -> None:
    """
    A bag recorded with service-event topics (Jazzy) still gives its masks.

    rosbags cannot parse the schema ``ros2 bag record`` stores for a service-event topic; the
    evaluation reads bags as the bag tool does, one definition at a time, so that topic does
    not stop the whole bag.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import get_typestore, Stores

    store = get_typestore(Stores.LATEST)
    image_type = store.types['sensor_msgs/msg/Image']
    header_type = store.types['std_msgs/msg/Header']
    time_type = store.types['builtin_interfaces/msg/Time']
    ref = _moving_squares(3, shape=(30, 40))
    service_schema = ('=' * 80 + '\nSRV: example_interfaces/srv/AddTwoInts\n'
                      'int64 a\nint64 b\n---\nint64 sum\n')
    with Writer(tmp_path / 'bag', version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        events = writer.add_connection('/add_two_ints/_service_event',
                                       'example_interfaces/srv/AddTwoInts_Event',
                                       msgdef=service_schema, rihs01='RIHS01_' + 'ab' * 32)
        conn = writer.add_connection('/anonymizer/mask', image_type.__msgtype__,
                                     typestore=store)
        for k, mask in ref.items():
            writer.write(events, (100 + k) * 10 ** 9, bytes(8))
            msg = image_type(header_type(time_type(100 + k, 0), 'cam'), 30, 40, 'mono8', 0,
                             40, (mask.astype(np.uint8) * 255).reshape(-1))
            writer.write(conn, (100 + k) * 10 ** 9 + 1,
                         store.serialize_cdr(msg, image_type.__msgtype__))
    masks = ev.read_bag_masks(tmp_path / 'bag', '/anonymizer/mask', 'stamp')
    assert sorted(masks) == [(100 + k) * 10 ** 9 for k in ref]
    assert all(np.array_equal(masks[(100 + k) * 10 ** 9], ref[k]) for k in ref)


# -- privacy -----------------------------------------------------------------------------------
def _privacy_session(tmp_path: Path, boxes_format: str) -> Path:
    """Track a (40 px face): covered, half covered, covered, then 3 frames without a mask."""
    shape = (100, 120)
    face_a = [20, 20, 60, 60]
    face_b = [80, 10, 100, 30]       # a small (20 px) face, always covered
    masks = {}
    for k in range(6):
        mask = _square(shape, 78, 8, 24)
        if k in (0, 2):
            mask |= _square(shape, 18, 18, 44)
        elif k == 1:
            mask[18:62, 18:40] = True   # left half of face a only
        masks[k] = mask
    _write_masks(tmp_path / 'ours', masks)
    entries = [{'frame': k, 'box': face_a, 'track': 'a'} for k in range(6)]
    entries += [{'frame': k, 'box': face_b, 'track': 'b'} for k in range(6)]
    if boxes_format == 'json':
        (tmp_path / 'boxes.json').write_text(json.dumps(entries), encoding='utf-8')
    else:
        lines = ['frame,x1,y1,x2,y2,track'] + [
            'frame_%06d.png,%s,%s' % (e['frame'], ','.join(map(str, e['box'])), e['track'])
            for e in entries]
        (tmp_path / 'boxes.csv').write_text('\n'.join(lines) + '\n', encoding='utf-8')
    sessions = tmp_path / 'sessions.yaml'
    sessions.write_text(yaml.safe_dump([{'id': 'priv', 'environment': 'Lab', 'faces': 2,
                                         'ours': 'ours', 'boxes': 'boxes.' + boxes_format}]),
                        encoding='utf-8')
    return sessions


@pytest.mark.parametrize('boxes_format', ['json', 'csv'])
def test_privacy_section_finds_leaks_and_the_longest_leak_run(tmp_path: Path,
                                                              boxes_format: str) -> None:
    """A half-covered face leaks, a covered one does not, and a 3-frame leak run is found."""
    sessions = _privacy_session(tmp_path, boxes_format)
    out = tmp_path / 'out'
    assert ev.main([str(sessions), '-o', str(out)]) == 0
    faces = _read_csv(out / 'faces.csv')
    assert len(faces) == 12
    leaked = {(f['track'], int(f['frame'])): f['leaked'] == '1' for f in faces}
    assert [leaked[('a', k)] for k in range(6)] == [False, True, False, True, True, True]
    assert not any(leaked[('b', k)] for k in range(6))
    half = next(f for f in faces if f['track'] == 'a' and f['frame'] == '1')
    assert float(half['coverage']) == pytest.approx(0.5)
    assert {f['size_class'] for f in faces if f['track'] == 'b'} == {'small'}
    report = (out / 'report.md').read_text(encoding='utf-8')
    assert '## Privacy' in report
    # session row: 12 faces, 4 leaked (33.3 %), 4 frames with a leak, longest run 3 frames
    assert '| priv | 12 | 4 | 33.3 % |' in report
    assert '| 4 | 3 | n/a |' in report
    assert '| priv | a | 3 | 3 | 5 |' in report          # track a leaked frames 3..5
    assert '| medium | 32-96 px | 6 | 4 | 66.7 % |' in report
    assert '| small | < 32 px | 6 | 0 | 0.0 % |' in report
    assert '## Dice and Recall' not in report            # no reference masks given


def test_leak_threshold_is_a_parameter(tmp_path: Path) -> None:
    """With a threshold of 0.5 the half-covered face (coverage 0.5) no longer leaks."""
    sessions = _privacy_session(tmp_path, 'json')
    assert ev.main([str(sessions), '-o', str(tmp_path / 'out'), '--leak-threshold',
                    '0.5']) == 0
    faces = _read_csv(tmp_path / 'out' / 'faces.csv')
    assert sum(f['leaked'] == '1' for f in faces) == 3


# -- --produce over real frames with SCRFD -------------------------------------------------------
@pytest.mark.skipif(SCRFD is None, reason=HOW_TO_GET_SCRFD)
@pytest.mark.timeout(120)
def test_produce_runs_the_pipeline_from_raw_frames_to_the_report(tmp_path: Path) -> None:
    """--produce masks real faces, times every stage and no face stays detectable."""
    from insightface.data import get_image

    t1 = get_image('t1')
    height, width = t1.shape[:2]
    dx, dy = 8, 4                                    # the camera moves a little
    moved = np.roll(t1, (dy, dx), axis=(0, 1))
    moved_faces = [[b[0] + dx, b[1] + dy, b[2] + dx, b[3] + dy] for b in T1_FACES]
    frames = {0: (np.full_like(t1, 128), []), 1: (t1, T1_FACES), 2: (moved, moved_faces)}
    (tmp_path / 'images').mkdir()
    refs: Dict[int, np.ndarray] = {}
    boxes = []
    for k, (image, faces) in frames.items():
        cv2.imwrite(str(tmp_path / 'images' / ('frame_%06d.jpg' % k)), image)
        ref = np.zeros((height, width), np.bool_)
        for i, box in enumerate(faces):
            ref[box[1]:box[3], box[0]:box[2]] = True
            boxes.append({'frame': k, 'box': box, 'track': str(i)})
        refs[k] = ref
    _write_masks(tmp_path / 'reference', refs)
    (tmp_path / 'boxes.json').write_text(json.dumps(boxes), encoding='utf-8')
    (tmp_path / 'params.yaml').write_text(yaml.safe_dump({'/**': {'ros__parameters': {
        'detector': {'backend': 'scrfd', 'model_path': str(SCRFD), 'providers': ['cpu']},
        'seed': 1}}}), encoding='utf-8')
    (tmp_path / 'sessions.yaml').write_text(yaml.safe_dump([{
        'id': 't1', 'environment': 'Outside', 'faces': 6, 'images': 'images',
        'reference': 'reference', 'boxes': 'boxes.json'}]), encoding='utf-8')
    out = tmp_path / 'out'
    assert ev.main([str(tmp_path / 'sessions.yaml'), '-o', str(out), '--produce',
                    '--params-file', str(tmp_path / 'params.yaml'), '--save-anonymized',
                    '--max-shift', '1']) == 0

    produced = out / 'produced' / 't1'
    timings = _read_csv(produced / 'timings.csv')
    assert [int(t['frame']) for t in timings] == [0, 1, 2]
    assert int(timings[0]['faces']) == 0 and all(int(t['faces']) >= 6 for t in timings[1:])
    assert all(float(t['total_ms']) > float(t['detect_ms']) > 0 for t in timings)
    assert all(t['failed_closed'] == '0' for t in timings)
    assert 'held_boxes' in timings[0]                           # filled when tracking is on
    assert [int(t['residual']) for t in timings] == [0, 0, 0]   # mosaic hides every face
    for k in range(3):
        anonymized = cv2.imread(str(produced / 'anonymized' / ('frame_%06d.png' % k)))
        assert anonymized is not None and anonymized.shape == t1.shape
    x1, y1, x2, y2 = T1_FACES[0]
    face_diff = np.abs(cv2.imread(str(produced / 'anonymized' / 'frame_000001.png'))
                       [y1:y2, x1:x2].astype(int) - t1[y1:y2, x1:x2].astype(int))
    assert face_diff.mean() > 5                                # face pixels were replaced

    rows = _read_csv(out / 'frames.csv')
    assert [int(r['frame']) for r in rows] == [0, 1, 2] and {r['shift'] for r in rows} == {'0'}
    assert rows[0]['both_empty'] == '1'
    assert all(float(r['recall']) > 0.95 and float(r['dice']) > 0.5 for r in rows[1:])
    faces = _read_csv(out / 'faces.csv')
    assert len(faces) == 12 and all(f['leaked'] == '0' for f in faces)
    assert all(f['residual'] == '0' for f in faces)
    report = (out / 'report.md').read_text(encoding='utf-8')
    assert '## Speed' in report and '| t1 | end to end | 3 |' in report
    assert '| t1 | 12 | 0 | 0.0 % |' in report and '0 / 12' in report

    # The produced masks and timings evaluate again later without running the detector.
    (tmp_path / 'again.yaml').write_text(yaml.safe_dump([{
        'id': 't1', 'environment': 'Outside', 'faces': 6, 'ours': 'out/produced/t1/masks',
        'reference': 'reference',
        'boxes': 'boxes.json', 'timings': 'out/produced/t1/timings.csv'}]), encoding='utf-8')
    assert ev.main([str(tmp_path / 'again.yaml'), '-o', str(tmp_path / 'again'),
                    '--no-plots']) == 0
    again = (tmp_path / 'again' / 'report.md').read_text(encoding='utf-8')
    assert '| t1 | end to end | 3 |' in again and '| t1 | 12 | 0 | 0.0 % |' in again
    assert _read_csv(tmp_path / 'again' / 'frames.csv') == rows


def _aligned_session(tmp_path: Path) -> Path:
    """
    Write 12 perfectly aligned frames: a face moving 1 px a frame, our masks padded around it.

    Our first three masks are padded a little more (as when a detector settles in), so a
    shift of +3, which leaves exactly those three out, scores a slightly higher mean Dice.
    """
    reference, ours = {}, {}
    for k in range(12):
        reference[k] = _square((80, 100), 30 + k, 30, 20)
        pad = 6 if k < 3 else 5
        ours[k] = _square((80, 100), 30 + k - pad, 30 - pad, 20 + 2 * pad)
    _write_masks(tmp_path / 'ref', reference)
    _write_masks(tmp_path / 'ours', ours)
    sessions = tmp_path / 'sessions.yaml'
    sessions.write_text(yaml.safe_dump([{'id': 'aligned', 'ours': 'ours', 'reference': 'ref'}]),
                        encoding='utf-8')
    return sessions


def test_shift_search_keeps_zero_on_aligned_frames(tmp_path: Path) -> None:
    """Aligned frames stay at shift 0 even when +3 has a higher mean over fewer frames."""
    sessions = _aligned_session(tmp_path)
    reference = {k: ev.read_mask(p)
                 for k, p in ev.list_frames(tmp_path / 'ref', 'index', 'reference')}
    ours = {k: ev.read_mask(p) for k, p in ev.list_frames(tmp_path / 'ours', 'index', 'ours')}
    scores = ev.shift_scores(reference, ours, max_shift=3)
    assert scores[3][0] > scores[0][0], 'the data must tempt a search by mean Dice alone'
    frame_dice = ev.shift_frame_dice(reference, ours, max_shift=3)
    assert ev.best_shift(scores, frame_dice=frame_dice) == 0
    assert ev.main([str(sessions), '-o', str(tmp_path / 'out'), '--no-plots']) == 0
    rows = _read_csv(tmp_path / 'out' / 'frames.csv')
    assert len(rows) == 12 and {r['shift'] for r in rows} == {'0'}


def test_shift_search_names_the_frames_a_shift_drops(tmp_path: Path) -> None:
    """A real two-frame lag is still found, and the report names the frames it leaves out."""
    reference = _moving_squares(12)
    ours = {k + 2: m for k, m in reference.items()}
    _write_masks(tmp_path / 'ref', reference)
    _write_masks(tmp_path / 'ours', ours)
    sessions = tmp_path / 'sessions.yaml'
    sessions.write_text(yaml.safe_dump([{'id': 'lagging', 'ours': 'ours', 'reference': 'ref'}]),
                        encoding='utf-8')
    assert ev.main([str(sessions), '-o', str(tmp_path / 'out'), '--no-plots']) == 0
    rows = _read_csv(tmp_path / 'out' / 'frames.csv')
    assert {r['shift'] for r in rows} == {'2'} and len(rows) == 12
    # Shift 0 pairs reference frames 2..11; +2 pairs all twelve, so it drops none.
    result = ev.evaluate_session(ev.Session('lagging'), ours, reference=reference, max_shift=3)
    assert result.shift == 2 and result.dropped_by_shift == []
    # Ours two frames ahead: shift 0 pairs reference 0..9, -2 pairs 2..11 and drops 0 and 1.
    leading = {k - 2: m for k, m in reference.items() if k >= 2}
    result = ev.evaluate_session(ev.Session('leading'), leading, reference=reference,
                                 max_shift=3)
    assert result.shift == -2
    assert result.dropped_by_shift == [0, 1]
    report = (tmp_path / 'out' / 'report.md').read_text(encoding='utf-8')
    assert 'dropped by the shift' in report
