"""The bad-input catalogue at the batch level: what goes wrong with a *call*, not a single file.

Each kind is submitted together with a good scan through `submit_scans` (or `submit_images`),
against a real Redis and a real SQLite ledger: the bad input is named with its reason, and the
good scan in the same call is still queued. File-level kinds live in
tests/imaging/test_files.py; the last test here sends that whole catalogue as one folder.

Rules stated here:
- a folder named in the call that yields no scan file is reported ("holds no scan files");
- a file reached twice (listed twice, or through a link) is enqueued once, the repeat reported;
- one scan per accession per call: the first in input order is queued, repeats are refused;
- a stack (NPY/NPZ) is accepted or refused as a whole; the message names the first bad slice;
- an unknown priority refuses the whole call before anything is recorded (it applies to all).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gateway.intake.client import submit_images, submit_scans
from ledger.database import engine_for, upgrade_schema
from ledger.reads import status_counts
from schemas.settings import get_settings
from testkit.services import redis_url_with_database
from tests.fixtures_model import brightness_scans
from tests.imaging.test_files import REFUSED

BATCH_GROUP = "batch level (tests/gateway/intake/test_client.py)"


@pytest.fixture(autouse=True)
def broker(redis_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIAGE_REDIS_URL", redis_url_with_database(redis_server, 15))
    get_settings.cache_clear()
    upgrade_schema(engine_for(get_settings().resolved_database_url))


def png(path: Path, mean: int = 120, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(brightness_scans([mean], seed=seed)[0]).save(path)
    return path


def _fifo(d: Path) -> list[Path]:
    os.mkfifo(d / "in" / "pipe.png")
    return [d / "in"]


def _loop(d: Path) -> list[Path]:
    (d / "in" / "loop").symlink_to(d / "in")
    return [d / "in"]


def _dangling(d: Path) -> list[Path]:
    (d / "in" / "gone.png").symlink_to(d / "nowhere.png")
    return [d / "in"]


def _linked_twice(d: Path) -> list[Path]:
    (d / "in" / "zlink.png").symlink_to(d / "in" / "good.png")  # walked after good.png
    return [d / "in"]


def _same_accession(d: Path) -> list[Path]:
    png(d / "other" / "good.png", mean=60, seed=1)  # same stem, another folder
    return [d / "in", d / "other"]


def _hidden_only(d: Path) -> list[Path]:
    (d / "hidden").mkdir()
    (d / "hidden" / ".DS_Store").write_bytes(b"junk")
    return [d / "in", d / "hidden"]


def _mixed(d: Path) -> list[Path]:
    (d / "in" / "sub").mkdir()
    (d / "in" / "sub" / "report.png").write_text("radiology report, not an image")
    png(d / "in" / "sub" / "good2.png", seed=2)
    return [d / "in"]


def _stack_with_bad_slice(d: Path) -> list[Path]:
    stack = brightness_scans([50, 80, 90], seed=3)
    stack[1] = 7
    np.save(d / "stack.npy", stack)
    return [d / "in", d / "stack.npy"]


def _long_name(d: Path) -> list[Path]:
    return [d / "in", png(d / ("x" * 140 + ".png"))]


# (kind, builder(tmp) -> paths for one call that includes in/good.png, name of the refused
#  input, words of the reason, accession_from_filename)
CASES: list[tuple[str, Callable[[Path], list[Path]], str, str, bool]] = [
    ("nonexistent path", lambda d: [d / "in", d / "missing.png"], "missing.png", "cannot read", 0),
    ("nonexistent folder", lambda d: [d / "in", d / "nodir"], "nodir", "cannot read", 0),
    ("empty folder", lambda d: (d / "empty").mkdir() or [d / "in", d / "empty"], "empty", "no scan", 0),
    ("folder of hidden files only", _hidden_only, "hidden", "no scan files", 0),
    ("folder mixing good and bad files", _mixed, "report.png", "not a readable", 0),
    ("symlink loop inside a folder", _loop, "loop", "symlink loop", 0),
    ("dangling symlink inside a folder", _dangling, "gone.png", "cannot read", 0),
    ("named pipe inside a folder (would block a read)", _fifo, "pipe.png", "not a regular file", 0),
    ("device file", lambda d: [d / "in", Path("/dev/zero")], "zero", "not a regular file", 0),
    ("path through a file", lambda d: [d / "in", d / "in/good.png/x.png"], "x.png", "cannot read", 0),
    ("same file listed twice", lambda d: [d / "in", d / "in/good.png"], "good.png", "more than once", 0),
    ("same file through a symlink", _linked_twice, "zlink.png", "more than once", 0),
    ("duplicate accession in one call", _same_accession, "good.png", "same accession", 1),
    ("file name too long for an accession", _long_name, "x" * 140 + ".png", "over 128", 1),
    ("stack with one bad slice", _stack_with_bad_slice, "stack.npy[1]", "uniform", 0),
]  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "build", "refused", "reason", "by_name"), CASES, ids=[c[0] for c in CASES]
)
def test_a_bad_input_is_named_and_the_good_scan_in_the_same_call_still_goes_through(
    tmp_path: Path,
    kind: str,
    build: Callable[[Path], list[Path]],
    refused: str,
    reason: str,
    by_name: bool,
) -> None:
    good = png(tmp_path / "in" / "good.png")
    submission = submit_scans(build(tmp_path), accession_from_filename=bool(by_name))

    named = [e for e in submission.rejected if Path(e.source).name == refused]
    assert named, f"{kind}: {refused} not reported in {submission.rejected}"
    assert reason in named[0].reason and refused in str(named[0])
    assert str(good) in {source for _, source in submission.queued}
    assert submission.jobs >= 1


def test_unknown_priority_refuses_the_whole_call_before_recording_anything(tmp_path: Path) -> None:
    good = png(tmp_path / "in" / "good.png")
    with pytest.raises(ValueError, match="unknown priority 'urgent!'") as refused:
        submit_scans([good], priority="urgent!")
    assert "routine or stat" in str(refused.value)
    engine = engine_for(get_settings().resolved_database_url)
    upgrade_schema(engine)
    assert status_counts(engine) == {}  # nothing recorded, nothing published


def test_in_memory_images_with_bad_accessions_or_no_pixels_are_refused_one_by_one() -> None:
    images = list(brightness_scans([60, 70, 80, 90], seed=5)) + [None, "not pixels"]
    accessions = ["A1", 42, "A1", "", "A5", "A6"]
    submission = submit_images(images, accessions=accessions)

    reasons = {error.source: error.reason for error in submission.rejected}
    expected = {
        "image[1]": "non-empty text",  # a number, not text
        "image[2]": "same accession as image[0]",
        "image[3]": "non-empty text",  # empty
        "image[4]": "not numeric",
        "image[5]": "not numeric",
    }
    correct = sum(word in reasons.get(source, "") for source, word in expected.items())
    assert correct == len(expected), reasons
    assert [source for _, source in submission.queued] == ["image[0]"]


# in a call, a folder is walked even when its name looks like a file's: an empty one is reported
BATCH_REASONS = {"directory as file": "folder holds no scan files"}


def test_the_whole_file_level_catalogue_in_one_call_with_good_files(tmp_path: Path) -> None:
    good = [png(tmp_path / f"good{i}.png", mean=40 + 30 * i, seed=i) for i in range(3)]
    expected: dict[str, str] = {}
    for index, (kind, build, reason) in enumerate(REFUSED):
        case_dir = tmp_path / f"case{index:02d}"
        case_dir.mkdir()
        expected[str(build(case_dir))] = BATCH_REASONS.get(kind, reason)

    submission = submit_scans([good[0], *expected, good[1], good[2]])

    reasons = {error.source: error.reason for error in submission.rejected}
    correct = sum(reason in reasons.get(source, "") for source, reason in expected.items())
    assert correct == len(expected), {s: reasons.get(s) for s in expected}
    assert sorted(source for _, source in submission.queued) == sorted(map(str, good))
