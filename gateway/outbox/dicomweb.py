"""STOW-RS our SR and key image to a DICOMweb PACS (PS3.18 10.5), with urllib.

`post_stow` POSTs the instances as one multipart/related; type="application/dicom" body to
`{base}/studies`, with a bearer token or basic auth, under one deadline for the whole
exchange (`http_opener`). The PACS answers a PS3.18 response (application/dicom+json):
- 200: every instance stored: delivered;
- 202 with a FailedSOPSequence (0008,1198), or 409: some or all refused; each failure's
  reason (0008,1197) is a C-STORE-like status, judged as C-STORE statuses are
  (`gateway.outbox.cstore.status_retryable`): retryable when any failure may pass later,
  not when every one is a refusal of the content (409 without readable reasons: not
  retryable). A 202 without failures (warnings only) counts as stored;
- 5xx, 408, 429, a time-out, a refused connection: retryable; any other 4xx and any 3xx
  (redirects are not followed): not.
Our SOPInstanceUIDs are derived from the decision, so a resent instance is stored once.
"""

from __future__ import annotations

import base64
import io
import json
import urllib.request
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from pydicom import Dataset

from gateway.outbox.cstore import status_retryable
from gateway.outbox.deadline import http_exchange
from gateway.outbox.report import DeliveryError

DICOM_JSON = "application/dicom+json"
MAX_ANSWER = 1024 * 1024
FAILED_SOP_SEQUENCE = "00081198"
FAILURE_REASON = "00081197"
REFERENCED_SOP_INSTANCE = "00081155"


@dataclass(frozen=True)
class StowAuth:
    """How we authenticate at the PACS: a bearer token, or a user and password."""

    token: str | None = None
    username: str | None = None
    password: str | None = None

    def header(self) -> str | None:
        if self.token:
            return f"Bearer {self.token}"
        if self.username is not None:
            pair = f"{self.username}:{self.password or ''}".encode()
            return "Basic " + base64.b64encode(pair).decode("ascii")
        return None


def dicom_file(dataset: Dataset) -> bytes:
    """A dataset as a DICOM Part 10 file (preamble, file meta), as STOW-RS carries it."""
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def multipart_related(parts: Iterable[bytes]) -> tuple[str, bytes]:
    """(Content-Type, body) of a multipart/related; type="application/dicom" message."""
    boundary = uuid.uuid4().hex
    body = bytearray()
    for part in parts:
        body += f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        body += part + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
    return content_type, bytes(body)


def failure_reasons(answer: bytes) -> list[int]:
    """The failure reasons (0008,1197) of the PS3.18 response's FailedSOPSequence; [] when
    it has none or cannot be read."""
    try:
        document = json.loads(answer)
    except ValueError:
        return []
    if isinstance(document, list):  # some servers wrap the dataset in a list
        document = document[0] if document else {}
    if not isinstance(document, dict):
        return []
    failed = (document.get(FAILED_SOP_SEQUENCE) or {}).get("Value") or []
    reasons = []
    for item in failed:
        values = (item.get(FAILURE_REASON) or {}).get("Value") if isinstance(item, dict) else None
        if values and isinstance(values[0], int):
            reasons.append(values[0])
    return reasons


def judge(status: int, answer: bytes) -> None:
    """Nothing when `status` and the PS3.18 `answer` mean stored; DeliveryError otherwise."""
    if status == 200:
        return
    if status in (202, 409):
        reasons = failure_reasons(answer)
        if status == 202 and not reasons and b"00081198" not in answer:
            return  # accepted with warnings only
        listed = ", ".join(f"0x{reason:04X}" for reason in reasons) or "none given"
        retryable = any(status_retryable(reason) for reason in reasons)
        raise DeliveryError(
            f"STOW-RS {status}: instance(s) refused, reasons {listed}", retryable=retryable
        )
    if 300 <= status < 400:
        raise DeliveryError(f"DICOMweb PACS redirected ({status}), not followed", retryable=False)
    retryable = status >= 500 or status in (408, 429)
    raise DeliveryError(f"DICOMweb PACS answered {status}", retryable=retryable)


def post_stow(
    base_url: str, datasets: Iterable[Dataset], auth: StowAuth, timeout: float = 30.0
) -> None:
    """STOW-RS every dataset to `{base_url}/studies`; DeliveryError unless all are stored
    within `timeout` for the whole exchange."""
    if not base_url.lower().startswith(("http://", "https://")):
        raise DeliveryError("DICOMweb URL must be http or https", retryable=False)
    content_type, body = multipart_related(dicom_file(item) for item in datasets)
    headers = {"Content-Type": content_type, "Accept": DICOM_JSON}
    if (authorization := auth.header()) is not None:
        headers["Authorization"] = authorization
    request = urllib.request.Request(
        base_url.rstrip("/") + "/studies", data=body, method="POST", headers=headers
    )
    judge(*http_exchange(request, timeout, "DICOMweb PACS", MAX_ANSWER))
