"""The relay's metric families, per upstream (docs/relay.md, Metrics)."""

from __future__ import annotations

from ..metrics import CONNECT_BUCKETS_S, Registry


class RelayMetrics:
    """The relay's metrics, per upstream (see docs/relay.md)."""

    def __init__(self, registry: Registry) -> None:
        self.sessions = registry.counter(
            "rtgate_relay_sessions_total", "Relayed sessions opened, by upstream.", ["upstream"])
        self.active = registry.gauge(
            "rtgate_relay_sessions_active", "Relayed sessions open now, by upstream.", ["upstream"])
        self.faults = registry.counter(
            "rtgate_relay_faults_total",
            "Relayed sessions ended by a fault (upstream_unavailable, upstream_rejected, "
            "upstream_timeout, upstream_connection_lost, upstream_misconfigured, and "
            "client_not_reading: a send to the client blocked past send_deadline_s), by upstream.",
            ["upstream", "reason"])
        self.closes = registry.counter(
            "rtgate_relay_closes_total", "Close codes sent to relayed clients, by upstream.",
            ["upstream", "code"])
        self.events = registry.counter(
            "rtgate_relay_events_total",
            "Relayed frames by event type; direction is client_to_upstream or upstream_to_client.",
            ["upstream", "direction", "type"])
        self.bytes = registry.counter(
            "rtgate_relay_bytes_total", "Relayed frame bytes, by direction.", ["upstream", "direction"])
        self.connect_seconds = registry.histogram(
            "rtgate_relay_upstream_connect_seconds",
            "Time to open the upstream WebSocket (TCP, TLS, handshake).",
            ["upstream"], CONNECT_BUCKETS_S)
        self.added_latency = registry.histogram(
            "rtgate_relay_added_latency_seconds",
            "Time from receiving a frame on one side to handing it to the other side's socket.",
            ["upstream", "direction"])
