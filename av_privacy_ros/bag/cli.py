"""
The anonymize_bag command line.

Also the pieces anonymize_archive shares with it: ``--param`` parsing, parameter overrides
from ``--params-file`` and ``--param``, and SIGTERM handling.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Dict, Iterable, Optional, Sequence, Tuple

from .api import anonymize_bag, DEFAULT_BACKWARD_FRAMES, DEFAULT_JPEG_QUALITY
from .errors import BagError, one_line
from .. import params as params_mod


def parse_param(text: str) -> Tuple[str, Any]:
    """Parse a command-line ``NAME=VALUE`` parameter, the value read as YAML."""
    import yaml
    name, sep, value = text.partition('=')
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError('expected NAME=VALUE, got %r' % text)
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        parsed = value
    return name.strip(), parsed


def add_parameter_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--params-file`` and ``--param`` (read by :func:`parameter_overrides`)."""
    parser.add_argument('--params-file', metavar='YAML',
                        help='node parameters file (/**: ros__parameters: ...)')
    parser.add_argument('--param', '-p', action='append', default=[], type=parse_param,
                        metavar='NAME=VALUE',
                        help='one parameter, e.g. -p detector.conf_thresh:=0.3 is written '
                             'detector.conf_thresh=0.3 (repeatable, after --params-file)')


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser of anonymize_bag."""
    parser = argparse.ArgumentParser(
        prog='anonymize_bag',
        description='Anonymize faces in the image topics of a recorded bag (rosbag2 sqlite3 '
                    'or mcap, or ROS 1 .bag) and write a new rosbag2 bag; every other message '
                    'is copied unchanged.')
    parser.add_argument('input', help='input bag: rosbag2 folder, .mcap/.db3 file or ROS 1 '
                        '.bag file')
    parser.add_argument('output', help='output rosbag2 folder (must not exist unless --force)')
    parser.add_argument('--image-topic', action='append', default=[], metavar='TOPIC',
                        help='colour topic (repeatable), treated as colour even with a depth '
                             'name; every other image topic is anonymized too')
    parser.add_argument('--depth-topic', action='append', default=[], metavar='TOPIC',
                        help='depth topic (repeatable); one per --image-topic pairs by order, '
                             'otherwise by camera name')
    add_parameter_options(parser)
    parser.add_argument('--storage', choices=('mcap', 'sqlite3'),
                        help="output storage (default: the input's; mcap for ROS 1 input)")
    parser.add_argument('--copy-topic', action='append', default=[], metavar='TOPIC',
                        help='copy this topic unchanged, WITHOUT anonymization, even when it '
                             'holds images (repeatable; the summary lists it)')
    parser.add_argument('--force', action='store_true',
                        help='replace an existing output (only a rosbag2 output folder)')
    parser.add_argument('--write-masks', action='store_true',
                        help='add a mono8 mask topic <colour topic>/mask per colour topic')
    parser.add_argument('--jpeg-quality', type=int, default=DEFAULT_JPEG_QUALITY, metavar='Q',
                        help='JPEG quality of re-encoded compressed images (default %(default)s)')
    parser.add_argument('--backward-frames', type=int, default=DEFAULT_BACKWARD_FRAMES,
                        metavar='N',
                        help='also mask a newly found face in the N frames before it '
                             '(default %(default)s, 0 disables)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    return parser


def parameter_overrides(params_file: Optional[str], params: Iterable[Tuple[str, Any]]
                        ) -> Dict[str, Any]:
    """
    Return the parameter overrides of a command line: ``--params-file``, then each ``--param``.

    :raises ValueError: when the parameters file cannot be read or is not a node parameters file.
    """
    overrides: Dict[str, Any] = {}
    if params_file:
        overrides.update(params_mod.load_params_file(params_file))
    overrides.update(dict(params))
    return overrides


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # unwinds like Ctrl-C: partial outputs are removed


def stop_on_sigterm() -> None:
    """Make SIGTERM (a job scheduler stopping the run) unwind like Ctrl-C."""
    import signal
    signal.signal(signal.SIGTERM, _terminate)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the anonymize_bag command line; return the exit status."""
    args = build_parser().parse_args(argv)
    if argv is None:
        stop_on_sigterm()

    def say(text: str) -> None:
        print(text, flush=True)

    try:
        try:
            overrides = parameter_overrides(args.params_file, args.param)
        except ValueError as exc:
            raise BagError(str(exc)) from exc
        summary = anonymize_bag(
            args.input, args.output, image_topics=args.image_topic,
            depth_topics=args.depth_topic, copy_topics=args.copy_topic, params=overrides,
            storage=args.storage,
            force=args.force, write_masks=args.write_masks, jpeg_quality=args.jpeg_quality,
            backward_frames=args.backward_frames, show_progress=not args.no_progress, log=say)
    except BagError as exc:
        print('anonymize_bag: error: %s' % exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('anonymize_bag: interrupted; no output was written', file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback; nothing was written
        print('anonymize_bag: error: %s: %s; no output was written'
              % (type(exc).__name__, one_line(exc)), file=sys.stderr)
        return 1
    for line in summary.lines():
        say(line)
    return 0
