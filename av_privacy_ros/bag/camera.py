"""
One colour topic (and its depth topic) during a run.

Decode, wait for depth, anonymize, hold back for the backward pass, write.  Every error path
writes the frame anonymized over its whole area or not at all; never the original pixels.
"""

from __future__ import annotations

from collections import deque
import time
from typing import Any, Deque, Dict, Optional

import numpy as np

from .backward import BackwardBuffer, mask_backward_boxes
from .context import RunContext
from .depth import BorrowedMasks, DepthOutput
from .frames import DepthRecord, Frame
from .image_codecs import decode_compressed, encode_image_message, encode_mask_message
from .pairing import MessageKey, MessageKeys, StampPairing
from .topics import CameraPlan, COMPRESSED_TYPE
from ..image_msgs import image_to_bgr, image_to_depth
from ..masker import AVPrivacyMasker, FrameResult


class Camera:
    """State of one colour topic (and its depth topic) during the run."""

    def __init__(self, plan: CameraPlan, masker: AVPrivacyMasker, ctx: RunContext) -> None:
        """Anonymize ``plan``'s topic with ``masker``, writing through ``ctx``."""
        self.plan = plan
        self.masker = masker
        self.ctx = ctx
        self.colour_keys = MessageKeys()
        self.depth_keys = MessageKeys()
        self.pairing = StampPairing()
        self.pending: Deque[Frame] = deque()  # read, not processed (waiting for depth)
        self.depth_arrived: Dict[MessageKey, DepthRecord] = {}
        self.backward = BackwardBuffer(ctx.backward_frames)
        self.depth_out = DepthOutput(plan.depth_topic, ctx, masker)
        self.borrowed = BorrowedMasks(self.depth_out.write)

    def set_pairing(self, pairing: StampPairing) -> None:
        """Use the colour / depth pairing found by the first pass."""
        self.pairing = pairing
        self.borrowed.users = pairing.mask_users()

    # colour -----------------------------------------------------------------------------
    def add_colour(self, out_conn: Any, mask_conn: Any, timestamp: int, cdr: Any, msg: Any,
                   msgtype: str) -> None:
        """Queue one colour message (decoded from ``cdr``) of this topic for anonymization."""
        ctx = self.ctx
        key = self.colour_keys.next_key(timestamp)
        frame = Frame(key, ctx.out.add(out_conn, timestamp),
                      ctx.out.add(mask_conn, timestamp) if mask_conn is not None else None,
                      msgtype, msg=msg, cdr=cdr)
        try:
            if msgtype == COMPRESSED_TYPE:
                frame.bgr, frame.codec = decode_compressed(msg)
            else:
                frame.bgr, frame.codec = image_to_bgr(msg)
        except Exception as exc:  # noqa: BLE001 - undecodable: write nothing, never raw
            ctx.summary.note_error('%s: frame not written: %s' % (self.plan.topic, exc))
            self._drop(frame)
        frame.wants_depth = ctx.need_depth_input and key in self.pairing.colour_to_depth
        self.pending.append(frame)
        self.advance()

    def advance(self, at_end: bool = False) -> None:
        """Process the pending frames in order, as long as their depth has arrived."""
        while self.pending:
            frame = self.pending[0]
            if frame.wants_depth:
                depth_key = self.pairing.colour_to_depth[frame.key]
                record = self.depth_arrived.pop(depth_key, None)
                if record is None and not at_end:
                    return
                frame.depth_rec = record
                frame.depth = record.depth if record is not None else None
            self.pending.popleft()
            self._process(frame)

    def _drop(self, frame: Frame) -> None:
        """Write neither the frame nor its mask, and count it as not written."""
        frame.drop_outputs()
        frame.bgr = None
        self.ctx.summary.dropped(self.plan.topic)

    def _not_written(self, frame: Frame) -> None:
        """Close a frame that is not written: its depth goes whole-frame, its mask is None."""
        self.backward.forget_faces()
        if frame.depth_rec is not None:
            self.depth_out.write(frame.depth_rec, None)
            frame.depth_rec = None
        self.borrowed.settle(frame.key, None)
        self.ctx.frame_done()

    def _process(self, frame: Frame) -> None:
        ctx = self.ctx
        summary = ctx.summary
        if frame.bgr is None:  # dropped at decoding
            self._not_written(frame)
            return
        depth = frame.depth
        if depth is not None and depth.shape[:2] != frame.bgr.shape[:2]:
            summary.note_error('%s: depth %dx%d does not match colour %dx%d; depth not used'
                               % (self.plan.topic, depth.shape[1], depth.shape[0],
                                  frame.bgr.shape[1], frame.bgr.shape[0]))
            depth = None
            frame.depth = None
        kwargs = dict(ctx.process_kwargs)
        if depth is None:
            kwargs['use_depth_for_mask'] = False
        start = time.perf_counter()
        result: Optional[FrameResult]
        try:
            result = self.masker.process(frame.bgr, depth, **kwargs)
        except Exception as exc:  # noqa: BLE001 - fail closed on anything
            result = self._whole_frame(frame.bgr, frame.depth,
                                       '%s: %s' % (type(exc).__name__, exc))
        summary.pipeline_time_s += time.perf_counter() - start
        if result is None:
            self._drop(frame)
            self._not_written(frame)
            return
        frame.result = result
        if result.failed_closed:
            summary.frames_failed_closed += 1
            summary.note_error('%s: frame failed closed: %s' % (self.plan.topic, result.error))
            boxes = np.zeros((0, 4), np.float32)
        else:
            boxes = np.asarray(result.detections.boxes, np.float32).reshape(-1, 4)
            summary.faces_found += len(boxes)
        masked = getattr(result, 'mask_boxes', None)
        masked_boxes = (np.asarray(masked, np.float32).reshape(-1, 4)
                        if masked is not None and not result.failed_closed else boxes)
        for due in self.backward.add(frame, boxes, masked_boxes):
            self._finalize(due)
        ctx.frame_done()

    def _whole_frame(self, bgr: np.ndarray, depth: Optional[np.ndarray], error: str
                     ) -> Optional[FrameResult]:
        """Return the frame anonymized over its whole area, or None when even that fails."""
        try:
            return self.masker.anonymize_whole_frame(bgr, depth, error=error)
        except Exception as exc:  # noqa: BLE001 - nothing left to write safely
            self.ctx.summary.note_error('%s: frame not written: %s' % (self.plan.topic, exc))
            return None

    def _finalize(self, frame: Frame) -> None:
        """Write a processed frame (its image, mask and paired depth)."""
        ctx = self.ctx
        summary = ctx.summary
        result: Optional[FrameResult] = frame.result
        assert result is not None and frame.bgr is not None
        failed = result.failed_closed
        if frame.extra_boxes and not failed:
            result = mask_backward_boxes(self.masker, frame, result, ctx,
                                         self.plan.topic)
        data = None
        if result is not None:
            try:
                if not failed and not result.mask.any():
                    data = frame.cdr  # nothing masked: the input bytes are the anonymized frame
                else:
                    data = encode_image_message(ctx.dst_ts, frame.msgtype, frame.msg,
                                                frame.codec, result.image, ctx.jpeg_quality)
            except Exception as exc:  # noqa: BLE001 - never fall back to raw
                summary.note_error('%s: frame not written: %s' % (self.plan.topic, exc))
        mask: Optional[np.ndarray] = None
        if data is None:
            self._drop(frame)
        else:
            assert result is not None
            mask = result.mask
            frame.slot.ready(data)
            summary.frames_anonymized += 1
            if frame.mask_slot is not None:
                frame.mask_slot.ready(encode_mask_message(ctx.dst_ts, frame.msg.header, mask))
                summary.masks_written += 1
        if frame.depth_rec is not None:
            self.depth_out.write(frame.depth_rec, mask,
                                 result.depth if mask is not None and result is not None
                                 else None)
        self.borrowed.settle(frame.key, mask)
        frame.release()

    def expire(self, now_ns: int) -> None:
        """Write buffered frames received more than BACKWARD_MAX_AGE_NS before ``now_ns``."""
        for frame in self.backward.expired(now_ns):
            self._finalize(frame)

    def finish(self) -> None:
        """Write everything still buffered (end of the bag)."""
        self.advance(at_end=True)
        for frame in self.backward.drain():
            self._finalize(frame)
        self.borrowed.finish()

    # depth ------------------------------------------------------------------------------
    def add_depth(self, out_conn: Any, timestamp: int, cdr: Any, msg: Any) -> None:
        """Queue one depth Image (decoded from ``cdr``, checked) of this camera's depth topic."""
        ctx = self.ctx
        key = self.depth_keys.next_key(timestamp)
        slot = ctx.out.add(out_conn, timestamp)
        if not ctx.depth_noise:
            slot.ready(cdr)  # depth is only read for the mask, never changed
            ctx.summary.messages_copied += 1
        if not ctx.need_depth_input:
            return
        depth = None
        try:
            depth = image_to_depth(msg)
        except Exception as exc:  # noqa: BLE001 - undecodable depth
            ctx.summary.note_error('%s: depth not usable: %s' % (self.plan.depth_topic, exc))
            if ctx.depth_noise:
                slot.drop()
                ctx.summary.dropped(self.plan.depth_topic)
        record = DepthRecord(key, slot, msg, cdr, depth)
        if key in self.pairing.paired_depth:
            self.depth_arrived[key] = record
            self.advance()
            return
        # Unpaired: it uses the mask of the nearest colour frame.
        self.borrowed.use(self.pairing.depth_to_colour.get(key), record)
