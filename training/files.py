"""Cache files written whole or not at all."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

__all__ = ["written_whole"]


@contextmanager
def written_whole(path: Path) -> Iterator[IO[bytes]]:
    """A binary file to write ``path``'s content into; it becomes ``path`` only when the block ends without error.

    Why: caches (real backgrounds, slice sets) are read by processes running side by side (``crossval --jobs``, a
    bench beside a training run); one that opened a cache while another was still writing it read a truncated
    file ("No data left in file"). The content goes to a private file in the same folder and is renamed over
    ``path`` (atomic on one file system), so a reader sees the old file, no file, or the whole new one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False)
    try:
        with tmp:
            yield tmp
        os.replace(tmp.name, path)
    except BaseException:
        Path(tmp.name).unlink(missing_ok=True)
        raise
