"""Cache files are written whole or not at all (training.files)."""
from __future__ import annotations

from pathlib import Path

import pytest

from training.files import written_whole


def test_the_file_appears_only_once_written_whole(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "slices.pt"
    with written_whole(path) as out:
        out.write(b"first half ")
        assert not path.exists(), "a reader must not find a half-written cache"
        out.write(b"second half")
    assert path.read_bytes() == b"first half second half"
    assert [p.name for p in path.parent.iterdir()] == ["slices.pt"]


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing_behind(tmp_path: Path) -> None:
    path = tmp_path / "background.npz"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with written_whole(path) as out:
            out.write(b"new, cut short")
            raise RuntimeError("disk full")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["background.npz"]
