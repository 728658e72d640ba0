"""Paths in, decoded scans and rejections out: the first step of `triage enqueue`.

Folders are walked in name order, without recursion (any depth), never twice into the same
directory (a link loop is reported, not followed forever). A symbolic link met inside a folder
is followed only while its target stays inside the paths given to the call; one leaving them is
reported, not read. Every problem becomes a `ScanError` naming the input and the reason;
everything else in the same call still goes through.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imaging.canonical import ScanError, canonicalize
from imaging.files import read_scan_file
from imaging.identity import DicomIdentity
from schemas.settings import Settings

MAX_ACCESSION_CHARS = 128


@dataclass(frozen=True)
class IncomingScan:
    """A canonical scan ready for the ledger, with its DICOM identity if it came as DICOM."""

    source: str
    pixels: np.ndarray  # (64, 64) uint8
    accession: str | None = None
    identity: DicomIdentity | None = None


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
    """Decode every file under `paths` (files or folders) into canonical scans, all at once
    (`chunks_of_paths` gives the same in chunks of bounded size)."""
    intake = Intake()
    for chunk in chunks_of_paths(paths, settings, accession_from_filename, chunk_scans=None):
        intake.scans += chunk.scans
        intake.rejected += chunk.rejected
    return intake


def chunks_of_paths(
    paths: Iterable[str | os.PathLike[str]],
    settings: Settings,
    accession_from_filename: bool = False,
    chunk_scans: int | None = 2_048,
) -> Iterator[Intake]:
    """The scans and rejections of `paths` in input order, an Intake of at least
    `chunk_scans` scans at a time (a file's scans stay together; None: one Intake), so a call
    of any size is decoded, recorded and published in bounded memory."""
    chunk = Intake()
    chunk.rejected = []
    files = _expand(paths, chunk.rejected)
    first: dict[str, str] = {}  # accession -> the source that has it, across the call
    for path in files:
        try:
            decoded = read_scan_file(
                path,
                settings.max_file_bytes,
                settings.max_pixels,
                settings.max_scans_per_file,
            )
            accessions = _accessions(path, len(decoded)) if accession_from_filename else None
        except ScanError as error:
            chunk.rejected.append(error)
            continue
        for index, scan in enumerate(decoded):
            accession = accessions[index] if accessions else None
            incoming = IncomingScan(scan.source, scan.pixels, accession, scan.identity)
            _keep_first_accession(incoming, first, chunk)
        if chunk_scans is not None and len(chunk.scans) >= chunk_scans:
            yield chunk
            chunk = Intake()
    yield chunk


def _keep_first_accession(scan: IncomingScan, first: dict[str, str], chunk: Intake) -> None:
    """One scan per accession given by the caller (file names): the first in input order is
    kept, repeats refused. DICOM slices share their exam's accession: not checked."""
    if scan.identity is None and scan.accession is not None:
        if scan.accession in first:
            reason = (
                f"same accession as {first[scan.accession]} in this call; only that one is queued"
            )
            chunk.rejected.append(ScanError(scan.source, reason))
            return
        first[scan.accession] = scan.source
    chunk.scans.append(scan)


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
    """One scan per accession given by the caller (file names, API): the first (in input
    order) is kept, repeats refused. DICOM slices share their exam's accession: not checked."""
    first: dict[str, str] = {}
    kept: list[IncomingScan] = []
    for scan in intake.scans:
        if scan.identity is not None:
            kept.append(scan)
            continue
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


OUTSIDE = "symlink points outside the given folders; not followed"


def _expand(paths: Iterable[str | os.PathLike[str]], rejected: list[ScanError]) -> list[Path]:
    """Files named directly or found in folders, each once, in a stable order."""
    given = [Path(path) for path in paths]
    walker = _Walker([Path(os.path.realpath(path)) for path in given], rejected)
    for path in given:
        try:
            is_dir = path.is_dir()
        except OSError:  # e.g. a symlink loop: read_scan_file reports it
            is_dir = False
        if is_dir:
            found_before = len(walker.files)
            walker.walk(path)
            if len(walker.files) == found_before:
                rejected.append(ScanError(str(path), "folder holds no scan files"))
        else:
            walker.add_file(path)
    return walker.files


class _Walker:
    """Depth-first, name-ordered folder walk with an explicit stack (no recursion limit)."""

    def __init__(self, roots: list[Path], rejected: list[ScanError]) -> None:
        self.roots = roots
        self.rejected = rejected
        self.files: list[Path] = []
        self.seen_files: set[Path] = set()
        self.seen_dirs: set[tuple[int, int]] = set()

    def add_file(self, path: Path) -> None:
        key = Path(os.path.realpath(path))
        if key in self.seen_files:
            self.rejected.append(ScanError(str(path), "listed more than once; enqueued once"))
            return
        self.seen_files.add(key)
        self.files.append(path)

    def walk(self, top: Path) -> None:
        pending: list[tuple[Path, bool]] = [(top, True)]  # (path, is a folder), next on top
        while pending:
            path, is_dir = pending.pop()
            if not is_dir:
                self.add_file(path)
                continue
            entries = self._entries(path)
            pending.extend(reversed(entries))

    def _entries(self, directory: Path) -> list[tuple[Path, bool]]:
        """A folder's visible entries in name order, each marked folder or not; [] if refused."""
        try:
            identity = directory.stat()
            entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
        except OSError as error:
            self.rejected.append(
                ScanError(str(directory), f"cannot read folder ({error.strerror or error})")
            )
            return []
        key = (identity.st_dev, identity.st_ino)
        if key in self.seen_dirs:
            self.rejected.append(ScanError(str(directory), "folder already visited (symlink loop)"))
            return []
        self.seen_dirs.add(key)
        found = []
        for entry in entries:
            if entry.name.startswith(".") or not self._inside(entry):
                continue
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            found.append((Path(entry.path), is_dir))
        return found

    def _inside(self, entry: os.DirEntry[str]) -> bool:
        """False (and reported) for a symlink whose target leaves the given paths."""
        try:
            if not entry.is_symlink():
                return True
            target = Path(os.path.realpath(entry.path, strict=True))
        except (OSError, RuntimeError):  # dangling or looping: read_scan_file reports it
            return True
        if any(target == root or target.is_relative_to(root) for root in self.roots):
            return True
        self.rejected.append(ScanError(entry.path, OUTSIDE))
        return False
