"""
The write loop of one anonymize_bag run.

The :class:`WriteJob` it is given, the first pass that pairs colour and depth by header stamp,
the route of every input connection, and the loop that copies, anonymizes or drops each message
and writes the output bag through a staging folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
import sys
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple

from .camera import Camera
from .context import RunContext
from .errors import LogCallback, one_line, ProgressCallback
from .image_codecs import COMPRESSED_TYPE, header_stamp_ns, IMAGE_TYPE
from .pairing import MessageKey, MessageKeys, StampPairing
from .reader import iter_raw
from .schemas import embeds_image, mentions_images, output_typestore, raw_schema_problem
from .staging import publish_output, remove, staging_folder
from .summary import BagSummary
from .topics import (COLOUR, COPY, decode_and_route, DEPTH, DROP, SKIP, TopicPlan,
                     VIDEO_TYPES)
from .writer import add_connection, OutputQueue, Slot
from .. import params as params_mod
from ..masker import AVPrivacyMasker

IMAGE_ROUTE = 'image'
"""A connection of Image / CompressedImage messages: each message is classified on its own."""

Converter = Callable[[Any], Any]


def _say_nothing(text: str) -> None:
    """Discard a log line (no log callback given)."""


@dataclass
class WriteJob:
    """Everything one run writes with: the opened input, the output, settings and reporting."""

    reader: Any
    """The opened input (see :func:`av_privacy_ros.bag.reader.open_bag`)."""
    src: Path
    dst: Path
    storage: str
    """Output storage: ``mcap`` or ``sqlite3``."""
    force: bool
    values: Mapping[str, Any]
    """Resolved node parameters by dotted name."""
    topic_plan: TopicPlan
    maskers: Sequence[AVPrivacyMasker]
    """One masker per camera of ``topic_plan``, in the same order."""
    summary: BagSummary
    jpeg_quality: int
    backward_frames: int
    progress: Optional[ProgressCallback] = None
    show_progress: bool = False
    say: LogCallback = _say_nothing
    started: float = field(default_factory=time.perf_counter)
    """When the run started (perf_counter), for the wall time in the summary."""


@dataclass
class OutputTypes:
    """The output typestore and how input messages become its messages."""

    store: Any
    renames: Dict[str, str]
    converters: Dict[str, Converter]
    skipped: Dict[str, str]

    def msgtype(self, conn: Any) -> str:
        """Return the output type of an input connection."""
        return self.renames.get(conn.msgtype, conn.msgtype)

    def to_cdr(self, conn: Any, raw: Any) -> Any:
        """Return a message's output CDR bytes (ROS 1 messages are converted)."""
        convert = self.converters.get(conn.msgtype)
        return convert(raw) if convert is not None else raw


@dataclass
class Routes:
    """The output connection and route of every input connection, and the mask connections."""

    out_conns: Dict[int, Any] = field(default_factory=dict)
    routes: Dict[int, str] = field(default_factory=dict)
    mask_conns: Dict[str, Any] = field(default_factory=dict)


def first_pass(job: WriteJob, cameras: Sequence[Camera], types: OutputTypes,
               slop_ns: int) -> None:
    """Read the header stamps of paired colour and depth messages and pair them."""
    wanted: Dict[str, bool] = {}
    for cam in cameras:
        if cam.plan.depth_topic:
            wanted[cam.plan.topic] = True
            wanted[cam.plan.depth_topic] = False
    if not wanted:
        return
    depth_role = job.topic_plan.depth_topics
    stamps: Dict[str, List[Tuple[MessageKey, Optional[int]]]] = {t: [] for t in wanted}
    keys: Dict[str, MessageKeys] = {t: MessageKeys() for t in wanted}
    conns = [c for c in job.reader.connections if c.topic in wanted
             and c.msgtype in (IMAGE_TYPE, COMPRESSED_TYPE)]
    for conn, timestamp, raw in iter_raw(job.reader, job.src, conns):
        is_colour = wanted[conn.topic]
        msgtype = types.msgtype(conn)
        try:
            cdr = types.to_cdr(conn, raw)
        except Exception:  # noqa: BLE001 - dropped in the main pass too
            continue
        kind, _, msg = decode_and_route(types.store, msgtype, cdr, conn.topic in depth_role)
        # Exactly the messages the main pass hands to add_colour / add_depth get a key.
        if is_colour and kind != COLOUR:
            continue
        if not is_colour and (kind != DEPTH or msgtype != IMAGE_TYPE):
            continue
        stamps[conn.topic].append((keys[conn.topic].next_key(timestamp), header_stamp_ns(msg)))
    for cam in cameras:
        if cam.plan.depth_topic:
            cam.set_pairing(StampPairing.from_stamps(
                stamps[cam.plan.topic], stamps[cam.plan.depth_topic], slop_ns))


def _route(job: WriteJob, rconn: Any, msgtype: str, unparsed: Mapping[str, str],
           types: OutputTypes) -> str:
    """Return the route of an input connection that is written (warning about dropped ones)."""
    plan, summary, say = job.topic_plan, job.summary, job.say
    if rconn.msgtype in unparsed:
        carries_images = msgtype in (IMAGE_TYPE, COMPRESSED_TYPE) \
            or msgtype in VIDEO_TYPES or mentions_images(rconn.msgdef.data)
        if rconn.topic in plan.copy_topics or not carries_images:
            summary.note_topic(rconn.topic, 'copied as bytes with its own schema (%s cannot be '
                               'parsed: %s)' % (rconn.msgtype, unparsed[rconn.msgtype]))
            return COPY
        summary.topics_not_written.add(rconn.topic)
        say('warning: %s (%s) cannot be parsed and carries images; its messages will NOT be '
            'written' % (rconn.topic, rconn.msgtype))
        return DROP
    if rconn.topic in plan.copy_topics:
        return COPY
    if msgtype in (IMAGE_TYPE, COMPRESSED_TYPE):
        return IMAGE_ROUTE
    if msgtype in VIDEO_TYPES or embeds_image(types.store, msgtype):
        summary.topics_not_written.add(rconn.topic)
        say('warning: %s (%s) carries images this tool cannot anonymize; its messages will '
            'NOT be written (name it with --copy-topic to keep it)' % (rconn.topic, msgtype))
        return DROP
    return COPY


def plan_connections(job: WriteJob, writer: Any, types: OutputTypes,
                     colour_of: Mapping[str, Camera]) -> Routes:
    """Add the output connections (with the input's format and QoS); route every input one."""
    reader = job.reader
    unparsed: Dict[str, str] = dict(getattr(reader, 'unparsed', {}))
    added: Dict[Tuple[Any, ...], Any] = {}
    found = Routes()
    for rconn in reader.connections:
        msgtype = types.msgtype(rconn)
        reason = types.skipped.get(rconn.msgtype) or raw_schema_problem(rconn, unparsed)
        if reason:
            found.routes[id(rconn)] = SKIP
            job.summary.note_topic(rconn.topic, 'skipped (%s): %s' % (rconn.msgtype, reason))
            job.say('warning: %s (%s) is NOT written: %s' % (rconn.topic, rconn.msgtype,
                                                             reason))
            continue
        found.out_conns[id(rconn)] = add_connection(
            writer, rconn, rconn.topic, msgtype, types.store, reader.is2, added,
            raw_schema=rconn.msgtype in unparsed)
        found.routes[id(rconn)] = _route(job, rconn, msgtype, unparsed, types)
        cam = colour_of.get(rconn.topic)
        if cam is not None and cam.plan.mask_topic and cam.plan.topic not in found.mask_conns:
            found.mask_conns[cam.plan.topic] = add_connection(
                writer, rconn, cam.plan.mask_topic, IMAGE_TYPE, types.store, reader.is2, added)
    return found


def _copy_and_anonymize(job: WriteJob, ctx: RunContext, cameras: Sequence[Camera],
                        types: OutputTypes, found: Routes) -> None:
    """Read every message once and copy, anonymize or drop it; write in input order."""
    summary, out = job.summary, ctx.out
    depth_role = job.topic_plan.depth_topics
    colour_of = {cam.plan.topic: cam for cam in cameras}
    depth_of = {cam.plan.depth_topic: cam for cam in cameras if cam.plan.depth_topic}
    for rconn, timestamp, raw in iter_raw(job.reader, job.src):
        summary.messages_read += 1
        route = found.routes[id(rconn)]
        out_conn = found.out_conns.get(id(rconn))
        topic = rconn.topic
        if route == SKIP:
            summary.dropped(topic)
            continue
        if route == DROP:
            summary.not_written(topic, 'a %s carries images' % rconn.msgtype)
            continue
        try:
            cdr = types.to_cdr(rconn, raw)
        except Exception as exc:  # noqa: BLE001 - a ROS 1 message that cannot convert
            summary.not_written(topic, 'cannot be converted: %s' % one_line(exc))
            continue
        msgtype = types.msgtype(rconn)
        if route == COPY:
            kind, reason, msg = COPY, '', None
        else:
            kind, reason, msg = decode_and_route(types.store, msgtype, cdr, topic in depth_role)
            summary.count_kind(topic, kind)
        cam = depth_of.get(topic)
        if kind == COLOUR:
            colour_of[topic].add_colour(out_conn, found.mask_conns.get(topic), timestamp, cdr,
                                        msg, msgtype)
        elif kind == DEPTH and cam is not None and msgtype == IMAGE_TYPE:
            cam.add_depth(out_conn, timestamp, cdr, msg)
        elif kind in (COPY, DEPTH):  # not an image, or a checked depth image no camera uses
            out.add(out_conn, timestamp).ready(cdr)
            summary.messages_copied += 1
        else:
            summary.not_written(topic, reason)
        if out.queue and out.queue[0].state == Slot.PENDING:
            for other in cameras:
                other.expire(timestamp)
        out.flush()
    for cam in cameras:
        cam.finish()
    out.flush()
    if out.queue:
        raise RuntimeError('internal error: %d messages were never finalized' % len(out.queue))


def _needs_depth_input(job: WriteJob, process_kwargs: Mapping[str, Any]) -> bool:
    """Return whether depth images are read (for depth noise or depth-guided masks)."""
    has_depth = any(p.depth_topic for p in job.topic_plan.cameras)
    need = has_depth and (bool(job.values['depth.enable_noise'])
                          or bool(process_kwargs['use_depth_for_mask']))
    if has_depth and not need:
        job.say('  (depth images are copied unchanged: depth.enable_noise is false and '
                'mask.mode is not depth)')
    return need


def write_bag(job: WriteJob) -> BagSummary:
    """
    Write the anonymized bag of ``job``; return its summary.

    The bag is written in a hidden staging folder beside ``job.dst`` and moved there only when
    it is complete; whatever stops the run, the staging folder is removed.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer, WriterError
    summary, plan = job.summary, job.topic_plan
    types = OutputTypes(*output_typestore(job.reader))
    process_kwargs = params_mod.process_kwargs(job.values)
    need_depth_input = _needs_depth_input(job, process_kwargs)
    colour_topics: Set[str] = {p.topic for p in plan.cameras if p.topic not in plan.depth_topics}
    total_frames = sum(c.msgcount for c in job.reader.connections
                       if c.topic in colour_topics and c.msgtype in (IMAGE_TYPE, COMPRESSED_TYPE))
    staging = staging_folder(job.dst)
    bar = None
    try:
        plugin = StoragePlugin.MCAP if job.storage == 'mcap' else StoragePlugin.SQLITE3
        writer = Writer(staging / job.dst.name, version=Writer.VERSION_LATEST,
                        storage_plugin=plugin)
        with writer:
            ctx = RunContext(OutputQueue(writer), types.store, summary, process_kwargs,
                             need_depth_input, bool(job.values['depth.enable_noise']),
                             float(job.values['depth.noise_std']), job.jpeg_quality,
                             job.backward_frames, total_frames, job.progress)
            cameras = [Camera(p, masker, ctx) for p, masker in zip(plan.cameras, job.maskers)]
            loop_start = time.perf_counter()
            if need_depth_input:
                first_pass(job, cameras, types,
                           int(round(float(job.values['sync.slop']) * 1e9)))
            found = plan_connections(job, writer, types, {c.plan.topic: c for c in cameras})
            if job.show_progress:
                from tqdm import tqdm
                bar = tqdm(total=total_frames, unit='frame', desc='anonymizing',
                           file=sys.stderr, dynamic_ncols=True)
                ctx.bar = bar
            _copy_and_anonymize(job, ctx, cameras, types, found)
        if bar is not None:
            bar.close()
            bar = None
        summary.processing_time_s = time.perf_counter() - loop_start
        publish_output(job.src, staging / job.dst.name, job.dst, job.force)
    except WriterError as exc:
        raise OSError(one_line(exc)) from exc
    finally:
        if bar is not None:
            bar.close()
        remove(staging)
    summary.wall_time_s = time.perf_counter() - job.started
    return summary
