"""The groups that :class:`~rtgate.server.settings.Settings` is made of.

Each group is a frozen dataclass of the settings one part of the server reads, so that a
component can be handed its group rather than every setting. A field's *flat name*, the
name users write (``RTGATE_<NAME>``, flags, docs/configuration.md), is the group's
``prefix`` followed by the field name: ``SipSettings.port`` is ``sip_port``. Groups without
a prefix use the flat name as the field name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from ..core.limits import CoreLimits
from ..mcp.limits import McpLimits

if TYPE_CHECKING:
    from ..pipeline.base import Deadlines

MIB = 1024 * 1024

LOOPS = ("auto", "asyncio", "uvloop")
"""Event loops the server can run on (uvicorn's names)."""


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """The process: where it listens, what it runs, how it logs."""
    host: str = "127.0.0.1"
    """Address to bind."""
    port: int = 8000
    """TCP port to bind."""
    pipeline: str = "default"
    """Backend for responses: ``default`` (embedded speech stack) or ``builtin`` (deterministic)."""
    config_file: str | None = None
    """TOML file with pipeline profiles, cloud upstreams and model routes (docs/configuration.md)."""
    workers: int = 1
    """Worker processes sharing the port (``auto`` or 0: one per usable core); each loads
    its own models and sizes its engines for its share of the cores
    (docs/deployment.md, Workers)."""
    loop: str = "auto"
    """Event loop: ``auto`` (uvloop when it can be imported, else asyncio), ``asyncio`` or
    ``uvloop`` (not a dependency; the load benchmark measured no CPU difference,
    docs/benchmarks.md, Load)."""
    log_level: str = "info"
    """Logging threshold: ``debug``, ``info``, ``warning`` or ``error``."""
    otlp_traces_endpoint: str = ""
    """OTLP/HTTP traces URL (``http://collector:4318/v1/traces``): sessions that set
    ``tracing`` export a trace of each turn there; empty: ``tracing`` has no effect."""

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ValueError(f"workers: expected a count or auto, got {self.workers}")
        if self.loop not in LOOPS:
            raise ValueError(f"loop: expected one of {', '.join(LOOPS)}, got {self.loop!r}")


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """Which keys may connect and administer."""
    api_keys: tuple[str, ...] = ()
    """Accepted API keys. Empty: any key is accepted, and only loopback may be bound."""
    allow_unauthenticated: bool = False
    """Bind a non-loopback address with no keys configured (explicit opt-in)."""
    admin_keys: tuple[str, ...] = ()
    """Keys accepted by the admin routes (``/admin/usage``); empty: the admin routes
    are off. Keep them apart from the API keys that clients hold."""

    @property
    def open_access(self) -> bool:
        """No keys configured: any key is accepted (local development only)."""
        return not self.api_keys


@dataclass(frozen=True, slots=True)
class CapacitySettings:
    """How many sessions a process and a key may hold (server/admission.py)."""
    max_sessions: int = 1000
    """Concurrent sessions per process; beyond it new sessions are refused."""
    max_conversations: int = 0
    """Concurrent local sessions whose speech the models transcribe or answer (sessions
    that only listen for turns do not count); beyond it new local sessions are refused
    (``server_busy``, close 1013). 0: automatic, 4 per usable core (server/admission.py)."""
    overload_late_s: float = 1.0
    """New local sessions are refused while the speech models run more than this many
    seconds behind their due work (server/admission.py); 0 disables the check."""
    key_max_sessions: int = 0
    """Concurrent sessions per API key across the cluster (with ``redis_url``; per process
    without it); beyond it new sessions get ``rate_limit_exceeded``. 0: unlimited."""
    key_sessions_per_minute: int = 0
    """New sessions per API key per minute across the cluster; 0: unlimited."""


@dataclass(frozen=True, slots=True)
class ShutdownSettings:
    """How a stopping process lets its sessions and connections end."""
    drain_timeout_s: float = 30.0
    """Seconds SIGTERM lets live sessions go on: the process reports not ready at once
    (``/readyz`` 503) and refuses new sessions, then ends the sessions still open with an
    ``error`` event (``server_shutting_down``) and close 1012; after that,
    ``shutdown_timeout_s`` bounds the close handshakes (docs/deployment.md, Drain)."""
    shutdown_timeout_s: float = 10.0
    """Seconds SIGTERM waits for open connections to close (a client that stops reading
    never answers the close handshake); then their tasks are cancelled and the server
    exits."""
    session_stop_timeout_s: float = 5.0
    """Seconds a session's tasks get to end once it is over; the handler returns then
    whatever they do, and the session's slot is freed when the last of them ends."""

    def __post_init__(self) -> None:
        if self.drain_timeout_s < 0:
            raise ValueError(f"drain_timeout_s: expected seconds >= 0, got {self.drain_timeout_s}")


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """Redis, membership and the internal listeners of nodes and workers."""
    redis_url: str | None = None
    """Redis shared by every node and worker: membership, the call directory, per-key
    limits and usage (``redis://[:password@]host:port/db``; masked when printed). Unset:
    this node's processes share nothing through Redis (docs/deployment.md)."""
    redis_prefix: str = "rtgate"
    """Prefix of every Redis key, so that several deployments can share one Redis."""
    ready_requires_redis: bool = False
    """``/readyz`` answers 503 while Redis is unreachable. Off by default: every node
    would turn unready at once and a load balancer would refuse all new sessions, while
    the nodes can serve them (limits fail open); ``/readyz`` then still says
    ``"redis": "unreachable"`` and ``rtgate_redis_reachable`` is 0 (docs/deployment.md)."""
    cluster_heartbeat_s: float = 2.0
    """Seconds between a process's heartbeats in Redis; a process that stops
    heartbeating leaves the membership (and its sessions stop counting) within 3 of them."""
    advertise_host: str | None = None
    """Address other nodes and workers use to reach this process's internal listener
    (a call's sideband or hangup that lands elsewhere is forwarded there). Unset: the
    bound address when it is a specific one, else this host's name."""
    internal_port: int = 0
    """First port of the per-worker internal listeners (worker i binds ``internal_port + i``
    on ``host``); 0: a free port each. Used with ``workers`` > 1 or ``redis_url``."""


@dataclass(frozen=True, slots=True)
class PreauthSettings:
    """Bounds on connections that have not been authenticated yet (server/preauth.py)."""
    http_header_timeout_s: float = 10.0
    """Seconds a connection may take to send its request line and headers (from the
    connection, or from the end of its previous response); then 408 and close
    (server/preauth.py)."""
    http_body_timeout_s: float = 30.0
    """Seconds a request may take to send its body once its headers are in; then 408."""
    ws_handshake_timeout_s: float = 10.0
    """Seconds from a WebSocket upgrade request until the server has answered it."""
    max_unauthenticated_connections: int = 0
    """Connections still sending their request line, headers or body; beyond it new
    connections get 503 and are closed at once. 0: automatic, a quarter of the open-file
    limit (16–1024)."""


@dataclass(frozen=True, slots=True)
class DecodeSettings:
    """Bounds on what one client message may hold, checked as it is decoded."""
    max_frame_bytes: int = 21 * MIB
    """Largest WebSocket message accepted; bigger frames close with 1009."""
    max_append_bytes: int = 15 * MIB
    """Decoded audio bytes in one ``input_audio_buffer.append``."""
    max_json_depth: int = 32
    """Nesting depth of one client event."""


@dataclass(frozen=True, slots=True)
class OutboundSettings:
    """How far a client may fall behind reading its server events."""
    outbound_queue_events: int = 2048
    """Server events queued for a client; a client that falls this far behind is closed (1008)."""
    send_deadline_s: float = 10.0
    """Seconds one send may block before the client counts as not reading (close 1008)."""


@dataclass(frozen=True, slots=True)
class WebSocketSettings:
    """WebSocket keepalive and read flow control (server/ws_protocol.py)."""
    ping_interval_s: float = 20.0
    """WebSocket keepalive ping interval (the cloud pings every ~20 s)."""
    ping_timeout_s: float = 20.0
    """Seconds to wait for a pong before closing."""
    ws_read_buffer_bytes: int = 256 * 1024
    """Received WebSocket message bytes held for a session before reading from its socket
    pauses (flow control without two system calls per message; see server/ws_protocol.py).
    Messages a local session takes directly (``ws_direct_messages``) are never held."""
    ws_direct_messages: bool = True
    """Local sessions take text messages straight from the WebSocket parser, without
    uvicorn's queue and a task wake-up per message (server/ws_protocol.py, MessageTap)."""


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """Limits the session core enforces (core/limits.py)."""
    session_lifetime_s: float = 3600.0
    """Maximum session duration in seconds (cloud: 60 min)."""
    min_commit_ms: float = 100.0
    """Audio needed for a manual commit."""
    max_input_buffer_ms: float = 15 * 60 * 1000.0
    """Uncommitted input audio kept per session, in ms."""
    max_items: int = 2000
    """Conversation items kept per session."""
    max_conversation_audio_bytes: int = 64 * MIB
    """Audio bytes kept in conversation items per session."""
    max_image_bytes: int = 10 * MIB
    """Decoded size of one ``input_image``; a bigger one is refused (``invalid_value``)."""

    def core_limits(self) -> CoreLimits:
        """The limits each session core enforces (its other limits keep their defaults)."""
        return CoreLimits(
            session_lifetime_s=self.session_lifetime_s,
            min_commit_ms=self.min_commit_ms,
            max_input_buffer_ms=self.max_input_buffer_ms,
            max_items=self.max_items,
            max_conversation_audio_bytes=self.max_conversation_audio_bytes,
            max_image_bytes=self.max_image_bytes,
        )


@dataclass(frozen=True, slots=True)
class BackendSettings:
    """Deadlines of every STT, LLM and TTS engine the server builds."""

    prefix: ClassVar[str] = "backend_"
    """What the names users write add in front of each field (``backend_<field>``)."""

    first_chunk_s: float = 30.0
    """Seconds a backend may take to produce its first result."""
    next_chunk_s: float = 15.0
    """Seconds a backend may take between results."""
    total_s: float = 300.0
    """Seconds one backend call (a whole response) may take."""

    def deadlines(self) -> Deadlines:
        """The deadlines of every STT, LLM and TTS engine the server builds (an engine table
        in the config file may set its own, docs/configuration.md)."""
        from ..pipeline.base import Deadlines  # numpy: not loaded for a relay-only process

        return Deadlines(first_chunk_s=self.first_chunk_s, next_chunk_s=self.next_chunk_s,
                         total_s=self.total_s)


@dataclass(frozen=True, slots=True)
class McpSettings:
    """Bounds on MCP traffic (docs/mcp.md)."""

    prefix: ClassVar[str] = "mcp_"
    """What the names users write add in front of each field (``mcp_<field>``)."""

    list_timeout_s: float = 15.0
    """Seconds listing one MCP server's tools may take, connection included (docs/mcp.md)."""
    call_timeout_s: float = 60.0
    """Seconds one MCP tool call may take, connection included; then it fails with a
    ``protocol_error`` and the model continues."""
    max_output_bytes: int = 1 * MIB
    """Largest MCP tool output handed to the model; a bigger one fails the call."""

    def limits(self) -> McpLimits:
        """The bounds every MCP client of a session applies."""
        return McpLimits(list_timeout_s=self.list_timeout_s, call_timeout_s=self.call_timeout_s,
                         max_output_bytes=self.max_output_bytes)


@dataclass(frozen=True, slots=True)
class WebRTCCallSettings:
    """WebRTC calls: ICE, media timeouts and per-call queues (docs/webrtc.md)."""

    prefix: ClassVar[str] = "webrtc_"
    """What the names users write add in front of each field (``webrtc_<field>``)."""

    ice_servers: tuple[str, ...] = ()
    """WebRTC STUN/TURN URLs (``stun:host:port``, ``turn:host:port?transport=udp``), comma-separated
    in the environment; empty: the SDP answer offers host candidates only (docs/webrtc.md)."""
    turn_username: str | None = None
    """Username for the ``turn:`` URLs."""
    turn_credential: str | None = None
    """Credential for the ``turn:`` URLs (masked when printed)."""
    ice_connect_timeout_s: float = 30.0
    """Seconds from the SDP answer until the call's peer connection must be connected."""
    media_timeout_s: float = 20.0
    """Seconds without inbound call audio after which the peer counts as gone."""
    max_output_audio_s: float = 600.0
    """Output audio queued for playback per call, in seconds; beyond it audio is dropped."""
    max_pending_events: int = 1024
    """Events held per call until its data channel opens; beyond it the oldest go."""
    max_inbound_events: int = 1024
    """Client events queued per call from its data channel before the call counts as flooding."""
    max_data_channel_buffer_bytes: int = 8 * MIB
    """Bytes unsent on a call's data channel before the client counts as not reading."""
    input_jitter_frames: int = 1
    """20 ms frames a call's inbound audio jitter buffer holds back (1–15); aiortc's default
    of 4 only delays the end of speech by ~60 ms more (docs/webrtc.md)."""
    udp_port_min: int = 0
    """Lowest UDP port for a call's host ICE candidates (1024–65535, with
    ``webrtc_udp_port_max``); 0 and 0: any port (docs/webrtc.md, NAT)."""
    udp_port_max: int = 0
    """Highest UDP port for a call's host ICE candidates; 0 and 0: any port."""

    def __post_init__(self) -> None:
        low, high = self.udp_port_min, self.udp_port_max
        if (low, high) == (0, 0):
            return
        if not (low and high):
            raise ValueError(
                f"webrtc_udp_port_min/max: set both or neither (got {low} and {high}; "
                "0 and 0 mean any port)")
        if not (1024 <= low <= 65535 and 1024 <= high <= 65535):
            raise ValueError(
                f"webrtc_udp_port_min/max: ports must lie in 1024-65535 (got {low}-{high})")
        if low > high:
            raise ValueError(
                f"webrtc_udp_port_min/max: the minimum {low} is above the maximum {high}")


@dataclass(frozen=True, slots=True)
class RelaySettings:
    """Relayed sessions' upstream connections (docs/relay.md)."""

    prefix: ClassVar[str] = "relay_"
    """What the names users write add in front of each field (``relay_<field>``)."""

    connect_timeout_s: float = 5.0
    """Seconds to open an upstream WebSocket (TCP, TLS, HTTP upgrade) for a relayed session."""
    ping_interval_s: float = 5.0
    """Keepalive ping interval towards a relay upstream."""
    ping_timeout_s: float = 5.0
    """Seconds without a pong before a relay upstream counts as lost."""
    close_timeout_s: float = 2.0
    """Seconds to wait for a relay upstream's close frame."""
    answer_deadline_s: float = 8.0
    """Seconds a relay upstream may stay silent when it owes an answer before it counts as
    stalled (docs/relay.md)."""
    splice: bool = True
    """Relay GA sessions' frames as raw bytes, parsing frame headers only (docs/relay.md,
    Spliced data path); off: every relayed frame is parsed and re-encoded."""


@dataclass(frozen=True, slots=True)
class SipSettings:
    """The SIP endpoint for phone calls (docs/sip.md)."""

    prefix: ClassVar[str] = "sip_"
    """What the names users write add in front of each field (``sip_<field>``)."""

    port: int = 0
    """UDP and TCP port of the SIP endpoint for phone calls (docs/sip.md); 0: no SIP."""
    host: str = ""
    """Address the SIP endpoint binds and puts in SDP answers; empty: ``host``."""
    allowed_sources: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    """Addresses or CIDRs that may send SIP (and RTP); others are dropped unanswered."""
    answer_timeout_s: float = 30.0
    """Seconds an incoming call waits for accept/reject before it is declined (408, or 480
    when no webhook could be delivered)."""
    media_timeout_s: float = 20.0
    """Seconds without RTP from the caller before an accepted call counts as gone."""
    jitter_frames: int = 2
    """20 ms RTP packets the input jitter buffer holds before releasing audio."""
    rtp_port_min: int = 10000
    """Lowest UDP port for calls' RTP (RTCP: the next port)."""
    rtp_port_max: int = 20000
    """Highest UDP port for calls' RTP."""
    digest_username: str | None = None
    """With ``sip_digest_password``: new INVITEs must carry digest credentials (401 otherwise)."""
    digest_password: str | None = None
    """Digest password of the trunk (masked when printed)."""
    tls_port: int = 0
    """TCP port of SIP over TLS (``sips:``, usually 5061); 0: no TLS. Needs
    ``sip_tls_certfile`` and ``sip_tls_keyfile``."""
    tls_certfile: str = ""
    """PEM certificate chain the TLS listener presents."""
    tls_keyfile: str = ""
    """PEM private key of ``sip_tls_certfile``."""


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """Where ``realtime.call.incoming`` webhooks go and what signs them."""

    prefix: ClassVar[str] = "webhook_"
    """What the names users write add in front of each field (``webhook_<field>``)."""

    urls: tuple[str, ...] = ()
    """Where ``realtime.call.incoming`` webhooks go (comma-separated in the environment)."""
    secret: str | None = None
    """``whsec_…`` secret that signs the webhooks (masked when printed)."""
