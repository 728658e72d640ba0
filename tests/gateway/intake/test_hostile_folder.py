"""One folder holding every hostile input beside two good scans: each bad file is named with its
reason, both good scans are queued, and nothing escapes as a traceback or exhausts memory.

The same folder goes through `gateway.intake.files.read_paths` in this process and through
`python -m triage enqueue FOLDER` in a child process (real Redis, SQLite ledger), whose peak
resident memory is measured and must stay under 1.5 GiB.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from gateway.intake.files import OUTSIDE, read_paths
from schemas.settings import get_settings
from testkit.services import redis_url_with_database
from tests.fixtures_model import brightness_scans
from tests.imaging.hostile import HOSTILE, nested_folders, remove_tree

REPO_ROOT = Path(__file__).resolve().parents[3]
NESTING = 1_100
PEAK_LIMIT_KB = int(1.5 * 1024 * 1024)
# runs `python -m triage ...` and reports its own peak RSS on stderr as it exits: VmHWM, which
# exec resets (ru_maxrss would carry the parent's peak across fork and exec)
MEASURED = (
    "import atexit, re, runpy, sys\n"
    "def peak():\n"
    "    status = open('/proc/self/status').read()\n"
    "    print('PEAK_RSS_KB', re.search(r'VmHWM:\\s*(\\d+)', status).group(1), file=sys.stderr)\n"
    "atexit.register(peak)\n"
    "sys.argv = ['triage', *sys.argv[1:]]\n"
    "runpy.run_module('triage', run_name='__main__', alter_sys=True)\n"
)


def _png(path: Path, mean: int, seed: int) -> Path:
    Image.fromarray(brightness_scans([mean], seed=seed)[0]).save(path)
    return path


def hostile_folder(root: Path) -> tuple[Path, list[Path], dict[str, str]]:
    """(folder, good scans, {bad input: words expected in its reason})."""
    folder = root / "incoming"
    folder.mkdir()
    expected = {str(build(folder)): reason for _, build, reason in HOSTILE}
    deep = nested_folders(folder / "nested", NESTING)
    good = [_png(folder / "good1.png", 60, 1), _png(deep / "good2.png", 160, 2)]
    (deep / "note.txt").write_text("not a scan")
    expected[str(deep / "note.txt")] = "unsupported file type"
    outside = root / "elsewhere"
    outside.mkdir()
    (folder / "secret.png").symlink_to(_png(outside / "secret.png", 90, 3))
    expected[str(folder / "secret.png")] = OUTSIDE
    return folder, good, expected


@pytest.fixture
def hostile(tmp_path: Path) -> Iterator[tuple[Path, list[Path], dict[str, str]]]:
    made = hostile_folder(tmp_path)
    yield made
    remove_tree(made[0] / "nested")  # pytest's own cleanup would overflow the stack


def test_read_paths_names_every_hostile_input_and_keeps_the_good_scans(
    hostile: tuple[Path, list[Path], dict[str, str]],
) -> None:
    folder, good, expected = hostile
    intake = read_paths([folder], get_settings())
    reasons = {error.source: error.reason for error in intake.rejected}
    missing = {
        source: reasons.get(source)
        for source, word in expected.items()
        if word.lower() not in reasons.get(source, "").lower()
    }
    assert not missing
    assert sorted(scan.source for scan in intake.scans) == sorted(map(str, good))
    assert len(intake.rejected) == len(expected)


@pytest.mark.timeout(300)
def test_triage_enqueue_of_the_hostile_folder(
    tmp_path: Path, redis_server: str, hostile: tuple[Path, list[Path], dict[str, str]]
) -> None:
    import subprocess

    folder, good, expected = hostile
    env = {
        **os.environ,
        "TRIAGE_DATA_DIR": str(tmp_path / "data"),
        "TRIAGE_REDIS_URL": redis_url_with_database(redis_server, 14),
    }
    run = [sys.executable, "-c", MEASURED]
    upgrade = subprocess.run(
        [*run, "db", "upgrade"], env=env, cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert upgrade.returncode == 0, upgrade.stderr
    done = subprocess.run(
        [*run, "enqueue", str(folder)],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output
    queued = re.findall(r"^queued\s+\S+\s+(.+)$", done.stdout, re.MULTILINE)
    assert sorted(queued) == sorted(map(str, good))
    for source, word in expected.items():
        assert f"rejected  {source}: " in done.stdout, source
        line = done.stdout.split(f"rejected  {source}: ", 1)[1].splitlines()[0]
        assert word.lower() in line.lower(), (source, line)
    peak_kb = int(re.search(r"PEAK_RSS_KB (\d+)", done.stderr).group(1))
    assert peak_kb < PEAK_LIMIT_KB, f"peak RSS {peak_kb / 1024:.0f} MiB"
