"""The storage backend seen from code that needs files on local disk (pydicom, the inference engine)."""
from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.core.files.storage import default_storage


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
