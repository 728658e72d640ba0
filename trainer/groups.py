"""The patients behind the scans, in one place: the groups check, near-twin joining, dates.

`--groups CSV --group-column NAME` names each scan's study (e.g. `pseudo_case`); the folds are
dealt by patient units: the studies, joined where two share a near-identical slice (the
pseudo-cases are estimated, and such twins are most likely one patient). A `source_file`
column, when present, carries the file number the temporal design orders patients by.
Without groups every scan is its own study and patient.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainer.data import DataError, load_groups

TWIN_CORRELATION = 0.8  # studies sharing a slice this alike are joined (one patient)
MIN_GROUPS = 10
SOURCE_COLUMN = "source_file"


@dataclass
class Patients:
    """Per scan: its study, its patient unit (joined studies) and its file number (or None)."""

    studies: np.ndarray
    units: np.ndarray
    numbers: np.ndarray | None
    given: bool  # False: no groups given, every scan its own

    def describe(self) -> str:
        if not self.given:
            return f"no patient groups given: each of {len(self.units)} scans is its own"
        return (
            f"{len(np.unique(self.studies))} patient groups given; {len(np.unique(self.units))} "
            f"after joining groups that share a slice with pixel correlation >= {TWIN_CORRELATION}"
        )


def check_group_options(groups: str | Path | None, column: str | None) -> None:
    """The one groups check: a groups CSV needs the column that names the group."""
    if groups is not None and not column:
        raise ValueError("--groups needs --group-column naming the group column")


def patients_of(images: np.ndarray, groups: str | Path | None, column: str | None) -> Patients:
    """The patients of `images` from the groups CSV (or each scan its own)."""
    check_group_options(groups, column)
    if groups is None:
        own = np.arange(len(images)).astype(str)
        return Patients(own, own, None, False)
    studies = load_groups(groups, column, len(images))
    joined = merge_near_twins(images, studies)
    return Patients(studies, studies if joined is None else joined, file_numbers(groups), True)


def file_numbers(csv_path: str | Path) -> np.ndarray | None:
    """The number in each row's `source_file` (the last run of digits), or None without it."""
    with Path(csv_path).open(newline="") as handle:
        reader = csv.DictReader(handle)
        if SOURCE_COLUMN not in (reader.fieldnames or []):
            return None
        names = [row[SOURCE_COLUMN] for row in reader]
    numbers = []
    for name in names:
        found = re.findall(r"\d+", name)
        if not found:
            raise DataError(f"{csv_path}: {SOURCE_COLUMN} {name!r} carries no file number")
        numbers.append(int(found[-1]))
    return np.asarray(numbers)


def merge_near_twins(
    images: np.ndarray, groups: np.ndarray, threshold: float = TWIN_CORRELATION
) -> np.ndarray | None:
    """Groups joined wherever a slice of one and a slice of another correlate >= `threshold`;
    the joined group is named by its members' names sorted and joined by '+'. None when that
    would leave fewer than half the groups (or MIN_GROUPS): the scans are then alike everywhere
    (phantoms) and similarity says nothing about patients."""
    groups = np.asarray(groups).astype(str)
    names, inverse = np.unique(groups, return_inverse=True)
    x = images.reshape(len(images), -1).astype(np.float64)
    x -= x.mean(axis=1, keepdims=True)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)
    parent = list(range(len(names)))

    def root(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for start in range(0, len(x), 512):
        rows, columns = np.nonzero(x[start : start + 512] @ x.T >= threshold)
        for a, b in zip(inverse[rows + start], inverse[columns], strict=True):
            ra, rb = root(int(a)), root(int(b))
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    members: dict[int, list[str]] = {}
    for index, name in enumerate(names):
        members.setdefault(root(index), []).append(str(name))
    if len(members) < max(MIN_GROUPS, len(names) / 2):
        return None
    joined = {r: "+".join(sorted(m)) for r, m in members.items()}
    return np.array([joined[root(int(i))] for i in inverse])
