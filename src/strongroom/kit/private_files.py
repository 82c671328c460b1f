"""Files and folders readable by their owner only, whatever the process's umask.

A umask only takes permission bits away, and a permissive one (``umask 000`` in a container
image, a service manager's default) takes none: a mode asked of ``open`` or ``mkdir`` is then
what the file gets, and SQLite, Python's ``open`` and ``Path.mkdir`` ask for 0644, 0666 and
0777. Everything the server and the CLI keep on disk (the database, its WAL and shared-memory
files, the writer lock, the master key, profiles, cached tokens) is created through here with
its mode set explicitly: 0700 for folders, 0600 for files.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_DIRECTORY = 0o700
PRIVATE_FILE = 0o600


def private_directory(path: Path, *, tighten: bool = False) -> Path:
    """Create ``path`` and its missing parents with mode 0700; return ``path``.

    Folders that exist are left as they are (the folder a database was put in may be shared
    on purpose), unless ``tighten``: then ``path`` itself loses any group and other bits.
    Raises OSError as ``mkdir`` and ``chmod`` do.
    """
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=PRIVATE_DIRECTORY)
        except FileExistsError:
            continue  # another process made it first: theirs, made the same way
        directory.chmod(PRIVATE_DIRECTORY)  # the umask cannot widen it, only narrow it
    if tighten and stat.S_IMODE(path.stat().st_mode) & 0o077:
        path.chmod(PRIVATE_DIRECTORY)
    return path


def create_private_file(path: Path) -> bool:
    """Create ``path`` empty with mode 0600 unless it exists; return whether it was created.
    Raises OSError when it cannot be created."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return False
    try:
        os.fchmod(descriptor, PRIVATE_FILE)
    finally:
        os.close(descriptor)
    return True


def owner_only(path: Path) -> bool:
    """Take group and other bits away from ``path`` if it has any; return whether it had.
    False for a missing file. Raises PermissionError for another user's file."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return False
    if not mode & 0o077:
        return False
    path.chmod(mode & 0o700)
    return True


def private_opener(path: str, flags: int) -> int:
    """An ``opener`` for :func:`open` that creates missing files with mode 0600."""
    return os.open(path, flags | os.O_CLOEXEC, PRIVATE_FILE)
