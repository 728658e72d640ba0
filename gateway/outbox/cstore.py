"""C-STORE our SR and key image to the PACS (pynetdicom as the storage SCU).

One association per call; every dataset is sent on it, in order. A failure raises
`DeliveryError` at once (the remaining datasets are not sent): the outbox retries the whole
set, and since our SOPInstanceUIDs are derived from the decision a PACS stores a resent
instance once.

Retryable: the peer is down or refuses / aborts the association, a time-out, a status that
may pass later (0xA7xx out of resources, 0x0110 processing failure, 0x0213 resource
limitation, a status we do not know). Not retryable: the peer refuses the content (0xA9xx
data set does not match SOP class, 0xCxxx cannot understand, 0x0122 SOP class not
supported, 0x0124 not authorised, 0x0117 invalid instance) or accepts no presentation
context for it. Warnings (0xB000, 0xB006, 0xB007) count as stored.

Over DICOM TLS (`tls`, from gateway/tls.py) the handshake is part of connecting: a PACS whose
certificate our CA did not sign (or that names another host) gets no association, retryably.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterable

from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from gateway.outbox.deadline import Deadline
from gateway.outbox.report import DeliveryError
from gateway.tls import ClientTls

log = logging.getLogger(__name__)

NOT_RETRYABLE_STATUSES = {0x0117, 0x0122, 0x0124}
MAX_CONTEXTS = 128


def parse_destination(destination: str) -> tuple[str, str, int]:
    """'AET@host:port' -> (AET, host, port); ValueError when malformed."""
    ae_title, sep, address = destination.partition("@")
    host, colon, port_text = address.rpartition(":")
    if not sep or not colon or not ae_title or not host:
        raise ValueError("destination must look like AET@host:port")
    host = host.strip("[]")  # [::1]:104
    port = int(port_text)
    if not 0 < port < 65536 or len(ae_title) > 16:
        raise ValueError("destination has a bad port or an AE title over 16 characters")
    return ae_title, host, port


def status_retryable(status: int) -> bool:
    """Whether a failed C-STORE status may pass on a later try (see module doc)."""
    if status in NOT_RETRYABLE_STATUSES:
        return False
    return not (0xA900 <= status <= 0xA9FF or 0xC000 <= status <= 0xCFFF)


def is_success(status: int) -> bool:
    return status == 0x0000 or status in (0xB000, 0xB006, 0xB007)


def send_cstore(
    datasets: Iterable[Dataset],
    destination: str,
    calling_ae: str,
    timeout: float = 30.0,
    tls: ClientTls | None = None,
) -> None:
    """Store every dataset at `destination` ('AET@host:port'), over TLS when `tls` is given;
    DeliveryError on any failure.

    `timeout` bounds the whole exchange (association, every PDU, every response): at the
    deadline the association's socket is shut down, whatever the peer is sending."""
    from pynetdicom import AE

    items = list(datasets)
    if not items:
        return
    try:
        called_ae, host, port = parse_destination(destination)
    except ValueError as error:
        raise DeliveryError(f"bad destination: {error}", retryable=False) from None
    ae = AE(ae_title=calling_ae)
    for seconds in ("acse_timeout", "dimse_timeout", "network_timeout", "connection_timeout"):
        setattr(ae, seconds, timeout)
    sop_classes = list(dict.fromkeys(str(item.SOPClassUID) for item in items))
    if len(sop_classes) > MAX_CONTEXTS:
        raise DeliveryError("too many SOP classes for one association", retryable=False)
    for sop_class in sop_classes:
        ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    made: list[object] = []  # the association, from the moment its connection opens
    with Deadline(timeout) as deadline:
        deadline.on_cut(lambda: _cut_associations(ae, made))
        try:
            _store_all(ae, items, (called_ae, host, port, tls), made)
        except DeliveryError as error:
            if deadline.passed:
                raise DeliveryError(
                    f"no whole exchange within {timeout:g} s", retryable=True
                ) from error
            raise
        finally:  # no reader left behind on a peer that still sends
            _cut_associations(ae, made)
    if deadline.passed:
        raise DeliveryError(f"no whole exchange within {timeout:g} s", retryable=True)


def _cut_associations(ae: object, made: list[object]) -> None:
    """Shut down the sockets of this AE's associations (each call has its own AE), including
    the one still being negotiated (`associate` has not returned it yet)."""
    for association in {*ae.active_associations, *made}:
        raw = getattr(getattr(association.dul, "socket", None), "socket", None)
        if raw is not None:
            with contextlib.suppress(OSError):
                raw.shutdown(socket.SHUT_RDWR)


def _store_all(
    ae: object,
    items: list[Dataset],
    peer: tuple[str, str, int, ClientTls | None],
    made: list[object],
) -> None:
    """One association to `peer` (AE title, host, port, TLS), every dataset on it in order;
    DeliveryError at the first failure."""
    from pynetdicom import evt

    called_ae, host, port, tls = peer
    tls_args = None if tls is None else (tls.context, tls.server_hostname or host)
    opened = [(evt.EVT_CONN_OPEN, lambda event: made.append(event.assoc))]  # before the answer
    try:
        assoc = ae.associate(host, port, ae_title=called_ae, evt_handlers=opened, tls_args=tls_args)
    except OSError as error:  # resolution failures and the like
        raise DeliveryError(f"cannot connect: {type(error).__name__}", retryable=True) from None
    if not assoc.is_established:
        if assoc.is_rejected:
            reason = "association rejected"
        elif not made and tls is not None:  # connecting includes the handshake
            reason = "no connection (peer down, or the TLS handshake failed)"
        elif assoc.is_aborted:
            reason = "association aborted"
        else:
            reason = "no association (peer down or timed out)"
        raise DeliveryError(reason, retryable=True)
    try:
        for index, item in enumerate(items):
            _store_one(assoc, index, item)
    finally:
        if assoc.is_established:
            assoc.release()


def _store_one(assoc: object, index: int, item: Dataset) -> None:
    try:
        response = assoc.send_c_store(item)
    except ValueError:  # no accepted presentation context for this SOP class
        raise DeliveryError(
            f"dataset {index}: SOP class not accepted by the peer", retryable=False
        ) from None
    except RuntimeError:  # association gone between sends
        raise DeliveryError(f"dataset {index}: association lost", retryable=True) from None
    status = getattr(response, "Status", None)
    if status is None:
        raise DeliveryError(
            f"dataset {index}: no C-STORE response (timeout or abort)", retryable=True
        )
    if not is_success(int(status)):
        raise DeliveryError(
            f"dataset {index}: C-STORE status 0x{int(status):04X}",
            retryable=status_retryable(int(status)),
        )
