"""The storage backend seen from code that needs files on local disk (pydicom, the inference engine), and the
ingest's write of new files."""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from django.core.files import File
from django.core.files.storage import FileSystemStorage, default_storage

WRITE_BYTES = 16 * 1024 * 1024


def save_new(name: str, content: BinaryIO) -> str:
    """Store ``content`` (read from its current position) as a new file named ``name``, or beside it under a free
    name as ``Storage.save`` picks one when ``name`` is taken, and return the name used.

    On local disk, in a folder that exists, the file is created and written with a handful of system calls (an
    exclusive open, the mode, one write for a file held in memory, close): ``FileSystemStorage.save`` checks the name,
    makes the folders, locks the file and writes it in 64 KiB pieces, about twice as many calls and much more Python
    per file. Each call releases the GIL, and in a threaded server getting it back waits on the other requests'
    threads; the ingest stores every received instance here. Object storage, a new folder (a series' first file)
    and a taken name go through ``default_storage.save``.
    """
    if isinstance(default_storage, FileSystemStorage):
        path = default_storage.path(name)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except (FileNotFoundError, FileExistsError):
            pass
        else:
            _write_new(fd, path, content)
            return name
    return default_storage.save(name, File(content, name=os.path.basename(name)))


def _write_new(fd: int, path: str, content: BinaryIO) -> None:
    """Fill the file just created at ``path`` (open as ``fd``); a failed write removes it, so no part stays."""
    try:
        with open(fd, "wb") as target:
            if default_storage.file_permissions_mode is not None:
                os.fchmod(fd, default_storage.file_permissions_mode)
            while chunk := content.read(WRITE_BYTES):
                target.write(chunk)
    except BaseException:
        os.unlink(path)
        raise


@contextmanager
def local_paths(names: list[str], prefix: str = "lungscope-") -> Iterator[list[Path]]:
    """Local paths of stored files, in order: the storage's own paths on disk, or, for object storage that has no
    local path, copies in a temporary folder that is removed when the block ends."""
    try:
        paths = [Path(default_storage.path(name)) for name in names]
    except NotImplementedError:
        paths = None
    if paths is not None:
        yield paths
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        copies = []
        for i, name in enumerate(names):
            target = Path(tmp) / f"{i:06d}.dcm"
            with default_storage.open(name, "rb") as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            copies.append(target)
        yield copies
