"""Command line of ``evaluate_masks``: parse arguments, run the sessions, write the files."""

from __future__ import annotations

import argparse
from pathlib import Path
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

from .frames import list_frames, MATCH_MODES, read_mask
from .metrics import SHIFT_MARGIN
from .plots import plot_distributions, plot_over_time
from .produce import build_masker, produce_session
from .report import build_report, frame_list, render_html, render_markdown
from .scoring import evaluate_session, load_ours, SessionResult
from .sessions import load_sessions, read_boxes, read_timings, safe_name, write_csv

FRAME_COLUMNS = ['session', 'environment', 'faces', 'frame', 'ours_frame', 'shift', 'dice',
                 'recall', 'both_empty', 'ours_pixels', 'reference_pixels', 'detected',
                 'held_boxes', 'total_ms']
FACE_COLUMNS = ['session', 'frame', 'track', 'x1', 'y1', 'x2', 'y2', 'size', 'size_class',
                'coverage', 'leaked', 'residual']


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser of evaluate_masks."""
    parser = argparse.ArgumentParser(
        prog='evaluate_masks',
        description='Compare our face masks with reference masks (Dice, Recall), check '
                    'ground-truth face boxes for leaks, and report speed.')
    parser.add_argument('sessions', help='sessions file (.yaml/.yml or .csv)')
    parser.add_argument('-o', '--output', default='evaluation_output',
                        help='output folder (default: %(default)s)')
    parser.add_argument('--max-shift', type=int, default=3,
                        help='search frame offsets in [-k, k] per session (default: '
                             '%%(default)s; 0 disables); shift 0 is kept unless another shift '
                             'raises the mean Dice by %.2f over the frames both pair'
                             % SHIFT_MARGIN)
    parser.add_argument('--match', choices=MATCH_MODES, default='index',
                        help='match frames by the index or the stamp in the file names '
                             '(default: %(default)s)')
    parser.add_argument('--stamp-tolerance', type=float, default=0.005,
                        help='seconds two stamps may differ and still match (default: '
                             '%(default)s)')
    parser.add_argument('--resize', action='store_true',
                        help='scale our masks to the reference size instead of failing')
    parser.add_argument('--leak-threshold', type=float, default=0.9,
                        help='a face leaks when our mask covers less than this fraction of '
                             'its ground-truth box (default: %(default)s)')
    parser.add_argument('--html', action='store_true', help='also write report.html')
    parser.add_argument('--no-plots', action='store_true', help='skip the PNG plots')
    parser.add_argument('--produce', action='store_true',
                        help="run the anonymizer over each session's images first")
    parser.add_argument('--params-file', default=None,
                        help='node parameters YAML for --produce (default: the defaults)')
    parser.add_argument('--save-anonymized', action='store_true',
                        help='with --produce, also save the anonymized frames')
    parser.add_argument('--no-residual', action='store_true',
                        help='with --produce, skip re-detecting faces in anonymized frames')
    return parser


def run(args: argparse.Namespace, log: Callable[[str], None] = print) -> Dict[str, Path]:
    """Run the evaluation described by parsed arguments; return the files written."""
    if args.max_shift < 0:
        raise ValueError('--max-shift must be >= 0, got %d' % args.max_shift)
    if not 0.0 < args.leak_threshold <= 1.0:
        raise ValueError('--leak-threshold must be in (0, 1], got %s' % args.leak_threshold)
    if args.stamp_tolerance < 0:
        raise ValueError('--stamp-tolerance must be >= 0, got %s' % args.stamp_tolerance)
    sessions = load_sessions(args.sessions)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    masker, process_kw = (build_masker(args.params_file) if args.produce else (None, {}))
    tolerance_ns = int(round(args.stamp_tolerance * 1e9))
    results: List[SessionResult] = []
    for session in sessions:
        started = time.perf_counter()
        produced = None
        if args.produce:
            if session.ours is not None:
                log('%s: --produce writes new masks; the ours folder is not used'
                    % session.name)
            produced = produce_session(session, masker, process_kw,
                                       out / 'produced' / safe_name(session.name), args.match,
                                       save_anonymized=args.save_anonymized,
                                       residual=not args.no_residual, log=log)
        ours = load_ours(session, args.match, produced)
        reference = None
        if session.reference is not None:
            reference = {k: read_mask(p)
                         for k, p in list_frames(session.reference, args.match, 'reference')}
        boxes = read_boxes(session.boxes, args.match) if session.boxes else None
        timings_path = produced.timings if produced else session.timings
        timings = read_timings(timings_path, args.match) if timings_path else None
        if reference is None and not boxes and not timings:
            raise ValueError('session %s has nothing to evaluate: give reference masks, '
                             'ground-truth boxes or timings' % session.name)
        result = evaluate_session(
            session, ours, args.match, args.max_shift, args.resize, args.leak_threshold,
            tolerance_ns, reference, boxes, timings,
            produced.residual if produced and not args.no_residual else None)
        results.append(result)
        log('%s: %d frames scored, shift %s%s, %.1f s'
            % (session.name, len(result.frames),
               '-' if result.shift is None else '%+d' % result.shift,
               ' (drops reference frames %s)' % frame_list(result.dropped_by_shift)
               if result.dropped_by_shift else '',
               time.perf_counter() - started))
    written: Dict[str, Path] = {}
    rows = [r for result in results for r in result.frames]
    if rows:
        written['frames'] = out / 'frames.csv'
        write_csv(written['frames'], FRAME_COLUMNS, rows)
    faces = [f for result in results for f in result.faces]
    if faces:
        written['faces'] = out / 'faces.csv'
        write_csv(written['faces'], FACE_COLUMNS, faces)
    plots: Dict[str, str] = {}
    if rows and not args.no_plots:
        for key, label in (('environment', 'environment'), ('faces', 'face count')):
            name = 'dice_recall_by_%s.png' % key
            plot_distributions(rows, key, label, out / name)
            plots[key] = name
            written['plot_' + key] = out / name
        for result in results:
            if result.frames:
                name = 'dice_over_time_%s.png' % safe_name(result.session.name)
                plot_over_time(result, out / name)
                plots['time:' + result.session.name] = name
                written['plot_time_' + result.session.name] = out / name
    settings = {'match': args.match, 'max_shift': args.max_shift, 'resize': args.resize,
                'leak_threshold': args.leak_threshold}
    blocks = build_report(results, settings, plots)
    written['report'] = out / 'report.md'
    written['report'].write_text(render_markdown(blocks), encoding='utf-8')
    if args.html:
        written['html'] = out / 'report.html'
        written['html'].write_text(render_html(blocks), encoding='utf-8')
    return written


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Evaluate masks from the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        written = run(args, log=lambda text: print(text, file=sys.stderr))
    except ValueError as exc:
        print('evaluate_masks: error: %s' % exc, file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - e.g. a corrupt model: one line, no traceback
        print('evaluate_masks: error: %s: %s' % (type(exc).__name__, ' '.join(str(exc).split())),
              file=sys.stderr)
        return 2
    print('report: %s' % written['report'])
    return 0
