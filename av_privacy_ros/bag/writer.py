"""Writing the output bag: connections with the input's format and QoS, messages in input order."""

from __future__ import annotations

from collections import deque
from typing import Any, Deque, Dict, Tuple


class Slot:
    """One output message in input order: pending until its bytes are known (or dropped)."""

    __slots__ = ('conn', 'timestamp', 'data', 'state')

    PENDING, READY, DROPPED = 0, 1, 2

    def __init__(self, conn: Any, timestamp: int) -> None:
        """Make a pending slot for a message of ``conn`` received at ``timestamp``."""
        self.conn = conn
        self.timestamp = timestamp
        self.data: Any = None
        self.state = self.PENDING

    def ready(self, data: Any) -> None:
        """Set the bytes to write."""
        self.data = data
        self.state = self.READY

    def drop(self) -> None:
        """Write nothing for this message."""
        self.data = None
        self.state = self.DROPPED


class OutputQueue:
    """Write messages in input order as soon as every message before them is final."""

    def __init__(self, writer: Any) -> None:
        """Write to a rosbags Writer."""
        self.writer = writer
        self.queue: Deque[Slot] = deque()

    def add(self, conn: Any, timestamp: int) -> Slot:
        """Reserve the place of the next message in input order."""
        slot = Slot(conn, timestamp)
        self.queue.append(slot)
        return slot

    def flush(self) -> None:
        """Write the leading messages that are final."""
        queue = self.queue
        while queue and queue[0].state != Slot.PENDING:
            slot = queue.popleft()
            if slot.state == Slot.READY:
                self.writer.write(slot.conn, slot.timestamp, slot.data)


def add_connection(writer: Any, rconn: Any, topic: str, msgtype: str, dst_ts: Any,
                   is2: bool, added: Dict[Tuple[Any, ...], Any],
                   raw_schema: bool = False) -> Any:
    """Add (once) the output connection of an input connection; keep its format and QoS."""
    from rosbags.interfaces import ConnectionExtRosbag2, MessageDefinitionFormat
    if is2 and isinstance(rconn.ext, ConnectionExtRosbag2):
        ext_format = rconn.ext.serialization_format
        qos = list(rconn.ext.offered_qos_profiles)
    else:
        from rosbags.convert.converter import LATCH
        ext_format = 'cdr'
        qos = list(LATCH) if getattr(rconn.ext, 'latching', 0) else []
    key = (topic, msgtype, ext_format, repr(qos))
    if key in added:
        return added[key]
    if raw_schema or is2 and rconn.msgtype == msgtype and rconn.digest \
            and rconn.msgdef.format != MessageDefinitionFormat.NONE and rconn.msgdef.data:
        conn = writer.add_connection(topic, msgtype, msgdef=rconn.msgdef.data,
                                     rihs01=rconn.digest, serialization_format=ext_format,
                                     offered_qos_profiles=qos)
    else:
        conn = writer.add_connection(topic, msgtype, typestore=dst_ts,
                                     serialization_format=ext_format, offered_qos_profiles=qos)
    added[key] = conn
    return conn
