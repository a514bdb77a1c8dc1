"""
The archive manifest: one JSON line per bag in ``OUTPUT_DIR/anonymize_archive.jsonl``.

During a run a line is appended (and flushed to disk) as each bag finishes, so a run that is
killed keeps what it finished; the last line of a bag wins.  At the end of a run the file is
rewritten with exactly one line per bag, sorted by input path.  A line that cannot be parsed
(a write cut short by a crash) is ignored: its bag is simply done again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
import json
import os
from pathlib import Path
from typing import Any, Dict, IO, Optional

from .discovery import BagInput

MANIFEST_NAME = 'anonymize_archive.jsonl'
DONE = 'done'
FAILED = 'failed'


@dataclass
class ManifestRecord:
    """What the manifest says about one bag."""

    input_path: str
    """Input path relative to the input folder."""
    size: int
    mtime_ns: int
    status: str
    """``done`` or ``failed``."""
    output: str = ''
    """Output path relative to the output folder."""
    summary: Dict[str, Any] = field(default_factory=dict)
    """Counts from anonymize_bag (frames anonymized, faces found, messages dropped, ...)."""
    error: str = ''
    attempts: int = 0
    worker: str = ''
    finished: str = ''
    """UTC time the bag finished, ISO 8601."""

    @classmethod
    def from_json(cls, text: str) -> Optional['ManifestRecord']:
        """Parse one manifest line; return None for a line that is not a valid record."""
        try:
            data = json.loads(text)
            known = {f.name for f in fields(cls)}
            record = cls(**{k: v for k, v in data.items() if k in known})
        except (ValueError, TypeError):
            return None
        if not isinstance(record.input_path, str) or record.status not in (DONE, FAILED):
            return None
        return record

    def to_json(self) -> str:
        """Return the record as one JSON line (no newline)."""
        return json.dumps(asdict(self), sort_keys=True)


def output_is_valid(path: Path) -> bool:
    """Return True when ``path`` is a rosbag2 bag that rosbags can open."""
    if not (path / 'metadata.yaml').is_file():
        return False
    from rosbags.rosbag2 import Reader
    try:
        with Reader(path):
            return True
    except Exception:  # noqa: BLE001 - any failure to open means "do it again"
        return False


class Manifest:
    """Read, query and append to the manifest of one output folder."""

    def __init__(self, output_dir: Path) -> None:
        """Load the manifest of ``output_dir`` (empty when there is none yet)."""
        self.path = Path(output_dir) / MANIFEST_NAME
        self.records: Dict[str, ManifestRecord] = {}
        self._file: Optional[IO[str]] = None
        if self.path.is_file():
            with open(self.path, encoding='utf-8') as stream:
                for line in stream:
                    record = ManifestRecord.from_json(line) if line.strip() else None
                    if record is not None:
                        self.records[record.input_path] = record

    def get(self, bag: BagInput) -> Optional[ManifestRecord]:
        """Return the latest record of ``bag``, or None."""
        return self.records.get(bag.relative)

    def is_done(self, bag: BagInput, output_dir: Path) -> bool:
        """Return True when ``bag`` was done from the same input and its output is valid."""
        record = self.get(bag)
        return (record is not None and record.status == DONE and record.size == bag.size
                and record.mtime_ns == bag.mtime_ns
                and record.output == bag.output_relative()
                and output_is_valid(Path(output_dir) / record.output))

    def wrote(self, bag: BagInput) -> bool:
        """Return True when an earlier run of this archive owns the output of ``bag``."""
        record = self.get(bag)
        return record is not None and record.output == bag.output_relative()

    def append(self, record: ManifestRecord) -> None:
        """Record a finished bag: append its line and push it to the disk."""
        self.records[record.input_path] = record
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, 'a', encoding='utf-8')
        self._file.write(record.to_json() + '\n')
        self._file.flush()
        os.fsync(self._file.fileno())

    def compact(self) -> None:
        """Rewrite the manifest with one line per bag (atomically: a crash keeps the old one)."""
        self.close()
        if not self.records:
            return
        staging = self.path.with_name('.%s.tmp-%d' % (self.path.name, os.getpid()))
        with open(staging, 'w', encoding='utf-8') as stream:
            for key in sorted(self.records):
                stream.write(self.records[key].to_json() + '\n')
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(staging, self.path)

    def close(self) -> None:
        """Close the append handle."""
        if self._file is not None:
            self._file.close()
            self._file = None
