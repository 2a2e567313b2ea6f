"""dimatting.io helpers shared by the commands (reading, normalising and writing are covered through them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dimatting.commands.evaluate import pair_files
from dimatting.errors import InputError
from dimatting.io import files_by_stem


def test_files_by_stem_keeps_the_first_and_lists_the_others(tmp_path: Path) -> None:
    for name in ("b.png", "a.PNG", "a.jpg", "c.txt", "b.npy"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "d.png").mkdir()
    found, taken = files_by_stem(tmp_path, (".png", ".jpg"), "image")
    assert found == {"a": tmp_path / "a.PNG", "b": tmp_path / "b.png"}
    assert taken == [tmp_path / "a.jpg"]
    with pytest.raises(InputError, match=r"missing: image folder not found; check the path"):
        files_by_stem(tmp_path / "missing", (".png",), "image")


def test_evaluate_refuses_two_predictions_with_one_stem(tmp_path: Path) -> None:
    for folder in ("pred", "gt", "trimap"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "x.png").write_bytes(b"")
    (tmp_path / "pred" / "x.npy").write_bytes(b"")
    with pytest.raises(InputError, match=r"x\.png: x\.npy has the same stem; keep one prediction per image"):
        pair_files(tmp_path / "pred", tmp_path / "gt", tmp_path / "trimap")
