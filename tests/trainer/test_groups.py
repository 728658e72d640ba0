"""The patients behind the scans: the groups check, file numbers, near-twin joining."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trainer.data import DataError
from trainer.groups import check_group_options, file_numbers, merge_near_twins, patients_of


def _manifest(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text(
        "dev_index,source_file,pseudo_case\n"
        + "".join(f"{i},{source},{group}\n" for i, (source, group) in enumerate(rows))
    )
    return path


def test_groups_need_their_column() -> None:
    with pytest.raises(ValueError, match="--group-column"):
        check_group_options("groups.csv", None)
    check_group_options(None, None)


def test_file_numbers_come_from_source_file(tmp_path: Path) -> None:
    csv = _manifest(
        tmp_path / "m.csv", [("Normal cases/Normal case (12).jpg", "a"), ("b (3).png", "b")]
    )
    assert file_numbers(csv).tolist() == [12, 3]
    bad = _manifest(tmp_path / "bad.csv", [("no number.jpg", "a")])
    with pytest.raises(DataError, match="no file number"):
        file_numbers(bad)


def test_near_twins_are_joined_and_lookalike_sets_are_not() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (24, 64, 64)).astype(np.uint8)
    images[1] = images[0]  # group a's slice reappears in group b
    groups = np.array(["a", "b"] + [f"g{i}" for i in range(22)])
    joined = merge_near_twins(images, groups)
    assert joined[0] == joined[1] == "a+b" and len(np.unique(joined)) == 23
    alike = np.repeat(images[:1], 24, axis=0)
    assert merge_near_twins(alike, groups) is None


def test_without_groups_each_scan_is_its_own(tmp_path: Path) -> None:
    images = np.zeros((5, 64, 64), np.uint8)
    patients = patients_of(images, None, None)
    assert len(np.unique(patients.units)) == 5 and patients.numbers is None
    assert not patients.given
