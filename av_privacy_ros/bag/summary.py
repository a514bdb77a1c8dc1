"""The counts of one anonymize_bag run and the end-of-run summary the user reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set

from .topics import CameraPlan


@dataclass
class BagSummary:
    """Counts of one run; :meth:`lines` renders them for the user."""

    output: str = ''
    cameras: List[CameraPlan] = field(default_factory=list)
    messages_read: int = 0
    messages_copied: int = 0
    frames_anonymized: int = 0
    faces_found: int = 0
    frames_failed_closed: int = 0
    frames_masked_backward: int = 0
    depth_anonymized: int = 0
    depth_failed_closed: int = 0
    masks_written: int = 0
    messages_dropped: int = 0
    errors: Dict[str, int] = field(default_factory=dict)
    copied_topics: List[str] = field(default_factory=list)
    weakened: List[str] = field(default_factory=list)
    topic_notes: Dict[str, List[str]] = field(default_factory=dict)
    topics_not_written: Set[str] = field(default_factory=set)
    not_written_by_topic: Dict[str, int] = field(default_factory=dict)
    kinds_by_topic: Dict[str, Dict[str, int]] = field(default_factory=dict)
    wall_time_s: float = 0.0
    processing_time_s: float = 0.0
    pipeline_time_s: float = 0.0
    detector: str = ''

    def note_error(self, text: str) -> None:
        """Count one error message (the summary shows the most frequent ones)."""
        self.errors[text] = self.errors.get(text, 0) + 1

    def note_topic(self, topic: str, text: str) -> None:
        """Record one remark about a whole topic (shown in the summary)."""
        self.topic_notes.setdefault(topic, [])
        if text not in self.topic_notes[topic]:
            self.topic_notes[topic].append(text)

    def dropped(self, topic: Optional[str]) -> None:
        """Count one message of ``topic`` that is not written."""
        self.messages_dropped += 1
        if topic:
            self.not_written_by_topic[topic] = self.not_written_by_topic.get(topic, 0) + 1

    def not_written(self, topic: str, reason: str) -> None:
        """Count one message that is not written, by topic and reason."""
        self.dropped(topic)
        self.note_error('%s: message not written: %s' % (topic, reason))

    def count_kind(self, topic: str, kind: str) -> None:
        """Count one image message of ``topic`` by its kind (colour, depth or drop)."""
        kinds = self.kinds_by_topic.setdefault(topic, {})
        kinds[kind] = kinds.get(kind, 0) + 1

    def kind_changes(self) -> Dict[str, Dict[str, int]]:
        """Return the topics whose image messages are of more than one kind."""
        return {topic: kinds for topic, kinds in self.kinds_by_topic.items() if len(kinds) > 1}

    @property
    def frames_per_second(self) -> float:
        """Return colour frames per second of reading, anonymizing and writing the bag."""
        seconds = self.processing_time_s or self.wall_time_s
        return self.frames_anonymized / seconds if seconds > 0 else 0.0

    def lines(self) -> List[str]:
        """Return the end-of-run summary as text lines."""
        rows = [
            'output: %s' % self.output,
            'messages copied unchanged: %d' % self.messages_copied,
            'frames anonymized: %d (%.1f frames/s)'
            % (self.frames_anonymized, self.frames_per_second),
            'faces found: %d' % self.faces_found,
            'frames failed closed (anonymized over the whole frame): %d'
            % self.frames_failed_closed,
            'frames also masked by the backward pass: %d' % self.frames_masked_backward,
            'depth frames with noise under the mask: %d (whole frame: %d)'
            % (self.depth_anonymized, self.depth_failed_closed),
            'mask messages written: %d' % self.masks_written,
            'messages not written (could not be decoded): %d' % self.messages_dropped,
            'wall time: %.1f s (%.1f s reading, anonymizing and writing)'
            % (self.wall_time_s, self.processing_time_s),
        ]
        for text, count in sorted(self.errors.items(), key=lambda kv: -kv[1])[:5]:
            rows.append('  %dx %s' % (count, text))
        for topic, count in sorted(self.not_written_by_topic.items()):
            rows.append('messages NOT written on %s: %d' % (topic, count))
        for topic, kinds in sorted(self.kind_changes().items()):
            rows.append('topic %s changes kind: %s' % (topic, ', '.join(
                '%d %s' % (count, kind) for kind, count in sorted(kinds.items()))))
        if self.copied_topics:
            rows.append('image topics copied WITHOUT anonymization (--copy-topic): %s'
                        % ', '.join(self.copied_topics))
        for text in self.weakened:
            rows.append('WARNING: settings weaken privacy: %s' % text)
        for topic, notes in sorted(self.topic_notes.items()):
            for text in notes:
                rows.append('topic %s: %s' % (topic, text))
        if not self.cameras:
            rows.append('WARNING: no image topics; every message was copied unchanged')
        return rows
