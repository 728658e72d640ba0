"""A study over STOW-RS is triaged like one over C-STORE: a real `triage web` (STOW-RS in,
with an operator's API token from `triage tokens create`), then a real `triage receive`, on one
SQLite ledger, real Redis and worker processes with the brightness model. The same slices
sent as two studies, one each way, are held, closed when idle (the STOW-RS one by `triage
web`'s own closer, no receiver running yet) and decided alike; a repeat
over STOW-RS adds nothing and decides nothing again."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.outbox.dicomweb import multipart_related
from testkit.dcmtk import storescu
from testkit.services import free_port
from tests.gateway.intake.test_receiver import ct_instance
from tests.integration.conftest import Pipeline, web_process
from tests.integration.test_dicom_receiver import (
    URGENT,
    ReceiverProcess,
    decision_count,
    wait_decided,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

BY_STOW, BY_CSTORE = "1.2.826.0.1.3680043.10.91", "1.2.826.0.1.3680043.10.92"
SLICES = 4


@pytest.fixture
def web(pipeline_factory, tmp_path: Path) -> Iterator[tuple[Pipeline, str]]:  # noqa: ANN001
    """Workers and `triage web` on one ledger; the web app's URL."""
    env = {"TRIAGE_STUDY_IDLE_SECONDS": "1", "TRIAGE_WEB_SECRET_KEY": "stow-test-" + "s" * 32}
    pipeline = pipeline_factory(f"sqlite:///{tmp_path / 'ledger.db'}", batch_size=8, env=env)
    pipeline.start_worker("urgent", "urgent")
    pipeline.start_worker("stat,scans", "routine")
    with web_process(pipeline, tmp_path / "web.log") as url:
        yield pipeline, url


def part10(dataset) -> bytes:  # noqa: ANN001
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_a_study_over_stow_rs_is_decided_like_one_over_c_store(web, tmp_path: Path) -> None:  # noqa: ANN001
    pipeline, url = web
    created = pipeline.triage("tokens", "create", "pacs", "--role", "operator")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    slices = [ct_instance(BY_STOW, number, URGENT, size=128) for number in range(SLICES)]
    content_type, body = multipart_related(part10(item) for item in slices)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type}
    stowed = httpx.post(f"{url}/dicom-web/studies", content=body, headers=headers, timeout=60)
    assert stowed.status_code == 200, stowed.text
    assert len(stowed.json()["00081199"]["Value"]) == SLICES
    by_stow = wait_decided(BY_STOW, SLICES)  # closed when idle by `triage web` itself

    receiver = ReceiverProcess(pipeline, free_port())
    folder = tmp_path / "cstore"
    folder.mkdir()
    paths = []
    for number in range(SLICES):  # the same slices, as another study
        path = folder / f"slice-{number}.dcm"
        ct_instance(BY_CSTORE, number, URGENT, size=128).save_as(path, enforce_file_format=True)
        paths.append(path)
    try:
        assert storescu(receiver.port, paths) == 0
        by_cstore = wait_decided(BY_CSTORE, SLICES)
    finally:
        receiver.kill()
    for key in ("status", "slices", "urgent", "predicted", "p2", "priority"):
        assert by_stow[key] == by_cstore[key], key
    assert by_stow["urgent"] is True

    again = httpx.post(f"{url}/dicom-web/studies", content=body, headers=headers, timeout=60)
    assert again.status_code == 200, again.text  # repeats: success, nothing added
    assert wait_decided(BY_STOW, SLICES)["status"] == "classified"
    assert decision_count(BY_STOW) == 1
