"""Command line: ``anonymize_archive INPUT_DIR OUTPUT_DIR [options]``."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Dict, Optional, Sequence

from .manifest import MANIFEST_NAME
from .runner import run_archive
from ..bag.api import DEFAULT_BACKWARD_FRAMES, DEFAULT_JPEG_QUALITY
from ..bag.cli import add_parameter_options, parameter_overrides, stop_on_sigterm


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser of anonymize_archive."""
    parser = argparse.ArgumentParser(
        prog='anonymize_archive',
        description='Anonymize every bag under INPUT_DIR (rosbag2 folders and ROS 1 .bag '
                    'files, at any depth) into the same relative path under OUTPUT_DIR, one '
                    'bag per Ray task, with the behaviour of anonymize_bag. Resumable: %s in '
                    'OUTPUT_DIR records every bag finished.' % MANIFEST_NAME)
    parser.add_argument('input', metavar='INPUT_DIR', help='folder tree holding the bags')
    parser.add_argument('output', metavar='OUTPUT_DIR',
                        help='output folder (outside INPUT_DIR); created when missing')
    add_parameter_options(parser)
    parser.add_argument('--address', metavar='ADDR',
                        help='Ray cluster to join: auto or ray://host:port (default: start a '
                             'local cluster on this machine)')
    parser.add_argument('--num-workers', type=int, metavar='N',
                        help='workers (Ray actors, each with its own detector); default: one '
                             'per CPU, or one per --gpus-per-worker GPUs')
    parser.add_argument('--gpus-per-worker', type=float, default=0.0, metavar='G',
                        help='GPUs each worker reserves (e.g. 1 or 0.5; default 0: CPU)')
    parser.add_argument('--retries', type=int, default=2, metavar='R',
                        help='times a bag is tried again after its worker died or an '
                             'unexpected error (default %(default)s); a bad input is not '
                             'retried')
    parser.add_argument('--storage', choices=('mcap', 'sqlite3'),
                        help="output storage (default: each input's; mcap for ROS 1 input)")
    parser.add_argument('--force', action='store_true',
                        help='replace outputs that exist but are not in the manifest')
    parser.add_argument('--image-topic', action='append', default=[], metavar='TOPIC',
                        help='colour topic in every bag, paired with --depth-topic (repeatable); '
                             'every image topic is anonymized either way')
    parser.add_argument('--depth-topic', action='append', default=[], metavar='TOPIC',
                        help='depth topic in every bag (repeatable)')
    parser.add_argument('--copy-topic', action='append', default=[], metavar='TOPIC',
                        help='copy this topic unchanged, WITHOUT anonymization, even when it '
                             'holds images (repeatable; the summary lists it)')
    parser.add_argument('--write-masks', action='store_true',
                        help='add a mono8 mask topic <colour topic>/mask per colour topic')
    parser.add_argument('--jpeg-quality', type=int, default=DEFAULT_JPEG_QUALITY, metavar='Q',
                        help='JPEG quality of re-encoded compressed images (default %(default)s)')
    parser.add_argument('--backward-frames', type=int, default=DEFAULT_BACKWARD_FRAMES,
                        metavar='N', help='also mask a newly found face in the N frames before '
                        'it (default %(default)s)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bars')
    return parser


def bag_options(args: argparse.Namespace) -> Dict[str, Any]:
    """Return the anonymize_bag keyword options the command line sets."""
    return {'image_topics': list(args.image_topic), 'depth_topics': list(args.depth_topic),
            'copy_topics': list(args.copy_topic),
            'storage': args.storage, 'write_masks': bool(args.write_masks),
            'jpeg_quality': int(args.jpeg_quality),
            'backward_frames': int(args.backward_frames)}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the anonymize_archive command line; return the exit status."""
    args = build_parser().parse_args(argv)
    if argv is None:
        stop_on_sigterm()  # unwinds like Ctrl-C: workers stopped, staging folders removed

    def say(text: str) -> None:
        print(text, flush=True)

    try:
        overrides = parameter_overrides(args.params_file, args.param)
        report = run_archive(args.input, args.output, params=overrides,
                             bag_options=bag_options(args), force=args.force,
                             address=args.address, num_workers=args.num_workers,
                             gpus_per_worker=args.gpus_per_worker, retries=args.retries,
                             show_progress=not args.no_progress, log=say)
    except (ValueError, RuntimeError) as exc:
        print('anonymize_archive: error: %s' % exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('anonymize_archive: interrupted; finished bags are in the manifest, a rerun '
              'does the rest', file=sys.stderr)
        return 130
    for line in report.lines():
        say(line)
    if report.failed:
        print('anonymize_archive: error: %d bag(s) failed (see FAILED above and %s)'
              % (len(report.failed), MANIFEST_NAME), file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
