"""pynetdicom's association server with the guard in front: each accepted connection is
counted and bounded (`Guard.admit`), its socket wrapped (`GuardedSocket`) before pynetdicom
reads a byte of it, and its association handed to the guard's watchdog.

With DICOM TLS, the handshake runs in the connection's own thread, within the association's
deadline (pynetdicom's own `ssl_context` would run it in the accepting thread, without one:
one silent peer would stop every other connection from being accepted)."""

from __future__ import annotations

import ssl
import threading
from typing import Any

from pynetdicom import evt
from pynetdicom.transport import AssociationSocket, RequestHandler, ThreadedAssociationServer

from gateway.intake.guard import Connection, Guard


class TlsAssociationSocket(AssociationSocket):
    """pynetdicom's socket over a guarded TLS socket: bytes TLS has already decrypted (which
    `select` cannot see) count as ready, as pynetdicom does for a bare SSLSocket (its #528)."""

    @property
    def ready(self) -> bool:
        if self.socket is not None and self._is_connected and self.socket.pending():
            return True
        return super().ready


class GuardedRequestHandler(RequestHandler):
    """pynetdicom's handler, behind the guard."""

    server: GuardedServer

    def handle(self) -> None:
        address = str(self.client_address[0])
        connection = self.server.guard.admit(self.request, address)
        if connection is None:  # over a bound: already closed
            return
        if self.server.tls is not None and not self._start_tls(connection):
            return
        self.request = connection.socket
        association = self._create_association()
        if self.server.tls is not None:
            association.dul.socket.__class__ = TlsAssociationSocket
        connection.socket.associated = lambda: bool(association.is_established)
        connection.association = association
        evt.trigger(association, evt.EVT_CONN_OPEN, {"address": self.client_address})
        association.start()

    def _start_tls(self, connection: Connection) -> bool:
        """The TLS handshake (a client certificate checked where the context asks for one);
        False, the connection closed, when it fails."""
        try:
            connection.socket.start_tls(self.server.tls)
        except OSError:  # ssl.SSLError among them; the reason is on the socket
            self.server.guard.forget(connection)
            return False
        return True


class GuardedServer(ThreadedAssociationServer):
    """A threaded association server whose connections pass the guard (and, with `tls`,
    a TLS handshake)."""

    def __init__(
        self,
        *args: Any,  # noqa: ANN401
        guard: Guard,
        tls: ssl.SSLContext | None = None,
        **kwargs: Any,  # noqa: ANN401
    ) -> None:
        self.guard = guard
        self.tls = tls
        super().__init__(*args, request_handler=GuardedRequestHandler, **kwargs)

    @classmethod
    def start(
        cls,
        ae: Any,  # noqa: ANN401 - pynetdicom AE
        address: tuple[str, int],
        handlers: list[Any],
        guard: Guard,
        tls: ssl.SSLContext | None = None,
    ) -> GuardedServer:
        """Serve in a background thread, as `AE.start_server(block=False)` does."""
        server = ae.make_server(
            address, evt_handlers=handlers, server_class=cls, guard=guard, tls=tls
        )
        thread = threading.Thread(target=server.serve_forever, name="receiver-server", daemon=True)
        thread.start()
        ae._servers.append(server)  # noqa: SLF001 - as start_server does; shutdown removes it
        return server
