"""
Evaluate our face masks against reference masks, ground-truth boxes and timings.

``evaluate_masks SESSIONS`` reads a sessions file (YAML or CSV), aligns our masks with the
reference masks of each session (e.g. SAM masks of the same recording), and writes a per-frame
CSV, a Markdown (optionally HTML) report and PNG plots. With ``--produce`` it first runs the
anonymization pipeline over each session's images, so one command goes from raw frames to the
report. The report has four parts:

* Dice and Recall per session, environment, face count and overall;
* speed (FPS, latency percentiles per stage) from the per-frame timings;
* privacy (per-face coverage of ground-truth boxes, leak rate, leak runs, faces the detector
  still finds in the anonymized frames) when ground-truth boxes are given.

Modules: ``metrics`` (pure numpy: Dice, Recall, shifts, coverage, aggregation), ``frames``
(frame keys, alignment, mask frames from folders and bags), ``sessions`` (sessions, boxes and
timings files, CSV), ``produce`` (``--produce``: the pipeline over a session's images),
``scoring`` (one session scored), ``report`` (Markdown / HTML), ``plots`` and ``cli``. Every
public name is re-exported here, so ``from av_privacy_ros.evaluation import ...`` keeps working.
"""

from .cli import build_parser, FACE_COLUMNS, FRAME_COLUMNS, main, run
from .frames import (bag_images, frame_key, IMAGE_EXTENSIONS, in_range, list_frames,
                     MATCH_MODES, PathLike, read_bag_masks, read_mask, stamp_positions)
from .metrics import (aggregate_frames, aggregate_tables, best_shift, box_coverage,
                      centres_in_mask, dice_recall, face_size, group_rows, LARGE_FACE_PX,
                      latency_stats, longest_run, pair_positions, privacy_summary,
                      shift_frame_dice, SHIFT_MARGIN, shift_scores, size_class, SIZE_CLASSES,
                      SMALL_FACE_PX, STAT_KEYS, summarize)
from .plots import plot_distributions, plot_over_time
from .produce import build_masker, held_box_count, produce_session, Produced
from .report import (Block, build_report, DEFINITIONS, frame_list, metric_table, privacy_blocks,
                     render_html, render_markdown, speed_blocks)
from .scoring import evaluate_session, load_ours, RESIDUAL_IOU, SessionResult
from .sessions import (box_frame_key, load_sessions, order_stages, parse_sessions, read_boxes,
                       read_timings, safe_name, Session, SESSION_FIELDS, TIMING_STAGES, write_csv)

__all__ = [
    'aggregate_frames', 'aggregate_tables', 'bag_images', 'best_shift', 'Block', 'box_coverage',
    'box_frame_key', 'build_masker', 'build_parser', 'build_report', 'centres_in_mask',
    'DEFINITIONS', 'dice_recall', 'evaluate_session', 'FACE_COLUMNS', 'face_size',
    'FRAME_COLUMNS', 'frame_key', 'frame_list', 'group_rows', 'held_box_count',
    'IMAGE_EXTENSIONS', 'in_range', 'LARGE_FACE_PX', 'latency_stats', 'list_frames',
    'load_ours', 'load_sessions', 'longest_run', 'main', 'MATCH_MODES', 'metric_table',
    'order_stages', 'pair_positions', 'parse_sessions', 'PathLike', 'plot_distributions',
    'plot_over_time', 'privacy_blocks', 'privacy_summary', 'produce_session', 'Produced',
    'read_bag_masks', 'read_boxes', 'read_mask', 'read_timings', 'render_html',
    'render_markdown', 'RESIDUAL_IOU', 'run', 'safe_name', 'Session', 'SESSION_FIELDS',
    'SessionResult', 'shift_frame_dice', 'SHIFT_MARGIN', 'shift_scores', 'size_class',
    'SIZE_CLASSES', 'SMALL_FACE_PX', 'speed_blocks', 'stamp_positions', 'STAT_KEYS',
    'summarize', 'TIMING_STAGES', 'write_csv',
]
