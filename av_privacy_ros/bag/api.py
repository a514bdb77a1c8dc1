"""
The library entry point :func:`anonymize_bag`.

It checks the options, opens the input, chooses the topics, builds one masker per camera and
hands a :class:`~.run.WriteJob` to the write loop.
"""

from __future__ import annotations

from pathlib import Path
import time
from typing import Any, List, Mapping, Optional, Sequence

from .errors import BagError, LogCallback, one_line, ProgressCallback
from .reader import input_path as resolve_input_path, input_storage, open_reader
from .run import write_bag, WriteJob
from .staging import (check_output, clean_stale_staging, make_parent,
                      recover_interrupted_replacement)
from .summary import BagSummary
from .topics import CameraPlan, choose_cameras
from .. import params as params_mod
from ..masker import AVPrivacyMasker

DEFAULT_JPEG_QUALITY = 90
"""JPEG (and WebP) quality of re-encoded compressed images."""
DEFAULT_BACKWARD_FRAMES = 6
"""Frames before a newly found face in which it is masked too (the backward pass)."""


SEED_RANGE = 2 ** 31  # seeds are 0 .. 2**31 - 1 (the seed parameter's bounds)


def make_maskers(plans: Sequence[CameraPlan], values: Mapping[str, Any],
                 detector: Any) -> List[AVPrivacyMasker]:
    """
    Return one masker per camera, all sharing one face detector.

    ``detector`` is used when given; otherwise the first masker builds one from ``values``.
    With a ``seed``, camera ``i`` gets ``seed + i`` (distinct, reproducible noise per topic),
    wrapped to stay inside the seed parameter's range.
    """
    kwargs = params_mod.masker_kwargs(values)
    seed = kwargs.pop('seed')
    maskers: List[AVPrivacyMasker] = []
    for index, _ in enumerate(plans):
        topic_seed = None if seed is None else (seed + index) % SEED_RANGE
        if detector is None and not maskers:
            masker = AVPrivacyMasker(seed=topic_seed, **kwargs)
        else:
            shared = detector if detector is not None else maskers[0].detector
            masker = AVPrivacyMasker(seed=topic_seed, detector=shared, **kwargs)
        maskers.append(masker)
    return maskers


def weakened_settings(values: Mapping[str, Any], backward_frames: int) -> List[str]:
    """Return one sentence per setting weaker for privacy than the defaults (as the node's)."""
    found = params_mod.privacy_weakenings(values)
    if backward_frames == 0:
        found.append('--backward-frames 0 (a face found late shows before it is found)')
    return found


def model_description(values: Mapping[str, Any]) -> str:
    """Return the face detector model the parameters ask for, for an error message."""
    path = values.get('detector.model_path') or ''
    if path:
        return str(path)
    if values.get('detector.backend') in ('scrfd', 'auto'):
        try:
            from ..detection import find_scrfd_model
            found = find_scrfd_model(None, allow_download=False)
        except Exception:  # noqa: BLE001 - only for the message
            found = None
        if found is not None:
            return str(found)
    return 'of backend %s' % values.get('detector.backend')


def anonymize_bag(input_path: Any, output_path: Any, *,
                  image_topics: Sequence[str] = (), depth_topics: Sequence[str] = (),
                  copy_topics: Sequence[str] = (),
                  params: Optional[Mapping[str, Any]] = None, storage: Optional[str] = None,
                  force: bool = False, write_masks: bool = False,
                  jpeg_quality: int = DEFAULT_JPEG_QUALITY,
                  backward_frames: int = DEFAULT_BACKWARD_FRAMES, detector: Any = None,
                  progress: Optional[ProgressCallback] = None, show_progress: bool = False,
                  log: Optional[LogCallback] = None) -> BagSummary:
    """
    Anonymize every image topic of a bag into a new rosbag2 bag; return the counts.

    Every image message is classified by its own type and encoding (:func:`route_message`):
    a message that can show a face is anonymized or not written.  ``copy_topics`` are copied
    unchanged, image topics included: the only way to keep an image topic as it is.
    ``params`` holds parameter overrides by dotted name (see :mod:`av_privacy_ros.params`; a
    node params YAML read with ``params.load_params_file``).  ``storage`` is ``mcap`` or
    ``sqlite3`` (default: the input's, mcap for ROS 1).  ``detector`` injects a face detector
    (otherwise one is built from the parameters).  ``progress(done, total)`` is called after
    each colour frame; an exception it raises aborts the run.  Whatever stops the run, no
    output bag is left behind: it is written in a hidden folder beside ``output_path`` and
    renamed only at the end.

    :raises BagError: for a missing, corrupt or truncated input, an unknown topic, an output
        that is, holds or lies in the input, an existing output without ``force`` (or one that
        is not a rosbag2 folder), an unwritable output, a model that cannot be loaded, or bad
        parameters.
    """
    started = time.perf_counter()
    say: LogCallback = log or (lambda text: None)
    src = resolve_input_path(Path(input_path))
    dst = Path(output_path)
    # Before the output checks: an output a killed run had moved aside is the user's again.
    recover_interrupted_replacement(dst, say)
    check_output(src, dst, force)
    if storage is None:
        storage = input_storage(src) if src.suffix != '.bag' else 'mcap'
    if storage not in ('mcap', 'sqlite3'):
        raise BagError('storage must be mcap or sqlite3, got %r' % storage)
    if not 1 <= int(jpeg_quality) <= 100:
        raise BagError('JPEG quality must be within 1..100, got %r' % jpeg_quality)
    if int(backward_frames) < 0:
        raise BagError('backward frames must be >= 0, got %r' % backward_frames)
    try:
        values = params_mod.resolve(params or {})
    except ValueError as exc:
        raise BagError('bad parameter: %s' % exc) from exc

    reader = open_reader(src)
    try:
        topic_plan = choose_cameras(reader, src, list(image_topics), list(depth_topics),
                                    bool(values['use_depth']), write_masks, say,
                                    copy_topics=list(copy_topics))
        plans = topic_plan.cameras
        summary = BagSummary(output=str(dst), cameras=plans)
        if not plans:
            # A fleet pipeline runs the tool over every bag: one without images is copied.
            say('warning: no image topics (sensor_msgs/Image or CompressedImage) to anonymize '
                'in %s; every message is copied unchanged' % src)
            maskers: List[AVPrivacyMasker] = []
            summary.detector = 'none (no image topics)'
        else:
            try:
                maskers = make_maskers(plans, values, detector)
            except Exception as exc:  # noqa: BLE001 - any model loading failure is one line
                raise BagError('cannot load the face detector model %s: %s'
                               % (model_description(values), one_line(exc))) from exc
            summary.detector = '%s on %s' % (maskers[0].backend, maskers[0].provider)
            summary.weakened = weakened_settings(values, int(backward_frames))
            for text in summary.weakened:
                say('warning: settings weaken privacy: %s' % text)
        summary.copied_topics = sorted(topic_plan.copy_topics & topic_plan.image_topics)
        say('input: %s (%s)' % (src, 'ROS 1' if not reader.is2 else 'rosbag2'))
        say('anonymizing %d image topic(s) with %s:' % (len(plans), summary.detector))
        for plan in plans:
            say('  ' + plan.describe())
        created = make_parent(dst)
        try:
            clean_stale_staging(dst, say)
            return write_bag(WriteJob(
                reader=reader, src=src, dst=dst, storage=storage, force=force, values=values,
                topic_plan=topic_plan, maskers=maskers, summary=summary,
                jpeg_quality=int(jpeg_quality), backward_frames=int(backward_frames),
                progress=progress, show_progress=show_progress, say=say, started=started))
        except BaseException:
            for folder in reversed(created):
                try:
                    folder.rmdir()
                except OSError:
                    break
            raise
    except OSError as exc:
        raise BagError('cannot write the output %s: %s' % (dst, one_line(exc))) from exc
    finally:
        reader.close()
