"""STOW-RS in: a multipart/related; type="application/dicom" body (PS3.18 10.5) read as it
streams, each part spooled to a file of its own, each instance stored as a C-STORE one is.

`StowReader` feeds the body's chunks to python-multipart's streaming parser: no more than
`max_part_bytes` (TRIAGE_MAX_FILE_BYTES, the receiver's cap) is ever written for one part (a
longer one is refused as over the cap, unread), and a body over `max_body_bytes` ends the
request (`StowRequestError`, 413). `store_parts` then gives every part to the receiver's own
`store_instance` (success only after its commit, held in its study, the same limits and
statuses), and `stow_response` answers the PS3.18 response: ReferencedSOPSequence for what
was stored (or answered success unread, as C-STORE does), FailedSOPSequence with each
failure's reason (the C-STORE status: 0xC210, 0xC240, 0xA700, 0xA701).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.intake.receiver import CANNOT_UNDERSTAND, SUCCESS, StoreContext, store_instance

DICOM = "application/dicom"


class StowRequestError(ValueError):
    """The request as a whole cannot be read: its HTTP status and the reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def boundary_of(content_type: str) -> bytes:
    """The boundary of a multipart/related; type="application/dicom" Content-Type."""
    from python_multipart.multipart import parse_options_header

    kind, options = parse_options_header(content_type)
    if kind != b"multipart/related":
        raise StowRequestError(415, "Content-Type must be multipart/related")
    if options.get(b"type", DICOM.encode()).lower() != DICOM.encode():
        raise StowRequestError(415, 'only type="application/dicom" parts are accepted')
    if not options.get(b"boundary"):
        raise StowRequestError(400, "the multipart Content-Type has no boundary")
    return options[b"boundary"]


@dataclass
class Part:
    """One body part: its file, Content-Type, and whether it ran over the cap."""

    path: Path
    content_type: str = ""
    size: int = 0
    too_large: bool = False


@dataclass
class StowReader:
    """Body chunks in (`feed`), spooled parts out (`finish`); files under `directory`."""

    content_type: str
    directory: Path
    max_part_bytes: int
    max_body_bytes: int
    parts: list[Part] = field(default_factory=list)
    _read: int = 0
    _header: list[bytes] = field(default_factory=lambda: [b"", b""])
    _file: Any = None

    def __post_init__(self) -> None:
        from python_multipart.multipart import MultipartParser

        callbacks = {
            "on_part_begin": self._begin,
            "on_part_data": self._data,
            "on_part_end": self._end,
            "on_header_field": lambda data, start, end: self._add(0, data[start:end]),
            "on_header_value": lambda data, start, end: self._add(1, data[start:end]),
            "on_header_end": self._header_end,
        }
        self._parser = MultipartParser(boundary_of(self.content_type), callbacks)

    def feed(self, chunk: bytes) -> None:
        self._read += len(chunk)
        if self._read > self.max_body_bytes:
            raise StowRequestError(413, f"the body is over the cap of {self.max_body_bytes} bytes")
        self._parse(lambda: self._parser.write(chunk))

    def finish(self) -> list[Part]:
        self._parse(self._parser.finalize)
        if not self.parts:
            raise StowRequestError(400, "the body has no parts")
        return self.parts

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def _parse(self, step: Any) -> None:  # noqa: ANN401
        from python_multipart.exceptions import MultipartParseError

        try:
            step()
        except MultipartParseError as error:
            raise StowRequestError(400, f"the multipart body is malformed ({error})") from None

    def _begin(self) -> None:
        handle, name = tempfile.mkstemp(dir=self.directory, suffix=".dcm")
        self._file = open(handle, "wb")  # noqa: SIM115 - closed at the part's end
        self.parts.append(Part(Path(name)))

    def _add(self, index: int, data: bytes) -> None:
        self._header[index] += data

    def _header_end(self) -> None:
        name, value = (item.decode("latin-1").strip() for item in self._header)
        if name.lower() == "content-type":
            self.parts[-1].content_type = value
        self._header = [b"", b""]

    def _data(self, data: bytes, start: int, end: int) -> None:
        part = self.parts[-1]
        part.size += end - start
        if part.size > self.max_part_bytes:
            part.too_large = True  # the rest is read past, never written
        elif not part.too_large:
            self._file.write(data[start:end])

    def _end(self) -> None:
        self._file.close()
        self._file = None


@dataclass(frozen=True)
class Outcome:
    """What became of one part: its SOP class and instance UIDs (as far as read), and the
    C-STORE status it got (0x0000 stored)."""

    sop_class: str
    sop_instance: str
    status: int


def store_part(part: Part, source: str, context: StoreContext) -> Outcome:
    """Store one part as the receiver stores a C-STORE instance."""
    import pydicom

    if part.too_large or part.content_type.split(";")[0].strip().lower() not in ("", DICOM):
        return Outcome("", "", CANNOT_UNDERSTAND)
    try:
        header = pydicom.dcmread(
            part.path, stop_before_pixels=True, specific_tags=["SOPClassUID", "SOPInstanceUID"]
        )
        sop_class, sop_instance = str(header.SOPClassUID), str(header.SOPInstanceUID)
    except Exception:  # noqa: BLE001 - not a DICOM file, or one without its identity
        return Outcome("", "", CANNOT_UNDERSTAND)
    answer = store_instance(part.path, sop_class, source, context)
    return Outcome(sop_class, sop_instance, int(getattr(answer, "Status", answer)))


def store_parts(parts: list[Part], context: StoreContext) -> list[Outcome]:
    """Every part stored in order, by our own instance numbers in the log."""
    return [store_part(part, f"instance-{next(context.numbers)}", context) for part in parts]


def stow_response(outcomes: list[Outcome]) -> tuple[int, dict[str, Any]]:
    """(HTTP status, the PS3.18 response as DICOM JSON): 200 all stored, 202 some failed,
    409 none stored."""
    from pydicom.dataset import Dataset

    response = Dataset()
    stored, failed = [], []
    for outcome in outcomes:
        item = Dataset()
        item.ReferencedSOPClassUID = outcome.sop_class or None
        item.ReferencedSOPInstanceUID = outcome.sop_instance or None
        if outcome.status == SUCCESS:
            stored.append(item)
        else:
            item.FailureReason = outcome.status
            failed.append(item)
    if stored:
        response.ReferencedSOPSequence = stored
    if failed:
        response.FailedSOPSequence = failed
    status = 200 if not failed else 202 if stored else 409
    return status, response.to_json_dict()
