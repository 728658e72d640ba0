"""Paths to scans: folders walked, bad inputs reported by name, good ones kept."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gateway.intake.files import read_arrays, read_paths
from schemas.settings import get_settings
from tests.fixtures_model import brightness_scans
from tests.imaging.hostile import nested_folders, remove_tree

NOBODY = 65534  # the unprivileged user and group every Debian system has


def save_png(path: Path, mean: int = 120) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(brightness_scans([mean])[0]).save(path)
    return path


def test_a_folder_mixing_good_and_bad_files_keeps_the_good_ones(tmp_path: Path) -> None:
    save_png(tmp_path / "in" / "a.png")
    save_png(tmp_path / "in" / "sub" / "b.png")
    np.save(tmp_path / "in" / "stack.npy", brightness_scans([50, 200]))
    (tmp_path / "in" / "broken.png").write_bytes(b"not a png")
    (tmp_path / "in" / ".hidden.png").write_bytes(b"ignored")

    intake = read_paths([tmp_path / "in"], get_settings(), accession_from_filename=True)

    assert [scan.accession for scan in intake.scans] == ["a", "stack[0]", "stack[1]", "b"]
    assert all(scan.pixels.shape == (64, 64) for scan in intake.scans)
    assert [Path(error.source).name for error in intake.rejected] == ["broken.png"]


def test_symlink_loops_missing_and_repeated_paths_are_reported_not_fatal(tmp_path: Path) -> None:
    good = save_png(tmp_path / "in" / "good.png")
    os.symlink(tmp_path / "in", tmp_path / "in" / "loop")
    os.symlink(tmp_path / "self.png", tmp_path / "self.png")

    intake = read_paths(
        [tmp_path / "in", tmp_path / "missing.png", tmp_path / "self.png", good], get_settings()
    )

    assert [scan.source for scan in intake.scans] == [str(good)]
    reasons = {Path(error.source).name: error.reason for error in intake.rejected}
    assert "symlink loop" in reasons["loop"]
    assert "cannot read" in reasons["missing.png"]
    assert "symbolic links" in reasons["self.png"]
    assert "more than once" in reasons["good.png"]


def test_an_unreadable_file_is_reported() -> None:
    """Read as an unprivileged user (root reads every file: the test drops to `nobody`)."""
    folder = Path(tempfile.mkdtemp(prefix="triage-locked-"))
    try:
        folder.chmod(0o755)
        locked = save_png(folder / "locked.png")
        locked.chmod(0)
        scans, reasons = _read_as_nobody(locked) if os.geteuid() == 0 else _read(locked)
        assert scans == 0 and len(reasons) == 1 and "permission" in reasons[0]
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _read(path: Path) -> tuple[int, list[str]]:
    intake = read_paths([path], get_settings())
    return len(intake.scans), [error.reason for error in intake.rejected]


def _read_as_nobody(path: Path) -> tuple[int, list[str]]:
    """`_read` in a forked child that has given up root for good; its answer comes by a pipe."""
    reading, writing = os.pipe()
    child = os.fork()
    if child == 0:  # the child: never returns into pytest
        try:
            os.close(reading)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            os.write(writing, json.dumps(_read(path)).encode())
        finally:
            os._exit(0)
    os.close(writing)
    with os.fdopen(reading) as answer:
        text = answer.read()
    os.waitpid(child, 0)
    scans, reasons = json.loads(text)
    return scans, reasons


def test_arrays_from_a_hospital_system_are_canonicalized_with_their_accessions() -> None:
    images = [np.random.default_rng(0).random((128, 100)), np.zeros((64, 64), np.uint8)]
    intake = read_arrays(images, get_settings(), accessions=["A1", "A2"])
    assert [(scan.accession, scan.pixels.dtype, scan.pixels.shape) for scan in intake.scans] == [
        ("A1", np.uint8, (64, 64))
    ]
    assert intake.rejected[0].source == "image[1]" and "uniform" in intake.rejected[0].reason
    with pytest.raises(ValueError, match="2 images but 1 accessions"):
        read_arrays(images, get_settings(), accessions=["A1"])


def test_1100_nested_folders_are_walked_without_recursion(tmp_path: Path) -> None:
    deep = nested_folders(tmp_path / "in", 1_100)
    try:
        bottom = save_png(deep / "bottom.png")
        (deep.parent / "empty").mkdir()
        intake = read_paths([tmp_path / "in"], get_settings())
        assert [scan.source for scan in intake.scans] == [str(bottom)]
        assert intake.rejected == []
    finally:
        remove_tree(tmp_path / "in")


def test_a_symlink_leaving_the_given_paths_is_reported_not_followed(tmp_path: Path) -> None:
    secret = save_png(tmp_path / "elsewhere" / "secret.png")
    other = save_png(tmp_path / "other" / "o.png")
    inside = save_png(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "file-out.png").symlink_to(secret)
    (tmp_path / "in" / "folder-out").symlink_to(secret.parent)
    (tmp_path / "in" / "to-other.png").symlink_to(other)  # a given path: followed
    (tmp_path / "in" / "etc").symlink_to("/etc")

    intake = read_paths([tmp_path / "in", other], get_settings())

    linked = tmp_path / "in" / "to-other.png"
    assert [scan.source for scan in intake.scans] == [str(inside), str(linked)]
    reasons = {Path(error.source).name: error.reason for error in intake.rejected}
    outside = "symlink points outside the given folders; not followed"
    assert reasons["file-out.png"] == reasons["folder-out"] == reasons["etc"] == outside
    assert "more than once" in reasons["o.png"]
    assert len(intake.rejected) == 4
