"""The connection hooks in ``scope["extensions"]``: their keys and their interfaces.

The server's uvicorn protocol (:mod:`rtgate.server.ws_protocol`, whose docstring states
the rules) puts a splice hook under :data:`SPLICE_EXTENSION` and a direct text-message hook
under :data:`TAP_EXTENSION` on every WebSocket connection. An app that splices (the relay,
:mod:`rtgate.relay.splice`) needs only the interfaces below, so it depends on this module
and never on the server that implements them.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

SPLICE_EXTENSION = "rtgate.splice"
"""The key of the :class:`SpliceHook` in ``scope["extensions"]``."""

TAP_EXTENSION = "rtgate.tap"
"""The key of the direct text-message hook (``MessageTap``) in ``scope["extensions"]``."""


class RawSink(Protocol):
    """What a spliced connection reports to the app that took it (asyncio protocol style)."""

    def data_received(self, data: bytes) -> None: ...

    def connection_lost(self, exc: Exception | None) -> None: ...

    def pause_writing(self) -> None: ...

    def resume_writing(self) -> None: ...

    def shutdown(self) -> None:
        """The server is shutting down: close the connection promptly."""
        ...


class SpliceHook(Protocol):
    """A connection's splice hook; one per connection."""

    @property
    def armed(self) -> bool:
        """Whether the bytes after the 101 go to the raw buffer (armed, not yet taken or released)."""
        ...

    def arm(self) -> bool:
        """Route the bytes after the 101 to a raw buffer. Only before ``websocket.accept``;
        returns whether the hook is armed."""
        ...

    def release(self) -> None:
        """Give the connection back to the server's WebSocket parser (a no-op unless armed)."""
        ...

    def take(self, sink: RawSink) -> tuple[asyncio.Transport, bytes] | None:
        """Hand the connection to ``sink``; returns the transport and the bytes received
        since the 101, which ``sink`` must process before any later ``data_received``.

        ``None`` — the caller must then :meth:`release` — unless the hook is armed, the
        101 is written without a negotiated extension (frames could not pass verbatim),
        and the connection is still open.
        """
        ...
