"""Header values never reach a log: concurrent reads (the receiver decodes one association
per thread) and pydicom's decoder fallback, each in a fresh process as the CLI runs it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from tests.imaging.test_files import dicom_file

REPO_ROOT = Path(__file__).resolve().parents[2]
SECRET = "987654321.424242"  # in a UI element that pydicom's validation would quote

CONCURRENT_READS = textwrap.dedent(
    f"""
    import logging, sys, threading
    from pathlib import Path
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    from imaging.canonical import ScanError
    from imaging.files import read_scan_file

    good, bad = Path(sys.argv[1]), Path(sys.argv[2])

    def read(path):
        for _ in range(40):
            try:
                read_scan_file(path)
            except ScanError as error:
                print("refused:", error.reason, file=sys.stderr)

    threads = [threading.Thread(target=read, args=(p,)) for p in [good, bad] * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    logging.getLogger("pydicom.valuerep").warning("probe %s", "{SECRET}")
    print("done", file=sys.stderr)
    """
)


def run_python(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")},
        "PYTHONPATH": str(REPO_ROOT),
        **env,
    }
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=environment, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


def test_concurrent_reads_log_no_header_value(tmp_path: Path) -> None:
    with warnings.catch_warnings():  # writing the bad value warns here, in the test
        warnings.simplefilter("ignore")
        good = dicom_file(tmp_path / "good.dcm")
        bad = dicom_file(tmp_path / "bad.dcm", sop=f"1.2.3.PAT{SECRET}X")
    done = run_python(["-c", CONCURRENT_READS, str(good), str(bad)], REPO_ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "done" in done.stderr and "malformed SOPInstanceUID" in done.stderr
    assert SECRET not in done.stderr + done.stdout
    assert "pydicom warning withheld" in done.stderr  # pydicom's logger still reports, redacted


def test_enqueue_prints_no_decoder_fallback_traceback(tmp_path: Path) -> None:
    from pydicom.data import get_testdata_file

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("JPEG-lossy.dcm", "JPGExtended.dcm"):  # a first plugin fails, a second decodes
        source = get_testdata_file(name)
        if source is None:
            pytest.fail(f"pydicom's test file {name} is missing")
        shutil.copy(source, folder / name)
    env = {"TRIAGE_DATA_DIR": str(tmp_path / "data"), "TRIAGE_REDIS_URL": "redis://127.0.0.1:9/0"}
    upgraded = run_python(["-m", "triage", "db", "upgrade"], tmp_path, **env)
    assert upgraded.returncode == 0, upgraded.stderr[-2000:]
    enqueued = run_python(["-m", "triage", "enqueue", str(folder)], tmp_path, **env)
    output = enqueued.stdout + enqueued.stderr
    assert "recorded as queued" in output  # decoded and recorded (the broker is absent)
    assert "Traceback" not in output and "ERROR" not in output
