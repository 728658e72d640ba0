"""pynetdicom's association server with the guard in front: each accepted connection is
counted and bounded (`Guard.admit`), its socket wrapped (`GuardedSocket`) before pynetdicom
reads a byte of it, and its association handed to the guard's watchdog."""

from __future__ import annotations

import threading
from typing import Any

from pynetdicom import evt
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

from gateway.intake.guard import Guard


class GuardedRequestHandler(RequestHandler):
    """pynetdicom's handler, behind the guard."""

    server: GuardedServer

    def handle(self) -> None:
        address = str(self.client_address[0])
        connection = self.server.guard.admit(self.request, address)
        if connection is None:  # over a bound: already closed
            return
        self.request = connection.socket
        association = self._create_association()
        connection.socket.associated = lambda: bool(association.is_established)
        connection.association = association
        evt.trigger(association, evt.EVT_CONN_OPEN, {"address": self.client_address})
        association.start()


class GuardedServer(ThreadedAssociationServer):
    """A threaded association server whose connections pass the guard."""

    def __init__(self, *args: Any, guard: Guard, **kwargs: Any) -> None:  # noqa: ANN401
        self.guard = guard
        super().__init__(*args, request_handler=GuardedRequestHandler, **kwargs)

    @classmethod
    def start(
        cls,
        ae: Any,  # noqa: ANN401 - pynetdicom AE
        address: tuple[str, int],
        handlers: list[Any],
        guard: Guard,
    ) -> GuardedServer:
        """Serve in a background thread, as `AE.start_server(block=False)` does."""
        server = ae.make_server(address, evt_handlers=handlers, server_class=cls, guard=guard)
        thread = threading.Thread(target=server.serve_forever, name="receiver-server", daemon=True)
        thread.start()
        ae._servers.append(server)  # noqa: SLF001 - as start_server does; shutdown removes it
        return server
