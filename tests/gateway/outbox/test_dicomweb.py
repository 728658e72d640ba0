"""STOW-RS out: the SR POSTed as multipart/related to a real local HTTP server that answers
as told (status, PS3.18 body), parsed back with python-multipart; what is retried and what is
not."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pydicom
import pytest
from python_multipart.multipart import MultipartParser, parse_options_header

from gateway.outbox.dicom_sr import build_sr
from gateway.outbox.dicomweb import StowAuth, post_stow
from gateway.outbox.report import DeliveryError, StudyReport
from testkit.peers import serving
from testkit.services import free_port

pytestmark = pytest.mark.timeout(60)


def failed_answer(*reasons: int) -> bytes:
    """A PS3.18 response whose FailedSOPSequence has one item per reason."""
    items = [
        {"00081155": {"vr": "UI", "Value": ["1.2.3"]}, "00081197": {"vr": "US", "Value": [r]}}
        for r in reasons
    ]
    return json.dumps({"00081198": {"vr": "SQ", "Value": items}}).encode()


class StowServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, status: int, answer: bytes = b"{}", delay: float = 0.0) -> None:
        self.status, self.answer, self.delay = status, answer, delay
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        super().__init__(("127.0.0.1", free_port()), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/dicom-web"


class Handler(BaseHTTPRequestHandler):
    server: StowServer

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests.append((self.path, dict(self.headers), body))
        time.sleep(self.server.delay)
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", str(len(self.server.answer)))
        self.end_headers()
        self.wfile.write(self.server.answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stow_factory() -> Iterator:
    with ExitStack() as stack:

        def start(status: int, **options: object) -> StowServer:
            return stack.enter_context(serving(StowServer(status, **options)))  # type: ignore[arg-type]

        yield start


def parts_of(content_type: str, body: bytes) -> list[tuple[dict[str, str], bytes]]:
    """The parts of a multipart body (headers, data), read with python-multipart."""
    _, options = parse_options_header(content_type)
    parts: list[tuple[dict[str, str], bytearray]] = []
    header: list[bytes] = [b"", b""]

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header[0] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header[1] += data[start:end]

    def on_header_end() -> None:
        parts[-1][0][header[0].decode().lower()] = header[1].decode()
        header[:] = [b"", b""]

    callbacks = {
        "on_part_begin": lambda: parts.append(({}, bytearray())),
        "on_part_data": lambda data, start, end: parts[-1][1].extend(data[start:end]),
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
    }
    parser = MultipartParser(options[b"boundary"], callbacks)
    parser.write(body)
    parser.finalize()
    return [(headers, bytes(data)) for headers, data in parts]


def test_the_sr_is_posted_as_multipart_related_with_a_bearer_token(
    stow_factory, report: StudyReport
) -> None:  # noqa: ANN001
    server = stow_factory(200)
    sr = build_sr(report, "TRIAGE")
    post_stow(server.url + "/", [sr], StowAuth(token="s3cret"), timeout=10)
    ((path, headers, body),) = server.requests
    assert path == "/dicom-web/studies"
    assert headers["Authorization"] == "Bearer s3cret"
    assert headers["Accept"] == "application/dicom+json"
    assert headers["Content-Type"].startswith('multipart/related; type="application/dicom"')
    ((part_headers, data),) = parts_of(headers["Content-Type"], body)
    assert part_headers["content-type"] == "application/dicom"
    stored = pydicom.dcmread(io.BytesIO(data))
    assert stored.SOPInstanceUID == sr.SOPInstanceUID
    assert stored.StudyInstanceUID == report.study_uid


def test_basic_auth(stow_factory, report: StudyReport) -> None:  # noqa: ANN001
    server = stow_factory(200)
    post_stow(server.url, [build_sr(report, "TRIAGE")], StowAuth(None, "triage", "pw"), 10)
    assert server.requests[0][1]["Authorization"] == "Basic dHJpYWdlOnB3"  # triage:pw


@pytest.mark.parametrize(
    ("status", "answer", "retryable"),
    [
        (409, failed_answer(0xA900), False),  # the content refused
        (409, failed_answer(0xA700), True),  # out of resources: may pass later
        (202, failed_answer(0xC000), False),
        (202, failed_answer(0x0110, 0xC000), True),  # one of them may pass later
        (409, b"not json", False),
        (400, b"{}", False),
        (401, b"{}", False),
        (429, b"{}", True),
        (503, b"{}", True),
        (302, b"{}", False),
    ],
)
def test_refusals_are_judged(stow_factory, report: StudyReport, status, answer, retryable) -> None:  # noqa: ANN001
    server = stow_factory(status, answer=answer)
    with pytest.raises(DeliveryError) as caught:
        post_stow(server.url, [build_sr(report, "TRIAGE")], StowAuth(), timeout=10)
    assert caught.value.retryable is retryable, str(caught.value)
    assert str(status) in str(caught.value)


def test_accepted_with_warnings_only_counts_as_stored(stow_factory, report: StudyReport) -> None:  # noqa: ANN001
    warning = {"00081199": {"vr": "SQ", "Value": [{"00081196": {"vr": "US", "Value": [0xB000]}}]}}
    server = stow_factory(202, answer=json.dumps(warning).encode())
    post_stow(server.url, [build_sr(report, "TRIAGE")], StowAuth(), timeout=10)
    assert len(server.requests) == 1


def test_a_slow_pacs_is_cut_at_the_deadline(stow_factory, report: StudyReport) -> None:  # noqa: ANN001
    server = stow_factory(200, delay=5.0)
    started = time.monotonic()
    with pytest.raises(DeliveryError) as caught:
        post_stow(server.url, [build_sr(report, "TRIAGE")], StowAuth(), timeout=1.0)
    assert caught.value.retryable is True
    assert time.monotonic() - started < 4.0


def test_a_pacs_that_is_down_is_retried(report: StudyReport) -> None:
    with pytest.raises(DeliveryError) as caught:
        post_stow(f"http://127.0.0.1:{free_port()}", [build_sr(report, "TRIAGE")], StowAuth(), 5)
    assert caught.value.retryable is True and "unreachable" in str(caught.value)
