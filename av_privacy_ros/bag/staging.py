"""
Output-path safety and staging.

The output never touches the input, is written in a hidden folder beside its final name, and
replaces an existing output only when it is a rosbag2 folder.
"""

from __future__ import annotations

import os
from pathlib import Path
import shutil
from typing import List, Tuple

from .errors import BagError, LogCallback

ROSBAG2_FILE_SUFFIXES = ('.mcap', '.db3', '.db3-shm', '.db3-wal', '.db3-journal', '.zstd')
"""Files a rosbag2 output folder holds beside metadata.yaml; --force replaces nothing else."""


def input_files(src: Path) -> List[Path]:
    """Return the input bag and, for a folder, every file in it, with symlinks resolved."""
    found = [src.resolve()]
    if src.is_dir():
        found.extend(child.resolve() for child in src.iterdir())
    return found


def check_output(src: Path, dst: Path, force: bool) -> None:
    """
    Refuse an output that could touch the input or anything the user did not name as output.

    Checked with symlinks resolved, before anything is read or written: the output must not be
    the input, contain the input (or any input file), or lie inside the input.  An existing
    output is replaced only with ``force``, and only when it is a rosbag2 folder (a
    metadata.yaml beside storage files) holding nothing else.

    :raises BagError: saying which rule the output breaks.
    """
    target = dst.resolve()
    for item in input_files(src):
        if target == item:
            raise BagError('the output %s is the input bag %s' % (dst, src))
        if target in item.parents:
            raise BagError('the output %s contains the input %s; replacing or writing it could '
                           'destroy the input' % (dst, item))
        if item in target.parents:
            raise BagError('the output %s lies inside the input %s' % (dst, item))
    if not os.path.lexists(dst):
        return
    if not force:
        raise BagError('output %s exists already; use --force to replace it' % dst)
    problem = not_a_rosbag2_output(dst)
    if problem:
        raise BagError('output %s %s' % (dst, problem))


def not_a_rosbag2_output(folder: Path) -> str:
    """
    Return why ``folder`` is not a rosbag2 folder holding nothing else, or '' when it is one.

    Only such a folder is ever replaced (``--force``) or deleted (a replaced output).
    """
    if folder.is_symlink():
        return 'is a symbolic link; --force does not replace links'
    if not folder.is_dir():
        return 'is not a folder; --force only replaces a rosbag2 output folder'
    if not (folder / 'metadata.yaml').is_file():
        return 'has no metadata.yaml; --force only replaces a rosbag2 output folder'
    foreign = sorted(child.name for child in folder.iterdir()
                     if child.name != 'metadata.yaml'
                     and not (child.is_file() and not child.is_symlink()
                              and child.name.endswith(ROSBAG2_FILE_SUFFIXES)))
    if foreign:
        return ('holds files that are not part of a rosbag2 bag (%s); --force does not '
                'replace it' % ', '.join(foreign[:5]))
    return ''


def _pid_alive(pid: int) -> bool:
    """Return True when a process with this id exists (it may belong to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, OSError):
        return False
    return True


def leftovers(dst: Path, kind: str) -> List[Tuple[Path, int]]:
    """
    Return the folders ``.NAME.KIND-PID`` beside ``dst`` with the pid each names.

    ``kind`` is ``partial`` (a staging folder) or ``old`` (an output being replaced). Links and
    files with such names are not returned: this tool makes only real folders.
    """
    prefix = '.%s.%s-' % (dst.name, kind)
    found: List[Tuple[Path, int]] = []
    if not dst.parent.is_dir():
        return found
    for child in sorted(dst.parent.iterdir()):
        pid_text = child.name[len(prefix):] if child.name.startswith(prefix) else ''
        if pid_text.isdigit() and not child.is_symlink() and child.is_dir():
            found.append((child, int(pid_text)))
    return found


def _of_running_process(pid: int) -> bool:
    return pid != os.getpid() and _pid_alive(pid)


def clean_stale_staging(dst: Path, say: LogCallback) -> List[Path]:
    """
    Remove ``.NAME.partial-PID`` staging folders left beside ``dst`` by killed runs.

    A folder whose process is still running is left alone (and reported).  Returns the folders
    removed.
    """
    removed: List[Path] = []
    for child, pid in leftovers(dst, 'partial'):
        if _of_running_process(pid):
            say('note: %s belongs to a running anonymize_bag (process %d); left alone'
                % (child, pid))
            continue
        shutil.rmtree(child)
        say('removed %s, the unfinished output of an interrupted run (process %d)'
            % (child, pid))
        removed.append(child)
    return removed


def recover_interrupted_replacement(dst: Path, say: LogCallback) -> List[Path]:
    """
    Settle ``.NAME.old-PID`` folders left beside ``dst`` by runs killed while replacing it.

    :func:`publish_output` moves the previous output aside, moves the new one in, then deletes
    the previous one. A run killed between the first two steps leaves no output at all: the
    previous output is moved back. A run killed after them leaves a replaced output that
    ``--force`` asked to delete: it is deleted, if it is still nothing but a rosbag2 bag.
    Folders of running processes are left alone. Returns the folders moved back or removed.
    """
    settled: List[Path] = []
    for child, pid in leftovers(dst, 'old'):
        if _of_running_process(pid):
            continue
        if not os.path.lexists(dst):
            child.rename(dst)
            say('restored %s from %s: a run (process %d) was killed while replacing it'
                % (dst, child, pid))
            settled.append(child)
            continue
        problem = not_a_rosbag2_output(child)
        if problem:
            say('note: %s is left alone: it %s' % (child, problem))
            continue
        shutil.rmtree(child)
        say('removed %s, an output replaced by a run that was killed before it could '
            'delete it (process %d)' % (child, pid))
        settled.append(child)
    return settled


def make_parent(dst: Path) -> List[Path]:
    """Create the output's missing parent folders; return them (outermost first)."""
    missing: List[Path] = []
    parent = dst.parent
    while not parent.exists() and not parent.is_symlink() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    created: List[Path] = []
    for folder in reversed(missing):
        folder.mkdir()
        created.append(folder)
    if not dst.parent.is_dir():
        raise NotADirectoryError('%s is not a folder' % dst.parent)
    return created


def staging_folder(dst: Path) -> Path:
    """Create (empty) and return the hidden folder ``.NAME.partial-PID`` to write the output in."""
    staging = dst.parent / ('.%s.partial-%d' % (dst.name, os.getpid()))
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    return staging


def publish_output(src: Path, staged: Path, dst: Path, force: bool) -> None:
    """Move the finished bag ``staged`` to ``dst``, replacing an old output only as allowed."""
    if os.path.lexists(dst):
        # Checked again: the folder may have appeared while the bag was written.
        check_output(src, dst, force)
        old = dst.parent / ('.%s.old-%d' % (dst.name, os.getpid()))
        dst.rename(old)
        staged.rename(dst)
        remove(old)
    else:
        staged.rename(dst)


def remove(path: Path) -> None:
    """Remove a staging folder, a replaced output or a file; nothing else is passed here."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()
