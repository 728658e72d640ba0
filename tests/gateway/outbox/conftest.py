"""A study report to deliver, the free loopback ports the real receivers listen on, and the
webhook endpoints (tests/gateway/outbox/webhook_peers.py) as fixtures."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import numpy as np
import pytest

from gateway.outbox.report import StudyReport
from tests.gateway.outbox.webhook_peers import (
    bad_status_endpoint,
    blackhole_endpoint,
    http_endpoint,
)
from trainer.synth import make_phantoms

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def toy_saliency() -> np.ndarray:
    """A blob of saliency in the upper left quadrant."""
    rows, cols = np.mgrid[0:64, 0:64]
    return np.exp(-((rows - 22) ** 2 + (cols - 20) ** 2) / (2 * 6.0**2))


def make_report(**changes: object) -> StudyReport:
    images, labels = make_phantoms(40, seed=3)
    fields: dict[str, object] = dict(
        study_id="5b2f0d5e-0000-4000-8000-000000000001",
        decision=1,
        study_uid="1.2.826.0.1.3680043.8.498.1001",
        accession="ACC-77",
        patient_id="PAT-0042",
        p2=0.873,
        urgent=True,
        predicted=2,
        model_version="20261201-120000-ab12cd",
        decided_at=datetime(2026, 12, 1, 12, 30, 5, tzinfo=UTC),
        slices=4,
        top_series_uid="1.2.826.0.1.3680043.8.498.1001.1",
        top_sop_uid="1.2.826.0.1.3680043.8.498.1001.1.3",
        top_sop_class_uid=CT_IMAGE_STORAGE,
        key_image=images[int(np.argmax(labels == 2))],
        saliency=toy_saliency(),
    )
    fields.update(changes)
    return StudyReport(**fields)  # type: ignore[arg-type]


@pytest.fixture
def report() -> StudyReport:
    return make_report()


def wait_until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.05)


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def http_url() -> Iterator[str]:
    """A recording webhook endpoint (tests.gateway.outbox.webhook_peers.Handler)."""
    with http_endpoint() as url:
        yield url


@pytest.fixture
def bad_status_url() -> Iterator[str]:
    with bad_status_endpoint() as url:
        yield url


@pytest.fixture
def blackhole_url() -> Iterator[str]:
    with blackhole_endpoint() as url:
        yield url
