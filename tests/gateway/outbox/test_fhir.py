"""The FHIR transaction bundle, validated with fhir.resources, POSTed to a real local HTTP
server that answers as told."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fhir.resources.bundle import Bundle

from gateway.outbox.fhir import IDENTIFIER_SYSTEM, build_fhir, post_fhir
from gateway.outbox.report import DeliveryError, StudyReport
from testkit.peers import serving
from testkit.services import free_port
from tests.gateway.outbox.conftest import make_report

pytestmark = pytest.mark.timeout(60)


class FhirServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, status: int, delay: float = 0.0, location: str = "") -> None:
        self.status, self.delay, self.location = status, delay, location
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        super().__init__(("127.0.0.1", free_port()), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/fhir"


class Handler(BaseHTTPRequestHandler):
    server: FhirServer

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        self.server.requests.append((self.command, self.path, dict(self.headers), body))
        time.sleep(self.server.delay)
        self.send_response(self.server.status)
        if self.server.location:
            self.send_header("Location", self.server.location)
        answer = b'{"resourceType": "Bundle", "type": "transaction-response"}'
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_POST = do_GET = _answer  # noqa: N815 - http.server's names

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fhir_factory() -> Iterator:
    with ExitStack() as stack:

        def start(status: int, **options: object) -> FhirServer:
            return stack.enter_context(serving(FhirServer(status, **options)))  # type: ignore[arg-type]

        yield start


def test_the_bundle(report: StudyReport) -> None:
    payload = build_fhir(report)
    bundle = Bundle.model_validate(payload)
    assert bundle.type == "transaction" and len(bundle.entry) == 2
    observation, diagnostic = (entry.resource for entry in bundle.entry)
    assert diagnostic.status == "final" and observation.status == "final"
    assert "not a diagnosis" in diagnostic.conclusion and "urgent" in diagnostic.conclusion
    assert diagnostic.conclusionCode[0].coding[0].code == "2"
    assert observation.valueCodeableConcept.coding[0].display == "urgent"
    assert float(observation.component[0].valueQuantity.value) == pytest.approx(0.873)
    assert observation.component[1].valueBoolean is True
    assert diagnostic.result[0].reference == bundle.entry[0].fullUrl
    assert diagnostic.identifier[0].system == IDENTIFIER_SYSTEM
    assert diagnostic.identifier[0].value == f"{report.study_id}/1"
    assert diagnostic.identifier[1].value == report.accession
    assert diagnostic.subject.identifier.value == report.patient_id
    for entry in bundle.entry:
        assert entry.request.method == "POST"
        assert entry.request.ifNoneExist == (
            f"identifier={IDENTIFIER_SYSTEM}|{entry.resource.identifier[0].value}"
        )
    assert build_fhir(report) == payload  # a resend is the same bundle
    assert build_fhir(make_report(decision=2)) != payload  # a new decision is a new report


def test_delivered(fhir_factory, report: StudyReport) -> None:  # noqa: ANN001
    server = fhir_factory(200)
    post_fhir(server.url, build_fhir(report), timeout=5)
    ((method, path, headers, body),) = server.requests
    assert method == "POST" and path == "/fhir"
    assert headers["Content-Type"] == "application/fhir+json"
    received = Bundle.model_validate_json(body)
    assert "not a diagnosis" in received.entry[1].resource.conclusion


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(500, True), (503, True), (429, True), (408, True), (400, False), (404, False), (422, False)],
)
def test_failure_statuses(fhir_factory, report: StudyReport, status: int, retryable: bool) -> None:  # noqa: ANN001
    server = fhir_factory(status)
    with pytest.raises(DeliveryError) as caught:
        post_fhir(server.url, build_fhir(report), timeout=5)
    assert caught.value.retryable is retryable and str(status) in caught.value.reason


def test_redirects_are_not_followed(fhir_factory, report: StudyReport) -> None:  # noqa: ANN001
    elsewhere = fhir_factory(201)
    moved = fhir_factory(307, location=elsewhere.url)
    with pytest.raises(DeliveryError) as caught:
        post_fhir(moved.url, build_fhir(report), timeout=5)
    assert not caught.value.retryable
    assert len(moved.requests) == 1 and elsewhere.requests == []


def test_timeout_and_refused_are_retryable(fhir_factory, report: StudyReport) -> None:  # noqa: ANN001
    slow = fhir_factory(201, delay=3)
    with pytest.raises(DeliveryError) as caught:
        post_fhir(slow.url, build_fhir(report), timeout=1)
    assert caught.value.retryable
    with pytest.raises(DeliveryError) as caught:
        post_fhir(f"http://127.0.0.1:{free_port()}/fhir", build_fhir(report), timeout=2)
    assert caught.value.retryable


def test_only_http_urls(report: StudyReport) -> None:
    with pytest.raises(DeliveryError) as caught:
        post_fhir("file:///etc/passwd", build_fhir(report), timeout=2)
    assert not caught.value.retryable


def test_a_calm_study_without_ids() -> None:
    calm = make_report(p2=0.1, urgent=False, predicted=1, patient_id=None, accession=None)
    payload = build_fhir(calm)
    observation, diagnostic = (entry["resource"] for entry in payload["entry"])
    assert "subject" not in diagnostic and len(diagnostic["identifier"]) == 1
    assert observation["interpretation"][0]["coding"][0]["code"] == "A"
