"""What the app's handlers share: ``app.state.rtgate``, built once in the lifespan (server/app.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .admission import Admission
from .auth import Authenticator
from .call_registry import CallRegistry
from .drain import Drain
from .host import SessionHost
from .routing import ModelRouter
from .settings import Settings

if TYPE_CHECKING:  # only named in annotations here; app.py builds them
    from ..transport.vad import VadService
    from .ephemeral import EphemeralKeyStore
    from .metrics import Metrics
    from .node import Node


@dataclass(eq=False)
class ServerState:
    """The process's shared parts; :attr:`host` admits, counts and builds its sessions."""

    settings: Settings
    auth: Authenticator
    router: ModelRouter
    vad: VadService | None
    ephemeral: EphemeralKeyStore
    calls: CallRegistry
    metrics: Metrics
    node: Node
    """This process in its deployment (call owners, the cluster store)."""
    admission: Admission | None = None
    drain: Drain = field(default_factory=Drain)
    host: SessionHost = field(init=False)

    def __post_init__(self) -> None:
        self.host = SessionHost(self.settings, self.vad, self.admission, self.drain, self.node,
                                self.metrics)

    @property
    def active_sessions(self) -> int:
        """Sessions holding a slot in ``max_sessions`` (:attr:`SessionHost.active_sessions`)."""
        return self.host.active_sessions


__all__ = ["ServerState"]
