"""Message definitions of the output bag: its typestore, ROS 2 validity, types holding images."""

from __future__ import annotations

import re
from typing import Any, Callable, Dict, List, Mapping, Set, Tuple

from .errors import one_line
from .topics import COMPRESSED_TYPE, IMAGE_TYPE


ROS2_FIELD_NAME = re.compile(r'^[a-z][a-z0-9]*(_[a-z0-9]+)*$')
"""ROS 2 field names: lower case, digits and single inner underscores (rosidl's rule)."""


def ros2_definition_problem(store: Any, msgtype: str) -> str:
    """Return why ``msgtype`` (and the types it uses) is not a valid ROS 2 message, or ''."""
    try:
        used = type_closure(store, msgtype, set())
    except KeyError as exc:
        return 'its definition uses the unknown type %s' % exc
    for name in used:
        for field_name, _ in store.fielddefs[name][1]:
            if not ROS2_FIELD_NAME.match(field_name):
                return '%r in %s is not a valid ROS 2 field name' % (field_name, name)
    return ''


def output_typestore(reader: Any) -> Tuple[Any, Dict[str, str],
                                           Dict[str, Callable[[Any], Any]], Dict[str, str]]:
    """
    Return the output typestore, type renames, per-type converters to CDR and skipped types.

    rosbag2 input: the bag's own types, messages copied byte for byte.  ROS 1 input: the ROS 2
    definitions of the latest distribution (field names, types and hashes: CameraInfo's
    ``D K R P`` become ``d k r p``), messages migrated by rosbags' converter; a type the
    distribution does not have keeps its own definition when that is valid ROS 2, else it is
    skipped (``skipped`` maps it to the reason).  sensor_msgs/Image is added for mask topics.
    """
    from rosbags.typesys import get_types_from_msg, get_typestore, Stores
    latest = get_typestore(Stores.LATEST)
    src = reader.typestore
    renames: Dict[str, str] = {}
    converters: Dict[str, Callable[[Any], Any]] = {}
    skipped: Dict[str, str] = {}
    if reader.is2:
        dst = get_typestore(Stores.EMPTY)
        dst.register(dict(src.fielddefs))
    else:
        from rosbags.convert.converter import generate_message_converter, STATIC_MSGTYPE_RENAMES
        dst = get_typestore(Stores.LATEST)
        cache: Dict[str, object] = {}
        for conn in reader.connections:
            if conn.msgtype in converters or conn.msgtype in skipped:
                continue
            target = STATIC_MSGTYPE_RENAMES.get(conn.msgtype, conn.msgtype)
            try:
                if target not in dst.fielddefs:
                    typs = get_types_from_msg(
                        src.generate_msgdef(conn.msgtype, ros_version=2)[0], target)
                    typs.pop('std_msgs/msg/Header', None)
                    candidate = get_typestore(Stores.LATEST)
                    candidate.register({k: v for k, v in typs.items()
                                        if k not in candidate.fielddefs})
                    problem = ros2_definition_problem(candidate, target)
                    if problem:
                        skipped[conn.msgtype] = 'no ROS 2 equivalent: %s' % problem
                        continue
                    dst.register({k: v for k, v in typs.items() if k not in dst.fielddefs})
                converters[conn.msgtype] = generate_message_converter(
                    src, dst, conn.msgtype, target, cache, src_is2=False, dst_is2=True)
            except Exception as exc:  # noqa: BLE001 - reported and skipped, never broken
                skipped[conn.msgtype] = 'cannot be converted to ROS 2: %s' % one_line(exc)
                continue
            renames[conn.msgtype] = target
    missing = type_closure(latest, IMAGE_TYPE, set(dst.fielddefs))
    if missing:
        dst.register({name: latest.fielddefs[name] for name in missing})
    return dst, renames, converters, skipped


def type_closure(store: Any, name: str, have: Set[str]) -> List[str]:
    """Return ``name`` and the types it uses that are not in ``have``."""
    from rosbags.interfaces import Nodetype
    found: List[str] = []
    todo = [name]
    while todo:
        current = todo.pop()
        if current in have or current in found:
            continue
        found.append(current)
        for _, desc in store.fielddefs[current][1]:
            kind, detail = desc
            sub = detail[0] if kind in (Nodetype.ARRAY, Nodetype.SEQUENCE) else desc
            if sub[0] == Nodetype.NAME:
                todo.append(sub[1])
    return found


def embeds_image(store: Any, msgtype: str) -> bool:
    """Return True when ``msgtype`` has an Image or CompressedImage field, at any depth."""
    if msgtype not in store.fielddefs:
        return False
    try:
        used = type_closure(store, msgtype, set())
    except KeyError:
        return False
    return IMAGE_TYPE in used or COMPRESSED_TYPE in used


def mentions_images(msgdef: str) -> bool:
    """Return True when a message definition text uses an Image or CompressedImage."""
    return bool(re.search(r'\b(Image|CompressedImage)\b', msgdef or ''))


def raw_schema_problem(rconn: Any, unparsed: Mapping[str, str]) -> str:
    """Return why a connection whose definition cannot be parsed cannot be copied, or ''."""
    if rconn.msgtype not in unparsed:
        return ''
    if not rconn.msgdef.data or not rconn.digest:
        return ('its definition cannot be parsed (%s) and the bag has no definition and hash '
                'to copy' % unparsed[rconn.msgtype])
    return ''
