"""
The evaluation's input and output files: sessions, ground-truth boxes, timings and CSV.

A sessions file (YAML or CSV) lists one recording per entry; paths in it are resolved against
the file's folder.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
import json
import math
from pathlib import Path
import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import yaml

from .frames import frame_key, PathLike

#: Stage order of the speed table; stages the pipeline reports beyond these follow them.
TIMING_STAGES = ('detect', 'track', 'mask', 'anonymize', 'depth', 'total')
SESSION_FIELDS = ('id', 'environment', 'faces', 'ours', 'ours_topic', 'reference', 'start',
                  'stop', 'boxes', 'images', 'depth', 'timings')


@dataclass
class Session:
    """One recording session of the sessions file; paths are resolved against the file."""

    name: str
    environment: str = ''
    faces: str = ''
    ours: Optional[Path] = None
    ours_topic: Optional[str] = None
    reference: Optional[Path] = None
    start: Optional[float] = None
    stop: Optional[float] = None
    boxes: Optional[Path] = None
    images: Optional[Path] = None
    depth: Optional[Path] = None
    timings: Optional[Path] = None


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == '')


def _number(value: Any, what: str) -> Optional[float]:
    if _blank(value):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError('%s must be a number, got %r' % (what, value)) from None


def parse_sessions(entries: Sequence[Mapping[str, Any]], base: Path) -> List[Session]:
    """Validate session entries (dicts from YAML or CSV) and resolve their paths."""
    sessions: List[Session] = []
    seen = set()
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, Mapping):
            raise ValueError('session %d is not a mapping of fields' % number)
        unknown = sorted(set(map(str, entry)) - set(SESSION_FIELDS))
        if unknown:
            raise ValueError('session %d: unknown fields %s (known: %s)'
                             % (number, ', '.join(unknown), ', '.join(SESSION_FIELDS)))
        sid = '' if _blank(entry.get('id')) else str(entry['id']).strip()
        if not sid:
            raise ValueError('session %d has no id' % number)
        if sid in seen:
            raise ValueError('session id %r appears twice' % sid)
        seen.add(sid)

        def path_of(name: str) -> Optional[Path]:
            value = entry.get(name)
            if _blank(value):
                return None
            path = Path(str(value).strip()).expanduser()
            return path if path.is_absolute() else base / path

        session = Session(
            name=sid,
            environment='' if _blank(entry.get('environment')) else str(entry['environment']),
            faces='' if _blank(entry.get('faces')) else str(entry['faces']).strip(),
            ours=path_of('ours'), reference=path_of('reference'), boxes=path_of('boxes'),
            images=path_of('images'), depth=path_of('depth'), timings=path_of('timings'),
            ours_topic=None if _blank(entry.get('ours_topic')) else str(entry['ours_topic']),
            start=_number(entry.get('start'), 'session %s: start' % sid),
            stop=_number(entry.get('stop'), 'session %s: stop' % sid))
        if session.start is not None and session.stop is not None \
                and session.stop <= session.start:
            raise ValueError('session %s: stop (%s) must be after start (%s)'
                             % (sid, entry.get('stop'), entry.get('start')))
        sessions.append(session)
    if not sessions:
        raise ValueError('the sessions file lists no sessions')
    return sessions


def load_sessions(path: PathLike) -> List[Session]:
    """Read a sessions file: YAML (a list, or ``sessions:`` with a list) or CSV with a header."""
    path = Path(path)
    try:
        text = path.read_text(encoding='utf-8')
    except OSError as exc:
        raise ValueError('cannot read sessions file %s: %s' % (path, exc.strerror)) from exc
    base = path.resolve().parent
    if path.suffix.lower() == '.csv':
        reader = csv.DictReader(line for line in text.splitlines()
                                if line.strip() and not line.lstrip().startswith('#'))
        entries = [{k.strip(): v for k, v in row.items() if k is not None and not _blank(v)}
                   for row in reader]
        return parse_sessions(entries, base)
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError('sessions file %s is not valid YAML: %s' % (path, exc)) from exc
    if isinstance(document, Mapping):
        document = document.get('sessions')
    if not isinstance(document, list):
        raise ValueError('sessions file %s must hold a list of sessions (or sessions: [...])'
                         % path)
    return parse_sessions(document, base)


def read_boxes(path: PathLike, mode: str) -> List[Dict[str, Any]]:
    """
    Read ground-truth face boxes: CSV (frame,x1,y1,x2,y2[,track]) or JSON.

    JSON is a list of ``{"frame": f, "box": [x1, y1, x2, y2], "track": t}`` objects (or with
    x1..y2 keys), or a mapping from frame to a list of such objects or of bare boxes.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding='utf-8')
    except OSError as exc:
        raise ValueError('cannot read boxes file %s: %s' % (path, exc.strerror)) from exc
    records: List[Tuple[Any, Any, Any]] = []  # (frame, box, track)
    if path.suffix.lower() == '.json':
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError('boxes file %s is not valid JSON: %s' % (path, exc)) from exc
        if isinstance(document, Mapping):
            for frame, items in document.items():
                for item in items or []:
                    if isinstance(item, Mapping):
                        records.append((frame, _box_of(item), item.get('track')))
                    else:
                        records.append((frame, item, None))
        elif isinstance(document, list):
            for item in document:
                if not isinstance(item, Mapping) or 'frame' not in item:
                    raise ValueError('boxes file %s: every entry needs a frame' % path)
                records.append((item['frame'], _box_of(item), item.get('track')))
        else:
            raise ValueError('boxes file %s must hold a list or a mapping' % path)
    else:
        reader = csv.DictReader(line for line in text.splitlines() if line.strip())
        fields = [f.strip() for f in reader.fieldnames or []]
        missing = [f for f in ('frame', 'x1', 'y1', 'x2', 'y2') if f not in fields]
        if missing:
            raise ValueError('boxes file %s lacks columns %s (need frame,x1,y1,x2,y2[,track])'
                             % (path, ', '.join(missing)))
        for row in reader:
            row = {k.strip(): v for k, v in row.items() if k is not None}
            track = row.get('track', row.get('track_id'))
            records.append((row['frame'], [row['x1'], row['y1'], row['x2'], row['y2']],
                            None if _blank(track) else track))
    boxes = []
    for number, (frame, box, track) in enumerate(records, start=1):
        try:
            values = [float(v) for v in box]
        except (TypeError, ValueError):
            raise ValueError('boxes file %s, box %d: coordinates must be numbers, got %r'
                             % (path, number, box)) from None
        if len(values) != 4 or not all(math.isfinite(v) for v in values) \
                or values[2] <= values[0] or values[3] <= values[1]:
            raise ValueError('boxes file %s, box %d: need x1 < x2 and y1 < y2, got %r'
                             % (path, number, box))
        key = box_frame_key(frame, mode, '%s, box %d' % (path, number))
        boxes.append({'frame': key, 'box': values,
                      'track': None if _blank(track) else str(track)})
    return boxes


def box_frame_key(value: Any, mode: str, where: str = 'boxes') -> int:
    """
    Return the frame key of a boxes-file ``frame`` value.

    Index mode: an integer (``12``, ``12.0``) or a file name (``frame_000012.png``). Stamp
    mode: integer nanoseconds, decimal seconds (a JSON number or text), or a file name.
    """
    if isinstance(value, bool) or value is None:
        raise ValueError('%s: frame must be a number or a file name, got %r' % (where, value))
    if isinstance(value, (int, float)):
        if mode == 'index':
            if not float(value).is_integer():
                raise ValueError('%s: frame index must be whole, got %r' % (where, value))
            return int(value)
        return int(value) if isinstance(value, int) else int(round(value * 1e9))
    text = str(value).strip()
    if mode == 'index' and re.fullmatch(r'\d+\.0*', text):
        return int(text.split('.')[0])
    return frame_key(text, mode)


def _box_of(item: Mapping[str, Any]) -> Any:
    if 'box' in item:
        return item['box']
    return [item.get('x1'), item.get('y1'), item.get('x2'), item.get('y2')]


def read_timings(path: PathLike, mode: str) -> Dict[int, Dict[str, Any]]:
    """
    Read a timings CSV written by ``--produce`` into {frame key: row}.

    Every ``<stage>_ms`` column becomes ``row['stages'][stage]`` in seconds.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding='utf-8')
    except OSError as exc:
        raise ValueError('cannot read timings file %s: %s' % (path, exc.strerror)) from exc
    rows: Dict[int, Dict[str, Any]] = {}
    for row in csv.DictReader(text.splitlines()):
        if _blank(row.get('frame')):
            raise ValueError('timings file %s: every row needs a frame' % path)
        parsed: Dict[str, Any] = dict(row)
        parsed['stages'] = {}
        for column, value in row.items():
            if column and column.endswith('_ms') and not _blank(value):
                try:
                    parsed['stages'][column[:-3]] = float(value) / 1000.0
                except ValueError:
                    raise ValueError('timings file %s: %s must be a number, got %r'
                                     % (path, column, value)) from None
        rows[int(row['frame'])] = parsed
    return rows


def order_stages(stages: Iterable[str]) -> List[str]:
    """Return pipeline stage names in TIMING_STAGES order, others after them, total last."""
    names = list(dict.fromkeys(stages))
    known = [s for s in TIMING_STAGES if s in names and s != 'total']
    extra = [s for s in names if s not in TIMING_STAGES]
    return known + extra + (['total'] if 'total' in names else [])


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """Write dict rows to a CSV file with a fixed column order (floats with 6 digits)."""
    with open(path, 'w', newline='', encoding='utf-8') as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row in rows:
            writer.writerow([_csv_value(row.get(name)) for name in header])


def _csv_value(value: Any) -> Any:
    if value is None:
        return ''
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return '' if math.isnan(value) else '%.6g' % value
    return value


def safe_name(text: str) -> str:
    """Return ``text`` reduced to characters that are safe in a file name."""
    return re.sub(r'[^A-Za-z0-9_.-]+', '_', text).strip('._') or 'session'
