"""
Reading bags: input paths and a reader that survives definitions it cannot parse.

Also the public reader API (:func:`open_bag`, :func:`read_messages`) the other tools read bags
through.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple, Type, Union

from .errors import BagError, one_line


def reader_errors() -> Tuple[Type[BaseException], ...]:
    """Return the errors rosbags' readers raise for a bag they cannot open."""
    from rosbags.highlevel import AnyReaderError
    from rosbags.rosbag1 import ReaderError as Reader1Error
    from rosbags.rosbag2 import ReaderError as Reader2Error
    return (AnyReaderError, Reader1Error, Reader2Error)


def input_path(path: Path) -> Path:
    """Return the path rosbags should open (a bag folder, .mcap/.db3 file or ROS 1 .bag)."""
    if not path.exists():
        raise BagError('input bag %s does not exist' % path)
    if path.is_file() and path.suffix in ('.mcap', '.db3') \
            and (path.parent / 'metadata.yaml').is_file():
        return path.parent
    if path.is_file() and path.name == 'metadata.yaml':
        return path.parent
    if path.is_dir() and not (path / 'metadata.yaml').is_file():
        raise BagError('%s is a folder without metadata.yaml, not a rosbag2 bag' % path)
    if path.is_file() and path.suffix not in ('.bag', '.mcap', '.db3'):
        raise BagError('%s is not a bag: expected a rosbag2 folder, a .mcap or .db3 file, or '
                       'a ROS 1 .bag file' % path)
    return path


def input_storage(path: Path) -> str:
    files = [path] if path.is_file() else list(path.iterdir())
    if any(p.suffix == '.db3' for p in files):
        return 'sqlite3'
    return 'mcap'


def tolerant_reader(path: Path, default_typestore: Any) -> Any:
    """
    Return an AnyReader that keeps going past message definitions it cannot parse.

    rosbags' AnyReader stops the whole bag at one definition it cannot parse (for example the
    ``.../srv/..._Event`` service-event topics that ``ros2 bag record`` writes on Jazzy).  This
    one parses each connection's definition on its own and lists those that fail in
    ``unparsed`` (type -> reason); their messages are still read, as bytes.
    """
    from rosbags.highlevel import AnyReader
    from rosbags.highlevel.anyreader import AnyReaderError
    from rosbags.interfaces import MessageDefinitionFormat
    from rosbags.typesys import get_types_from_idl, get_types_from_msg, get_typestore, Stores

    def parse(connection: Any) -> Dict[str, Any]:
        if connection.msgdef.format == MessageDefinitionFormat.MSG:
            return dict(get_types_from_msg(connection.msgdef.data, connection.msgtype))
        found: Dict[str, Any] = {}
        sep = '=' * 80 + '\n'
        if connection.msgdef.data.startswith(sep + 'IDL: '):
            for msgdef in connection.msgdef.data.split(sep)[1:]:
                found.update(get_types_from_idl(msgdef.split('\n', 1)[1]))
        else:
            found.update(get_types_from_idl(connection.msgdef.data))
        return found

    class TolerantReader(AnyReader):
        unparsed: Dict[str, str]

        def _open(self) -> None:
            assert self.stack
            for sub in self.readers:
                self.stack.enter_context(sub)
            self.unparsed = {}
            typs: Dict[str, Any] = {}
            digests: Dict[str, str] = {}
            connections = [c for sub in self.readers for c in sub.connections]
            defined = [c for c in connections if c.msgdef.format != MessageDefinitionFormat.NONE]
            for connection in defined:
                try:
                    typs.update(parse(connection))
                except Exception as exc:  # noqa: BLE001 - this type only is copied as bytes
                    self.unparsed[connection.msgtype] = one_line(exc)
                    continue
                if connection.digest:
                    digests[connection.msgtype] = connection.digest
            if connections and not defined:
                if self.default_typestore is None:
                    raise AnyReaderError('Bag contains no type definitions.')
                typs.update(self.default_typestore.fielddefs)
            typestore = get_typestore(Stores.EMPTY)
            typestore.register(typs)
            for msgtype, digest in digests.items():
                try:
                    have = (typestore.hash_rihs01(msgtype) if self.is2
                            else typestore.generate_msgdef(msgtype)[1])
                except Exception as exc:  # noqa: BLE001 - cannot be checked
                    self.unparsed[msgtype] = one_line(exc)
                    continue
                if have != digest:
                    self.unparsed[msgtype] = 'its definition does not match its hash'
            self.connections = connections
            self.typestore = typestore

    return TolerantReader([path], default_typestore=default_typestore)


def open_reader(path: Path) -> Any:
    from rosbags.typesys import get_typestore, Stores
    try:
        reader = tolerant_reader(path, get_typestore(Stores.LATEST))
        reader.open()
    except reader_errors() as exc:
        raise BagError('cannot read input bag %s: %s (is it corrupt or truncated?)'
                       % (path, exc)) from exc
    except Exception as exc:  # noqa: BLE001 - storage libraries raise many kinds
        raise BagError('cannot read input bag %s: %s: %s (is it corrupt or truncated?)'
                       % (path, type(exc).__name__, exc)) from exc
    return reader


def iter_raw(reader: Any, path: Path, connections: Sequence[Any] = ()
             ) -> Iterator[Tuple[Any, int, Any]]:
    """Yield (connection, timestamp, raw) and turn reading failures into a BagError."""
    iterator = reader.messages(connections=connections)
    count = 0
    while True:
        try:
            item = next(iterator)
        except StopIteration:
            return
        except Exception as exc:  # noqa: BLE001 - corrupt storage, bad chunk, ...
            raise BagError('reading input bag %s failed after %d messages: %s: %s (is it '
                           'corrupt or truncated?)' % (path, count, type(exc).__name__, exc)
                           ) from exc
        count += 1
        yield item


def open_bag(path: Union[str, Path]) -> Any:
    """
    Open a bag the way anonymize_bag does; return the opened rosbags reader.

    ``path`` is a rosbag2 folder, a ``.mcap``/``.db3`` file or a ROS 1 ``.bag``.  Every message
    definition stored in the bag is parsed on its own (those that cannot be parsed are listed
    in ``reader.unparsed``, type -> reason, and their messages read as bytes).  Close it with
    ``reader.close()`` or use it in a ``with`` block.

    :raises BagError: for a missing, corrupt or truncated bag.
    """
    return open_reader(input_path(Path(path)))


def read_messages(path: Union[str, Path], topics: Optional[Sequence[str]] = None
                  ) -> Iterator[Tuple[str, int, Any]]:
    """
    Yield ``(topic, receive timestamp in ns, message)`` for the messages of a bag, in order.

    ``topics`` limits the topics read (None: all).  Messages are deserialized with the bag's own
    definitions; one whose definition cannot be parsed is skipped.

    :raises BagError: for a missing, corrupt or truncated bag, or a read that fails midway.
    """
    reader = open_bag(path)
    try:
        wanted = set(topics) if topics is not None else None
        unparsed: Dict[str, str] = dict(getattr(reader, 'unparsed', {}))
        connections = [c for c in reader.connections
                       if (wanted is None or c.topic in wanted) and c.msgtype not in unparsed]
        if not connections:
            return
        for conn, timestamp, raw in iter_raw(reader, Path(path), connections):
            yield conn.topic, timestamp, reader.deserialize(raw, conn.msgtype)
    finally:
        reader.close()
