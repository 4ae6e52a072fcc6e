"""One cloud upstream of the relay, as the gateway configuration file declares it.

The server parses ``[upstreams.NAME]`` tables into these (:mod:`rtgate.server.config`,
which states the file's format); the relay opens them (:mod:`.upstream`). The credential
is never held here: only the name of the environment variable that holds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    """``kind`` picks the credential header (``azure``: ``api-key``; ``openai``: Bearer);
    ``model`` is the upstream model or deployment (default: the client's);
    ``client_secrets`` says where ``POST /v1/realtime/client_secrets`` mints keys for the
    models routed here (docs/relay.md)."""

    name: str
    kind: Literal["azure", "openai"]
    base_url: str
    api_key_env: str
    model: str | None = None
    client_secrets: Literal["rtgate", "upstream"] = "rtgate"
