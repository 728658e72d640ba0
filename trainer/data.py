"""Load labelled (or unlabelled) scans from the accepted layouts, and split them.

Accepted `--data` forms:
- `scans.npz` with `images` (and `labels`; optional for predict);
- a MedMNIST-style `.npz` with `train_images`, `train_labels`, `val_...`, `test_...`
  (its own split is kept);
- `images.npy,labels.npy` (a pair; a single `images.npy` is unlabelled);
- a folder with one sub-folder per class (`0`/`1`/`2`, or names like `healthy`, `benign`,
  `malignant`, `urgent`) of PNG / JPEG / DICOM files; a folder of files without class
  sub-folders, or a single image file, is unlabelled.
Every image goes through `imaging`, exactly as in the worker.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imaging.arrays import load_npy, load_npz
from imaging.canonical import ScanError, canonicalize_stack
from imaging.files import DICOM_SUFFIXES, IMAGE_SUFFIXES, read_scan_file

NUM_CLASSES = 3
SPLITS = ("train", "val", "test")
FOLDER_CLASSES = {
    "0": 0, "healthy": 0, "normal": 0, "clean": 0,
    "1": 1, "non-urgent": 1, "non_urgent": 1, "nonurgent": 1, "benign": 1,
    "2": 2, "urgent": 2, "malignant": 2, "serious": 2,
}  # fmt: skip
FOLDER_FILE_SUFFIXES = IMAGE_SUFFIXES | DICOM_SUFFIXES
TRAINING_MAX_FILE_BYTES = 8 * 1024**3  # an NPY of training scans may be large
TRAINING_MAX_SCANS = 10_000_000


class DataError(ValueError):
    """A data set that cannot be used; the message names the input and the reason."""


@dataclass
class ScanSet:
    """Canonical scans (uint8 (N, 64, 64)), their labels if known, and where they came from."""

    images: np.ndarray
    labels: np.ndarray | None
    source: str
    synthetic: bool = False
    given_splits: dict[str, np.ndarray] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """sha256 over the images and labels, naming exactly what a model was trained on."""
        digest = hashlib.sha256(np.ascontiguousarray(self.images).tobytes())
        if self.labels is not None:
            digest.update(np.ascontiguousarray(self.labels).tobytes())
        return digest.hexdigest()


def load_scans(spec: str | Path, require_labels: bool = True) -> ScanSet:
    """Load a data set in any accepted form (see the module docstring)."""
    spec = str(spec)
    if "," in spec:
        parts = [part.strip() for part in spec.split(",")]
        if len(parts) != 2:
            raise DataError(f"{spec}: expected `images.npy,labels.npy`")
        return _require(_load_npy_pair(Path(parts[0]), Path(parts[1])), require_labels)
    path = Path(spec)
    if not path.exists():
        raise DataError(f"{spec}: no such file or folder")
    if path.is_dir():
        return _require(_load_folder(path), require_labels)
    if path.suffix.lower() == ".npz":
        return _require(_load_npz(path), require_labels)
    return _require(ScanSet(_decode_file(path), None, str(path)), require_labels)


def scan_set_from_arrays(images: np.ndarray, labels: np.ndarray, source: str = "arrays") -> ScanSet:
    """A labelled ScanSet from in-memory arrays, decoded and checked like a file."""
    decoded = _decode_array(images, source)
    return ScanSet(decoded, _check_labels(labels, len(decoded), f"{source} labels"), source)


def load_groups(csv_path: str | Path, column: str, expected_rows: int) -> np.ndarray:
    """The group (e.g. patient) of every image, read from one CSV column in image order."""
    path = Path(csv_path)
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            if column not in (reader.fieldnames or []):
                found = ", ".join(reader.fieldnames or []) or "no header"
                raise DataError(f"{path}: no column {column!r} (found: {found})")
            groups = [row[column] for row in reader]
    except OSError as error:
        raise DataError(f"{path}: cannot read groups CSV ({error.strerror or error})") from None
    except (csv.Error, UnicodeDecodeError) as error:
        raise DataError(f"{path}: not a readable CSV ({error})") from None
    if len(groups) != expected_rows:
        raise DataError(
            f"{path}: {len(groups)} rows but the data set has {expected_rows} images; "
            "the groups CSV needs one row per image, in the same order"
        )
    if any(group.strip() == "" for group in groups):
        raise DataError(f"{path}: column {column!r} has empty values")
    return np.asarray(groups)


def deal_groups(
    labels: np.ndarray, groups: np.ndarray, shares: tuple[float, ...], seed: int
) -> np.ndarray:
    """The part (index into `shares`) of every image, keeping each group in one part.

    Deals whole groups, class by class in a seeded random order, to the part furthest below
    its share of that class (by images). Mixed groups count for their majority class.
    (sklearn's StratifiedGroupKFold orders single-class groups by size, so its folds barely
    change with the seed.)"""
    names, inverse = np.unique(np.asarray(groups), return_inverse=True)
    rng = np.random.default_rng(seed)
    shares = np.asarray(shares, dtype=float)
    counts = np.zeros((len(names), NUM_CLASSES), dtype=int)
    np.add.at(counts, (inverse, np.asarray(labels).astype(int)), 1)
    majority = counts.argmax(axis=1)
    chosen = np.zeros(len(names), dtype=int)
    for label in range(NUM_CLASSES):
        members = rng.permutation(np.flatnonzero(majority == label))
        target = shares * counts[members].sum()
        filled = np.zeros(len(shares))
        for group in members:
            part = int(np.argmax((target - filled) / target))
            chosen[group] = part
            filled[part] += counts[group].sum()
    return chosen[inverse]


# -- loaders -------------------------------------------------------------------------------


def _require(scans: ScanSet, require_labels: bool) -> ScanSet:
    if require_labels and scans.labels is None:
        raise DataError(f"{scans.source}: holds no labels; labelled data is needed here")
    return scans


def _decode_file(path: Path) -> np.ndarray:
    try:
        # a data set an operator chose: its own sizes, not intake's per-file limits
        decoded = read_scan_file(
            path,
            max_file_bytes=TRAINING_MAX_FILE_BYTES,
            max_scans_per_file=TRAINING_MAX_SCANS,
            max_decoded_bytes=TRAINING_MAX_FILE_BYTES,
        )
    except ScanError as error:
        raise DataError(str(error)) from None
    return np.stack([scan.pixels for scan in decoded])


def _decode_array(images: np.ndarray, source: str) -> np.ndarray:
    try:
        decoded = canonicalize_stack(images, source)
    except ScanError as error:
        raise DataError(str(error)) from None
    return np.stack([scan.pixels for scan in decoded])


def _check_labels(labels: np.ndarray, count: int, source: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:  # MedMNIST stores (N, 1)
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DataError(f"{source}: labels must be 1-D, got shape {labels.shape}")
    if not (np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.floating)):
        raise DataError(f"{source}: labels must be integers 0..2, got dtype {labels.dtype}")
    if len(labels) != count:
        raise DataError(f"{source}: {len(labels)} labels for {count} images")
    if np.issubdtype(labels.dtype, np.floating) and not np.all(np.mod(labels, 1) == 0):
        raise DataError(f"{source}: labels must be whole numbers 0..2")
    bad = np.flatnonzero((labels < 0) | (labels >= NUM_CLASSES))
    if len(bad):
        raise DataError(
            f"{source}: labels must be 0, 1 or 2; image {bad[0]} has {labels[bad[0]]} "
            f"({len(bad)} bad labels in all)"
        )
    return labels.astype(np.uint8)


def _load_npz(path: Path) -> ScanSet:
    try:
        arrays = load_npz(path, str(path))
    except ScanError as error:
        raise DataError(str(error)) from None
    synthetic = bool(arrays["synthetic"]) if "synthetic" in arrays else False
    if "train_images" in arrays:
        return _load_medmnist(path, arrays, synthetic)
    if "images" not in arrays:
        found = ", ".join(arrays) or "nothing"
        raise DataError(
            f"{path}: expected `images` (+ `labels`) or MedMNIST `train_images`... (found: {found})"
        )
    images = _decode_array(arrays["images"], str(path))
    labels = arrays.get("labels")
    if labels is not None:
        labels = _check_labels(labels, len(images), f"{path} `labels`")
    return ScanSet(images, labels, str(path), synthetic)


def _load_medmnist(path: Path, arrays: dict[str, np.ndarray], synthetic: bool) -> ScanSet:
    images, labels, splits, start = [], [], {}, 0
    for split in SPLITS:
        name = f"{split}_images"
        if name not in arrays or f"{split}_labels" not in arrays:
            raise DataError(f"{path}: MedMNIST-style NPZ lacks `{name}` or `{split}_labels`")
        part = _decode_array(arrays[name], f"{path} `{name}`")
        images.append(part)
        labels.append(_check_labels(arrays[f"{split}_labels"], len(part), f"{path} `{split}`"))
        splits[split] = np.arange(start, start + len(part))
        start += len(part)
    return ScanSet(np.concatenate(images), np.concatenate(labels), str(path), synthetic, splits)


def _load_npy_pair(images_path: Path, labels_path: Path) -> ScanSet:
    images = _decode_file(images_path)
    if not labels_path.is_file():
        raise DataError(f"{labels_path}: no such labels file")
    try:
        labels = load_npy(labels_path, str(labels_path))
    except ScanError as error:
        raise DataError(f"{error} (labels)") from None
    labels = _check_labels(labels, len(images), str(labels_path))
    return ScanSet(images, labels, f"{images_path},{labels_path}")


def _load_folder(folder: Path) -> ScanSet:
    subfolders = sorted(path for path in folder.iterdir() if path.is_dir())
    if not subfolders:
        files = _scan_files(folder)
        return ScanSet(np.concatenate([_decode_file(path) for path in files]), None, str(folder))
    unknown = [path.name for path in subfolders if path.name.lower() not in FOLDER_CLASSES]
    if unknown:
        raise DataError(
            f"{folder}: class folders must be named 0/1/2 or healthy/non-urgent/urgent "
            f"(or normal/benign/malignant); unknown: {', '.join(unknown)}"
        )
    images, labels = [], []
    for subfolder in sorted(
        subfolders, key=lambda path: (FOLDER_CLASSES[path.name.lower()], path.name)
    ):
        label = FOLDER_CLASSES[subfolder.name.lower()]
        for path in _scan_files(subfolder):
            decoded = _decode_file(path)
            images.append(decoded)
            labels.extend([label] * len(decoded))
    if not images:
        raise DataError(f"{folder}: the class folders hold no PNG, JPEG or DICOM files")
    return ScanSet(np.concatenate(images), np.asarray(labels, dtype=np.uint8), str(folder))


def _scan_files(folder: Path) -> list[Path]:
    files = sorted(path for path in folder.iterdir() if path.is_file())
    files = [path for path in files if not path.name.startswith(".")]
    others = [path.name for path in files if path.suffix.lower() not in FOLDER_FILE_SUFFIXES]
    if others:
        raise DataError(
            f"{folder}: only PNG, JPEG and DICOM files are accepted here; found {others[0]}"
            + (f" and {len(others) - 1} more" if len(others) > 1 else "")
        )
    if not files:
        raise DataError(f"{folder}: holds no scan files")
    return files
