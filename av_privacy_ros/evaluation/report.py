"""The evaluation report: blocks (headings, paragraphs, tables, images), Markdown and HTML."""

from __future__ import annotations

import html
import math
from typing import Any, List, Mapping, Sequence, Tuple

import numpy as np

from .metrics import (aggregate_tables, LARGE_FACE_PX, latency_stats, privacy_summary,
                      SHIFT_MARGIN, SIZE_CLASSES, SMALL_FACE_PX)
from .scoring import RESIDUAL_IOU, SessionResult
from .sessions import order_stages

Block = Tuple[Any, ...]


def _f(value: Any, digits: int = 3) -> str:
    if value is None:
        return '-'
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return '-'
        if math.isinf(value):
            return 'inf'
        return '%.*f' % (digits, value)
    return str(value)


def _pct(value: float) -> str:
    return '-' if value is None or math.isnan(value) else '%.1f %%' % (100.0 * value)


def metric_table(groups: Mapping[Any, Mapping[str, Any]], label: str) -> Block:
    """Return a table block of Dice/Recall aggregates, one row per group."""
    header = [label, 'frames', 'both empty', 'Dice mean', 'Dice std', 'Dice median',
              'Dice p5', 'Recall mean', 'Recall std', 'Recall median', 'Recall p5',
              'Dice (face frames)']
    rows = []
    for name, agg in groups.items():
        rows.append([str(name) or '-', str(agg['frames']), str(agg['both_empty'])]
                    + [_f(agg['dice'][k]) for k in ('mean', 'std', 'median', 'p5')]
                    + [_f(agg['recall'][k]) for k in ('mean', 'std', 'median', 'p5')]
                    + [_f(agg['dice_faces']['mean'])])
    return ('table', header, rows)


def speed_blocks(results: Sequence[SessionResult]) -> List[Block]:
    """Return the speed section: latency percentiles per stage, per session and overall."""
    timed = [r for r in results if r.timings]
    if not timed:
        return []
    header = ['session', 'stage', 'frames', 'mean ms', 'p50 ms', 'p95 ms', 'p99 ms',
              'max ms', 'FPS']
    rows = []
    groups: List[Tuple[str, List[Mapping[str, Any]]]] = [
        (r.session.name, list(r.timings.values())) for r in timed]
    if len(timed) > 1:
        groups.append(('all', [t for r in timed for t in r.timings.values()]))
    failed = 0
    stages = order_stages(s for r in timed for t in r.timings.values() for s in t['stages'])
    for name, values in groups:
        for stage in stages:
            stats = latency_stats(t['stages'].get(stage, math.nan) for t in values)
            if stats['n'] == 0:
                continue
            rows.append([name, stage if stage != 'total' else 'end to end', str(stats['n'])]
                        + [_f(stats[k], 2) for k in ('mean_ms', 'p50_ms', 'p95_ms', 'p99_ms',
                                                     'max_ms')]
                        + [_f(stats['fps'], 1) if stage == 'total' else ''])
    for r in timed:
        failed += sum(1 for t in r.timings.values()
                      if str(t.get('failed_closed', '0')).lower() in ('1', 'true'))
    return [('h', 2, 'Speed'),
            ('p', 'Latency per pipeline stage from the per-frame timings (one frame at a time, '
                  'after a warm-up frame). FPS = 1 / mean end-to-end latency. Frames that '
                  'failed closed (anonymized over the whole frame): %d.' % failed),
            ('table', header, rows)]


def privacy_blocks(results: Sequence[SessionResult], leak_threshold: float) -> List[Block]:
    """Return the privacy section from the per-face coverage records."""
    with_boxes = [r for r in results if r.faces or r.boxes_without_mask]
    if not with_boxes:
        return []
    blocks: List[Block] = [
        ('h', 2, 'Privacy'),
        ('p', 'Each ground-truth face box is checked against our mask of the same frame. '
              'Coverage = fraction of the box pixels inside our mask; a face leaks when its '
              'coverage is below %.2f. Sizes: sqrt(box width × box height) — small < %d px, '
              'medium %d-%d px, large ≥ %d px.' % (leak_threshold, SMALL_FACE_PX,
                                                   SMALL_FACE_PX, LARGE_FACE_PX, LARGE_FACE_PX))]
    header = ['session', 'faces', 'leaked', 'leak rate', 'coverage mean', 'coverage p5',
              'frames with a leak', 'longest leak run (frames)', 'residual detected']
    rows = []
    summaries = [(r.session.name, privacy_summary(r.faces), r) for r in with_boxes]
    everything = [f for r in with_boxes for f in r.faces]
    for name, summary, r in summaries:
        residual = ('%d / %d' % (summary['residual_detected'], summary['residual_checked'])
                    if r.residual_available else 'n/a')
        rows.append([name, str(summary['faces']), str(summary['leaked']),
                     _pct(summary['leak_rate']), _f(summary['coverage']['mean']),
                     _f(summary['coverage']['p5']), str(summary['frames_with_leak']),
                     str(summary['longest_frame_run']), residual])
    if len(summaries) > 1:
        total = privacy_summary(everything)
        residual_any = any(r.residual_available for r in with_boxes)
        rows.append(['all', str(total['faces']), str(total['leaked']), _pct(total['leak_rate']),
                     _f(total['coverage']['mean']), _f(total['coverage']['p5']),
                     str(total['frames_with_leak']),
                     str(max(s['longest_frame_run'] for _, s, _ in summaries)),
                     ('%d / %d' % (total['residual_detected'], total['residual_checked'])
                      if residual_any else 'n/a')])
    blocks.append(('table', header, rows))
    total = privacy_summary(everything)
    size_rows = []
    ranges = {'small': '< %d px' % SMALL_FACE_PX,
              'medium': '%d-%d px' % (SMALL_FACE_PX, LARGE_FACE_PX),
              'large': '≥ %d px' % LARGE_FACE_PX}
    for name in SIZE_CLASSES:
        item = total['by_size'][name]
        size_rows.append([name, ranges[name], str(item['faces']), str(item['leaked']),
                          _pct(item['rate'])])
    blocks += [('h', 3, 'Leaked faces by size'),
               ('table', ['size', 'range', 'faces', 'leaked', 'leak rate'], size_rows)]
    run_rows = []
    for name, summary, _ in summaries:
        for track, (length, first) in summary['track_runs'].items():
            run_rows.append((length, name, track, first))
    if run_rows:
        run_rows.sort(key=lambda item: (-item[0], item[1], str(item[2])))
        blocks += [('h', 3, 'Longest runs of consecutive leaked frames per track'),
                   ('table', ['session', 'track', 'frames', 'first frame', 'last frame'],
                    [[s, str(t), str(n), str(f), str(f + n - 1)]
                     for n, s, t, f in run_rows[:25]])]
        if len(run_rows) > 25:
            blocks.append(('p', '%d more tracks leaked; see faces.csv.' % (len(run_rows) - 25)))
    notes = []
    missing = sum(r.boxes_without_mask for r in with_boxes)
    if missing:
        notes.append('%d ground-truth boxes are on frames without our mask and were skipped.'
                     % missing)
    outside = total['outside']
    if outside:
        notes.append('%d boxes lie wholly outside the image and were skipped.' % outside)
    if any(r.residual_available for r in with_boxes):
        notes.append('Residual detected: ground-truth faces the detector still finds (IoU ≥ '
                     '%.1f) in the anonymized frame.' % RESIDUAL_IOU)
    else:
        notes.append('Residual detectability needs --produce (the anonymized frames).')
    blocks.append(('p', ' '.join(notes)))
    return blocks


DEFINITIONS = (
    'Dice = 2|A∩B| / (|A| + |B|) and Recall = |A∩B| / |B|, with A = our mask and B = the '
    'reference mask of the same frame. A frame where both masks are empty counts as agreement '
    '(Dice 1, Recall 1) and is counted in the "both empty" column; "Dice (face frames)" '
    'leaves those frames out. Reference empty but ours not: Dice 0, Recall 1; ours empty but '
    'the reference not: Dice 0, Recall 0. std is the population standard deviation; p5 the '
    '5th percentile (linear interpolation). A shift s pairs reference frame f with our frame '
    'f + s; shift 0 is used unless another shift raises the mean Dice by at least %.2f over '
    'the frames both pair, then the shift with the largest gain.' % SHIFT_MARGIN)


def frame_list(frames: Sequence[int], limit: int = 10) -> str:
    """Return frame numbers as a short text: '9, 10, 11', '-' for none, the rest counted."""
    if not frames:
        return '-'
    text = ', '.join(str(f) for f in frames[:limit])
    if len(frames) > limit:
        text += ' and %d more' % (len(frames) - limit)
    return text


def build_report(results: Sequence[SessionResult], settings: Mapping[str, Any],
                 plots: Mapping[str, str]) -> List[Block]:
    """Return the report as blocks: ('h', level, text), ('p', text), ('table', ...), ('img')."""
    blocks: List[Block] = [
        ('h', 1, 'Mask evaluation report'),
        ('p', 'Sessions: %d. Frame matching: %s; shift search ±%d frames; resize: %s; leak '
              'threshold %.2f.' % (len(results), settings['match'], settings['max_shift'],
                                   'yes' if settings['resize'] else 'no',
                                   settings['leak_threshold']))]
    rows = [r for result in results for r in result.frames]
    scored = [r for r in results if r.shift is not None]
    if scored:
        align_rows = []
        for r in scored:
            shift = r.shift if r.shift is not None else 0  # always set: scored sessions only
            at_zero = r.shift_scores.get(0, (math.nan, 0))[0]
            align_rows.append([r.session.name, r.session.environment or '-',
                               r.session.faces or '-', str(r.ours_frames),
                               str(r.reference_frames), str(len(r.frames)), '%+d' % shift,
                               _f(at_zero), _f(r.shift_scores[shift][0]),
                               str(r.reference_without_ours),
                               frame_list(r.dropped_by_shift), str(r.ours_unmatched)])
        blocks += [('h', 2, 'Alignment'),
                   ('p', 'Shift 0 (frames paired as named) is kept unless another shift raises '
                         'the mean Dice by at least %.2f over the reference frames both shifts '
                         'pair. "Dropped by the shift" names the reference frames that shift 0 '
                         'pairs with one of ours and the chosen shift does not score.'
                         % SHIFT_MARGIN),
                   ('table', ['session', 'environment', 'faces', 'our frames',
                              'reference frames', 'pairs', 'shift', 'mean Dice at 0',
                              'mean Dice at shift', 'reference without ours',
                              'dropped by the shift', 'ours unmatched'], align_rows)]
        tables = aggregate_tables(rows)
        blocks += [('h', 2, 'Dice and Recall'),
                   ('h', 3, 'Overall'), metric_table(tables['overall'], 'group'),
                   ('h', 3, 'Per environment'), metric_table(tables['environment'],
                                                             'environment'),
                   ('h', 3, 'Per face count'), metric_table(tables['faces'], 'faces'),
                   ('h', 3, 'Per session'), metric_table(tables['session'], 'session')]
        for key in ('environment', 'faces'):
            if key in plots:
                blocks.append(('img', plots[key], 'Dice and Recall per %s'
                               % ('face count' if key == 'faces' else key)))
        for r in scored:
            name = 'time:' + r.session.name
            if name in plots:
                blocks.append(('img', plots[name], 'Dice over time, session %s' % r.session.name))
    blocks += speed_blocks(results)
    blocks += privacy_blocks(results, settings['leak_threshold'])
    blocks += [('h', 2, 'Definitions'), ('p', DEFINITIONS)]
    return blocks


def render_markdown(blocks: Sequence[Block]) -> str:
    """Render report blocks as Markdown."""
    lines: List[str] = []
    for block in blocks:
        if block[0] == 'h':
            lines += ['#' * block[1] + ' ' + block[2], '']
        elif block[0] == 'p':
            lines += [block[1], '']
        elif block[0] == 'table':
            header, rows = block[1], block[2]
            lines.append('| ' + ' | '.join(header) + ' |')
            lines.append('|' + '---|' * len(header))
            lines += ['| ' + ' | '.join(cell.replace('|', '/') for cell in row) + ' |'
                      for row in rows]
            lines.append('')
        elif block[0] == 'img':
            lines += ['![%s](%s)' % (block[2], block[1]), '']
    return '\n'.join(lines)


def render_html(blocks: Sequence[Block]) -> str:
    """Render report blocks as a standalone HTML page."""
    parts = ['<!DOCTYPE html>', '<html><head><meta charset="utf-8">',
             '<title>Mask evaluation report</title>',
             '<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;'
             'margin-bottom:1em}td,th{border:1px solid #999;padding:2px 6px;text-align:right}'
             'td:first-child{text-align:left}img{max-width:100%}</style>', '</head><body>']
    esc = html.escape
    for block in blocks:
        if block[0] == 'h':
            parts.append('<h%d>%s</h%d>' % (block[1], esc(block[2]), block[1]))
        elif block[0] == 'p':
            parts.append('<p>%s</p>' % esc(block[1]))
        elif block[0] == 'table':
            parts.append('<table><tr>' + ''.join('<th>%s</th>' % esc(h) for h in block[1])
                         + '</tr>')
            for row in block[2]:
                parts.append('<tr>' + ''.join('<td>%s</td>' % esc(c) for c in row) + '</tr>')
            parts.append('</table>')
        elif block[0] == 'img':
            parts.append('<p><img src="%s" alt="%s"></p>' % (esc(block[1]), esc(block[2])))
    parts.append('</body></html>')
    return '\n'.join(parts)
