"""Paths in, decoded scans and rejections out: the first step of `triage enqueue`.

Folders are walked in name order, following symbolic links but never twice into the same
directory (a link loop is reported, not followed forever). Every problem becomes a `ScanError`
naming the input and the reason; everything else in the same call still goes through.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imaging.canonical import ScanError, canonicalize
from imaging.files import read_scan_file
from schemas.settings import Settings

MAX_ACCESSION_CHARS = 128


@dataclass(frozen=True)
class IncomingScan:
    """A canonical scan ready for the ledger."""

    source: str
    pixels: np.ndarray  # (64, 64) uint8
    accession: str | None = None


@dataclass
class Intake:
    """What one call brought in: usable scans and rejected inputs, in input order."""

    scans: list[IncomingScan] = field(default_factory=list)
    rejected: list[ScanError] = field(default_factory=list)


def read_paths(
    paths: Iterable[str | os.PathLike[str]],
    settings: Settings,
    accession_from_filename: bool = False,
) -> Intake:
    """Decode every file under `paths` (files or folders) into canonical scans."""
    intake = Intake()
    files = _expand(paths, intake.rejected)
    for path in files:
        try:
            decoded = read_scan_file(path, settings.max_file_bytes, settings.max_pixels)
            accessions = _accessions(path, len(decoded)) if accession_from_filename else None
        except ScanError as error:
            intake.rejected.append(error)
            continue
        for index, scan in enumerate(decoded):
            accession = accessions[index] if accessions else None
            intake.scans.append(IncomingScan(scan.source, scan.pixels, accession))
    _refuse_repeated_accessions(intake)
    return intake


def read_arrays(
    images: Iterable[np.ndarray],
    settings: Settings,
    accessions: Iterable[str | None] | None = None,
) -> Intake:
    """Canonicalize in-memory images (one 2-D or channel-last image each) for a hospital API."""
    intake = Intake()
    images = list(images)
    accessions = list(accessions) if accessions is not None else [None] * len(images)
    if len(accessions) != len(images):
        raise ValueError(f"got {len(images)} images but {len(accessions)} accessions")
    for index, (image, accession) in enumerate(zip(images, accessions, strict=True)):
        source = f"image[{index}]"
        try:
            if accession is not None and (not isinstance(accession, str) or not accession):
                raise ScanError(source, "accession must be non-empty text (or None)")
            if accession is not None and len(accession) > MAX_ACCESSION_CHARS:
                raise ScanError(source, f"accession is over {MAX_ACCESSION_CHARS} characters")
            pixels = canonicalize(image, source, settings.max_pixels)
        except ScanError as error:
            intake.rejected.append(error)
            continue
        intake.scans.append(IncomingScan(source, pixels, accession))
    _refuse_repeated_accessions(intake)
    return intake


def _refuse_repeated_accessions(intake: Intake) -> None:
    """One scan per accession in a call: the first (in input order) is kept, repeats refused."""
    first: dict[str, str] = {}
    kept: list[IncomingScan] = []
    for scan in intake.scans:
        if scan.accession is not None and scan.accession in first:
            reason = (
                f"same accession as {first[scan.accession]} in this call; only that one is queued"
            )
            intake.rejected.append(ScanError(scan.source, reason))
            continue
        if scan.accession is not None:
            first[scan.accession] = scan.source
        kept.append(scan)
    intake.scans = kept


def _accessions(path: Path, count: int) -> list[str]:
    stem = path.stem
    names = [stem] if count == 1 else [f"{stem}[{index}]" for index in range(count)]
    if any(len(name) > MAX_ACCESSION_CHARS for name in names):
        raise ScanError(str(path), f"file name is over {MAX_ACCESSION_CHARS} characters")
    return names


def _expand(paths: Iterable[str | os.PathLike[str]], rejected: list[ScanError]) -> list[Path]:
    """Files named directly or found in folders, each once, in a stable order."""
    files: list[Path] = []
    seen_files: set[Path] = set()
    seen_dirs: set[tuple[int, int]] = set()

    def add_file(path: Path) -> None:
        key = Path(os.path.realpath(path))
        if key in seen_files:
            rejected.append(ScanError(str(path), "listed more than once; enqueued once"))
            return
        seen_files.add(key)
        files.append(path)

    def walk(directory: Path) -> None:
        try:
            identity = directory.stat()
            entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
        except OSError as error:
            rejected.append(
                ScanError(str(directory), f"cannot read folder ({error.strerror or error})")
            )
            return
        key = (identity.st_dev, identity.st_ino)
        if key in seen_dirs:
            rejected.append(ScanError(str(directory), "folder already visited (symlink loop)"))
            return
        seen_dirs.add(key)
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                walk(path)
            else:
                add_file(path)

    for given in paths:
        path = Path(given)
        try:
            is_dir = path.is_dir()
        except OSError:  # e.g. a symlink loop: read_scan_file reports it
            is_dir = False
        if is_dir:
            found_before = len(files)
            walk(path)
            if len(files) == found_before:
                rejected.append(ScanError(str(path), "folder holds no scan files"))
        else:
            add_file(path)
    return files
