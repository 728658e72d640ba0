"""The DICOM receiver: a PACS or scanner sends studies over C-STORE (`triage receive`).

One pynetdicom application entity answers C-ECHO and C-STORE for every storage SOP class
pynetdicom knows, as a PACS forwarding a whole study sends them (dose reports, presentation
states, other SRs, our own SR and key image). Only CT, CR, DX, MR and Secondary Capture images
are triaged, in the uncompressed and the common compressed transfer syntaxes (each offered
only if an installed pydicom plugin decodes it), taking for each proposed context the sender's
first syntax we decode. Every other class is accepted in any transfer syntax pydicom knows and
answered success unread: counted (`StoreContext.ignored`), never stored, never classified; so
are our own objects coming back (Manufacturer "triage"). Handlers are plain functions bound
with their dependencies. A C-STORE is answered success (0x0000) only after its instance is
committed to the ledger, held in its study (`receiving`) until the study goes idle
(`gateway.intake.study_closer`); a repeated SOPInstanceUID is success too. Failures map to statuses:

- 0xC210 (cannot understand): the instance is unusable (no pixel data, corrupt, too large);
- 0xC240 (cannot understand, with an Error Comment naming the element): its PatientID, or
  IssuerOfPatientID or AccessionNumber, contradicts the study it names. Refused rather than
  held in quarantine: the sender keeps the instance and shows the failure where someone can
  correct the patient, and nothing of the wrong patient enters a study or its reports;
- 0xA700 (out of resources): the ledger is unavailable, after a few tries;
- 0xA701 (out of resources): anything else; a sender retries both later.

Logs name instances by our own ids (`instance-<n>`), never by UID or patient data.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.intake.client import PublishError, admit
from gateway.intake.files import IncomingScan, Intake
from gateway.intake.guard import Guard, Limits
from gateway.intake.study_closer import StudyCloser
from imaging.canonical import ScanError
from imaging.dicom import can_decode, read_dicom
from imaging.files import DECODED_BYTES_PER_FILE_BYTE
from imaging.identity import OUR_MANUFACTURER
from schemas.errors import describe
from schemas.messages import Priority
from schemas.settings import Settings

log = logging.getLogger(__name__)

SUCCESS = 0x0000
CANNOT_UNDERSTAND = 0xC210
OUT_OF_RESOURCES = 0xA700
INTERNAL_ERROR = 0xA701
CONTRADICTS_STUDY = 0xC240
NOT_TRIAGED, OUR_OWN = "not a class we triage", "our own object"
ERROR_COMMENT_CHARS = 64  # Error Comment (0000,0902) is an LO

CT, CR, MR, SC = (
    "1.2.840.10008.5.1.4.1.1.2",
    "1.2.840.10008.5.1.4.1.1.1",
    "1.2.840.10008.5.1.4.1.1.4",
    "1.2.840.10008.5.1.4.1.1.7",
)
DX_PRESENTATION, DX_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1.1"
TRIAGED_CLASSES = frozenset((CT, CR, DX_PRESENTATION, DX_PROCESSING, MR, SC))
VERIFICATION = "1.2.840.10008.1.1"
MAX_PDU_BYTES = 1 << 20  # a sender may put this much in a PDU: fewer PDUs per 0.5 MB slice
MAX_REQUEST_BYTES = 4 << 20  # any other PDU (an association request with many contexts)

UNCOMPRESSED = (
    "1.2.840.10008.1.2.1",  # explicit VR little endian
    "1.2.840.10008.1.2",  # implicit VR little endian
    "1.2.840.10008.1.2.1.99",  # deflated explicit VR little endian
    "1.2.840.10008.1.2.2",  # explicit VR big endian (retired, still sent)
)
COMPRESSED = (
    "1.2.840.10008.1.2.4.80",  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.70",  # JPEG lossless SV1
    "1.2.840.10008.1.2.4.57",  # JPEG lossless
    "1.2.840.10008.1.2.5",  # RLE lossless
    "1.2.840.10008.1.2.4.50",  # JPEG baseline
    "1.2.840.10008.1.2.4.51",  # JPEG extended
    "1.2.840.10008.1.2.4.81",  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
)


def offered_syntaxes() -> list[str]:
    """The transfer syntaxes we accept: those an installed pydicom plugin decodes."""
    return [uid for uid in (*UNCOMPRESSED, *COMPRESSED) if can_decode(uid)]


def prefer_senders_order(event: Any) -> None:  # noqa: ANN401 - pynetdicom Event
    """Before negotiation (EVT_REQUESTED): order this association's syntaxes as the sender
    proposed them. pynetdicom accepts, for each proposed context, the first syntax of OUR
    list that the sender proposed; a sender proposes first the syntax it holds the data in
    (dcmtk's storescu `-xs`, `-xy`: the compressed one, then uncompressed ones) and often
    cannot convert, so its first decodable syntax is the one to accept."""
    from pynetdicom.presentation import build_context

    acceptor = event.assoc.acceptor
    ours = {
        context.abstract_syntax: list(context.transfer_syntax)
        for context in acceptor.supported_contexts
    }
    front: dict[str, list[str]] = {abstract: [] for abstract in ours}
    for proposed in event.assoc.requestor.primitive.presentation_context_definition_list:
        order = front.get(proposed.abstract_syntax)
        if order is not None:
            supported = ours[proposed.abstract_syntax]
            order += [
                uid for uid in proposed.transfer_syntax if uid in supported and uid not in order
            ]
    acceptor.supported_contexts = [
        build_context(
            abstract, front[abstract] + [uid for uid in syntaxes if uid not in front[abstract]]
        )
        for abstract, syntaxes in ours.items()
    ]


@dataclass
class StoreContext:
    """What the C-STORE handler needs: settings, the priority of received studies, how long
    to keep trying a busy or unreachable ledger (`sleep` injectable), our instance counter,
    and how many instances were answered success unread, by reason."""

    settings: Settings
    priority: Priority = Priority.routine
    attempts: int = 3
    retry_wait: float = 0.5
    sleep: Callable[[float], None] = time.sleep
    numbers: Any = field(default_factory=lambda: itertools.count(1))
    ignored: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ignore(self, source: str, reason: str, detail: str) -> int:
        """Count an instance we do not triage and answer it success."""
        with self.lock:
            self.ignored[reason] += 1
        log.info("%s ignored (%s: %s)", source, reason, detail)
        return SUCCESS


def handle_echo(event: Any) -> int:  # noqa: ANN401, ARG001 - pynetdicom Event
    return SUCCESS


def handle_store(event: Any, context: StoreContext) -> int | Any:  # noqa: ANN401 - pynetdicom Event
    """The C-STORE handler: the instance as it arrived (written to a file), stored."""
    source = f"instance-{next(context.numbers)}"
    sop_class = str(event.request.AffectedSOPClassUID)
    return store_instance(Path(event.dataset_path), sop_class, source, context)


def store_instance(path: Path, sop_class: str, source: str, context: StoreContext) -> int | Any:  # noqa: ANN401
    """Answer success unread what we do not triage (another SOP class, an object of ours);
    else decode the instance, record it in the ledger, answer; see the module's statuses.
    The one path of every instance received (C-STORE here, STOW-RS in gateway.intake.stow)."""
    if sop_class not in TRIAGED_CLASSES:
        return context.ignore(source, NOT_TRIAGED, _class_name(sop_class))
    try:
        if is_our_own(path):
            return context.ignore(source, OUR_OWN, _class_name(sop_class))
        intake = decode_instance(path, source, context.settings)
    except ScanError as error:
        log.warning("%s refused: %s", source, error.reason)
        return CANNOT_UNDERSTAND
    except Exception as error:  # a bug in decoding: refuse this instance, keep serving
        log.error("%s: internal error while decoding (%s)", source, type(error).__name__)
        return INTERNAL_ERROR
    return record(intake, source, context)


def _class_name(sop_class: str) -> str:
    """The SOP class's name (a class, not patient data), for the log."""
    from pydicom.uid import UID

    return UID(sop_class).name


def is_our_own(path: Path) -> bool:
    """An object we sent (an SR or key image, Manufacturer "triage") coming back with its
    study; read up to the pixels only. An unreadable header is left to the decoder."""
    import pydicom

    try:
        header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Manufacturer"])
        return str(header.get("Manufacturer", "")).strip() == OUR_MANUFACTURER
    except Exception:  # noqa: BLE001 - the decoder names what is wrong with the file
        return False


def decode_instance(path: Path, source: str, settings: Settings) -> Intake:
    """The received data set (written to a file as it arrived) -> an intake of its frames,
    with their DICOM identity."""
    size = path.stat().st_size
    if size > settings.max_file_bytes:
        raise ScanError(
            source, f"instance is {size} bytes, over the cap of {settings.max_file_bytes}"
        )
    max_bytes = DECODED_BYTES_PER_FILE_BYTE * settings.max_file_bytes
    decoded = read_dicom(path, source, settings.max_pixels, settings.max_scans_per_file, max_bytes)
    scans = [IncomingScan(scan.source, scan.pixels, None, scan.identity) for scan in decoded]
    return Intake(scans=scans)


def record(intake: Intake, source: str, context: StoreContext) -> int | Any:  # noqa: ANN401
    """Admit the intake (held in its study) in one transaction; success once committed, a
    refusal with the reason when it contradicts its study."""
    from sqlalchemy.exc import OperationalError

    for attempt in range(1, context.attempts + 1):
        try:
            submission = admit(intake, context.priority, context.settings, hold=True)
        except PublishError as error:  # committed; the reconciler re-sends what is queued
            log.warning("%s recorded; publishing failed (%s)", source, describe(error))
            return SUCCESS
        except OperationalError as error:
            log.warning("%s: ledger unavailable, try %d (%s)", source, attempt, describe(error))
            if attempt < context.attempts:
                context.sleep(context.retry_wait * attempt)
            continue
        except Exception as error:
            log.error("%s: not recorded (%s)", source, type(error).__name__)
            return INTERNAL_ERROR
        if submission.contradicting:
            reason = submission.contradicting[0].reason
            log.warning("%s refused: %s", source, reason)
            return refusal(CONTRADICTS_STUDY, reason)
        if submission.repeated:
            log.info("%s received before; nothing added", source)
        return SUCCESS
    return OUT_OF_RESOURCES


def refusal(status: int, reason: str) -> Any:  # noqa: ANN401 - pydicom Dataset
    """A C-STORE response status with an Error Comment that says why."""
    from pydicom.dataset import Dataset

    response = Dataset()
    response.Status = status
    response.ErrorComment = reason[:ERROR_COMMENT_CHARS]
    return response


def application_entity(settings: Settings) -> Any:  # noqa: ANN401 - pynetdicom AE
    """Our AE: every storage context (the triaged classes in the syntaxes we decode, the rest
    in any), verification, the allow-list, the association cap
    (counting associations that sent their request: see `gateway.intake.guard` for the rest)."""
    from pydicom.uid import AllTransferSyntaxes
    from pynetdicom import AE, AllStoragePresentationContexts

    class ReceiverAE(AE):
        @property
        def active_associations(self) -> list[Any]:
            """Requestors, and acceptors that received their association request: a
            connection that never sends one holds no association slot (the guard bounds and
            times those)."""
            return [
                association
                for association in super().active_associations
                if not association.is_acceptor or association.requestor.primitive is not None
            ]

    ae = ReceiverAE(ae_title=settings.dicom_ae_title)
    decoded = offered_syntaxes()
    unread = [*UNCOMPRESSED, *(uid for uid in AllTransferSyntaxes if uid not in UNCOMPRESSED)]
    for context in AllStoragePresentationContexts:
        sop_class = context.abstract_syntax
        ae.add_supported_context(sop_class, decoded if sop_class in TRIAGED_CLASSES else unread)
    ae.add_supported_context(VERIFICATION, list(UNCOMPRESSED[:2]))
    ae.require_calling_aet = list(settings.dicom_allowed_aes)
    ae.maximum_associations = settings.dicom_max_associations
    ae.maximum_pdu_size = MAX_PDU_BYTES
    ae.network_timeout = settings.dicom_read_timeout_seconds  # an idle association is aborted
    ae.acse_timeout = ae.dimse_timeout = settings.dicom_read_timeout_seconds
    return ae


def guard_for(settings: Settings) -> Guard:
    """The receiver's connection guard, with the limits these settings give."""
    limits = Limits(
        association_seconds=settings.dicom_association_seconds,
        read_seconds=settings.dicom_read_timeout_seconds,
        max_pdu_bytes=MAX_PDU_BYTES,
        max_request_bytes=MAX_REQUEST_BYTES,
        max_dataset_bytes=settings.max_file_bytes,
        allowed_aes=frozenset(settings.dicom_allowed_aes),
    )
    return Guard(limits, settings.dicom_max_connections, settings.dicom_max_connections_per_address)


def quiet_pynetdicom() -> None:
    """pynetdicom logs request identifiers (UIDs) at INFO and whole data sets at DEBUG; its
    DUL logs a traceback for each connection the guard closes (the guard logs one line)."""
    from pynetdicom import _config

    _config.LOG_REQUEST_IDENTIFIERS = False
    _config.LOG_RESPONSE_IDENTIFIERS = False
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    logging.getLogger("pynetdicom.dul").setLevel(logging.CRITICAL)


@dataclass
class Receiver:
    """A running receiver: the association server, its guard and the idle-study closer."""

    ae: Any
    server: Any
    guard: Guard
    stop_background: threading.Event
    closer_thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def stop(self, grace: float = 30.0) -> int:
        """Stop accepting, let open associations finish for up to `grace` seconds, then
        close every connection left (whatever its peer does); returns how many were."""
        self.server.shutdown()
        deadline = time.monotonic() + grace
        while self.ae.active_associations and time.monotonic() < deadline:
            time.sleep(0.1)
        left = len(self.ae.active_associations)
        self.guard.cut_all()
        self.ae.shutdown()
        self.stop_background.set()
        self.closer_thread.join(timeout=5)
        return left


def start_receiver(
    settings: Settings,
    host: str = "0.0.0.0",  # noqa: S104 - a DICOM receiver listens on the hospital network
    port: int | None = None,
    closer: StudyCloser | None = None,
    context: StoreContext | None = None,
) -> Receiver:
    """Listen for associations (in threads, behind the guard; over TLS when the settings
    give a certificate: gateway/tls.py) and close idle studies in the background. Received
    data sets are written to a file as they arrive. TlsSettingsError, before listening, when
    a TLS setting names a file that cannot serve."""
    from pynetdicom import _config, evt

    from gateway.intake.guarded_server import GuardedServer
    from gateway.tls import receiver_context

    tls = receiver_context(settings)
    quiet_pynetdicom()
    _config.STORE_RECV_CHUNKED_DATASET = True
    ae = application_entity(settings)
    context = context or StoreContext(settings)
    handlers = [
        (evt.EVT_REQUESTED, prefer_senders_order),
        (evt.EVT_C_ECHO, handle_echo),
        (evt.EVT_C_STORE, handle_store, [context]),
    ]
    guard = guard_for(settings)
    address = (host, settings.dicom_port if port is None else port)
    server = GuardedServer.start(ae, address, handlers, guard, tls)
    stop_background = threading.Event()
    guard.watch(stop_background)
    closer_thread = (closer or StudyCloser(settings)).start(stop_background)
    return Receiver(ae, server, guard, stop_background, closer_thread)
