"""This process's place in a deployment: its id, the address others reach it on, its peers.

A deployment is one or more *processes*: the workers of ``rtgate serve --workers N`` on
one host, and the processes of every node behind a load balancer. Each has a
:class:`Node`: an 8-hex-digit id, fresh at every start, and the internal URL other
processes forward to (a call's sideband or hangup that reaches a process which does not
hold the call, server/forward.py).

Where the owner of a call lives is read from the call id itself (server/calls.py,
``new_call_id``) and then resolved to a URL by :meth:`Node.url_of`: the host's own
workers are known from the start (``peers``, handed out by the supervisor), other nodes'
processes from the cluster membership in Redis (:mod:`rtgate.cluster`).
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

FORWARDED_HEADER = "x-rtgate-forwarded"
"""Set on a request one process forwards to another; such a request is never forwarded
again (no loops, even while two processes' views of the membership disagree)."""


def new_node_id() -> str:
    return secrets.token_hex(4)


def advertise_host(bound: str, configured: str | None = None) -> str:
    """The address other processes reach this one on: ``configured``, else the bound
    address when it is a specific one, else this host's name."""
    if configured:
        return configured
    if bound not in ("", "0.0.0.0", "::"):
        return bound
    return socket.gethostname()


def http_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@dataclass
class Node:
    """This process: its id, its internal URL, the host's other workers and the cluster."""

    id: str
    url: str | None = None
    peers: Mapping[str, str] = field(default_factory=dict)
    """Node id -> internal URL of this host's workers (this one included)."""
    cluster: Any = None
    """A :class:`rtgate.cluster.ClusterStore`, or ``None`` without Redis."""

    async def url_of(self, node_id: str) -> str | None:
        """The internal URL of the process ``node_id``, or ``None`` when no live process of
        the deployment has that id (it ended, or it never existed)."""
        if node_id in self.peers:
            return self.peers[node_id]
        if self.cluster is not None:
            member = await self.cluster.member(node_id)
            if member is not None:
                return str(member.url)
        return None


__all__ = ["FORWARDED_HEADER", "Node", "advertise_host", "http_url", "new_node_id"]
