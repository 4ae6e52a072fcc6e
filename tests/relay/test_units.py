"""Relay building blocks without sockets: routing, upstream URL and headers, frame types,
limits and the metrics exposition."""

from __future__ import annotations

import socket

import pytest

from rtgate.metrics import MAX_SERIES_PER_METRIC, event_type_label
from rtgate.pipeline.responder import Pipeline
from rtgate.relay.frames import frame_type
from rtgate.relay.upstream import UpstreamUnavailable, _describe, upstream_headers, upstream_url
from rtgate.server.config import parse_config
from rtgate.server.metrics import Metrics
from rtgate.server.relay_wiring import relay_limits
from rtgate.server.routing import ModelRouter
from rtgate.server.settings import Settings
from rtgate.testing.fakes import FakeLLM

CONFIG = {
    "upstreams": {
        "az": {"kind": "azure", "base_url": "https://res.openai.azure.com/openai/v1",
               "api_key_env": "AZ_KEY", "model": "my-deployment"},
        "oa": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1/", "api_key_env": "OA_KEY"},
    },
    "routes": [
        {"model": "gpt-realtime-mini*", "upstream": "az"},
        {"model": "gpt-realtime-mini-local", "profile": "default"},
        {"model": "custom-*", "upstream": "oa"},
    ],
}


@pytest.fixture
def router() -> ModelRouter:
    return ModelRouter.from_config({"default": Pipeline("default", FakeLLM())}, parse_config(CONFIG))


def test_first_matching_route_wins_in_file_order(router: ModelRouter) -> None:
    """gpt-realtime-mini-local matches the azure route first, so it is relayed."""
    assert router.upstream_for("gpt-realtime-mini-local").name == "az"  # type: ignore[union-attr]
    assert router.resolve("gpt-realtime-mini-local") is None


def test_unrouted_official_names_stay_local(router: ModelRouter) -> None:
    assert router.upstream_for("gpt-realtime") is None
    assert router.resolve("gpt-realtime") is router.default
    assert router.route("no-such-model") is None


def test_upstream_url_maps_the_scheme_and_model(router: ModelRouter) -> None:
    """https → wss, http → ws, ``/realtime?model=``: the upstream's model, else the client's."""
    az, oa = router.upstream_for("gpt-realtime-mini"), router.upstream_for("custom-x")
    assert az is not None and oa is not None
    assert upstream_url(az, "gpt-realtime-mini") == (
        "wss://res.openai.azure.com/openai/v1/realtime?model=my-deployment")
    assert upstream_url(oa, "custom-x", intent="transcription") == (
        "ws://127.0.0.1:9/v1/realtime?model=custom-x&intent=transcription")


def test_credential_header_by_kind(router: ModelRouter) -> None:
    az, oa = router.upstream_for("gpt-realtime-mini"), router.upstream_for("custom-x")
    assert az is not None and oa is not None
    assert upstream_headers(az, {"AZ_KEY": "k1"}) == {"api-key": "k1"}
    assert upstream_headers(oa, {"OA_KEY": "k2"}) == {"Authorization": "Bearer k2"}
    with pytest.raises(UpstreamUnavailable) as missing:
        upstream_headers(oa, {})
    assert missing.value.code == "upstream_misconfigured" and "OA_KEY" in missing.value.message


def test_connect_failures_are_described_without_details_of_the_request() -> None:
    assert _describe(ConnectionRefusedError(111, "Connection refused"), 5) == "connection refused"
    assert _describe(socket.gaierror(-2, "Name or service not known"), 5) == (
        "the host name could not be resolved")
    assert _describe(TimeoutError(), 5) == "timed out after 5 s opening the connection"


@pytest.mark.parametrize(
    ("frame", "kind"),
    [
        ('{"type":"input_audio_buffer.append","audio":"AAAA"}', "input_audio_buffer.append"),
        ('{"audio":"AAAA","type": "input_audio_buffer.append"}', "input_audio_buffer.append"),
        ('{"item":{"type":"message"},"type":"conversation.item.create"}', "conversation.item.create"),
        ("{not json", None),
        (b"\x00\x01", None),
        ("[1, 2]", None),
    ],
)
def test_frame_type_reads_the_top_level_type(frame: str | bytes, kind: str | None) -> None:
    """The scan finds a top-level type; a nested ``type`` first falls back to parsing."""
    assert frame_type(frame) == kind


def test_relay_limits_come_from_settings() -> None:
    """Every relay limit is a named setting (RTGATE_RELAY_*)."""
    settings = Settings.from_env({"RTGATE_RELAY_ANSWER_DEADLINE_S": "2.5"})
    limits = relay_limits(settings)
    assert limits.answer_deadline_s == 2.5
    assert limits.max_frame_bytes == settings.decode.max_frame_bytes
    assert limits.send_deadline_s == settings.outbound.send_deadline_s  # shared with the local pipeline


def test_event_type_labels_are_bounded() -> None:
    """Client-chosen types become labels only when they look like event names."""
    assert event_type_label("response.output_audio.delta") == "response.output_audio.delta"
    assert event_type_label("x" * 200) == "other"
    assert event_type_label('bad"label') == "other"
    assert event_type_label(None) == "other"
    metrics = Metrics()
    for n in range(MAX_SERIES_PER_METRIC + 10):
        metrics.relay.events.inc("up", "client_to_upstream", f"t.n{n}")
    assert len(metrics.relay.events.values) == MAX_SERIES_PER_METRIC + 1
    assert metrics.relay.events.get("other", "other", "other") == 10


def test_exposition_format() -> None:
    """Prometheus text: HELP/TYPE, cumulative buckets ending in +Inf, _sum and _count."""
    metrics = Metrics()
    metrics.relay.sessions.inc("az")
    metrics.relay.added_latency.observe(0.0004, "az", "upstream_to_client")
    text = metrics.registry.render()
    assert "# TYPE rtgate_relay_sessions_total counter" in text
    assert 'rtgate_relay_sessions_total{upstream="az"} 1' in text
    lines = [ln for ln in text.splitlines() if ln.startswith("rtgate_relay_added_latency_seconds_bucket")]
    assert lines[-1].endswith(" 1") and 'le="+Inf"' in lines[-1]
    assert 'le="0.0003"} 0' in text and 'le="0.0005"} 1' in text
    assert 'rtgate_relay_added_latency_seconds_count{upstream="az",direction="upstream_to_client"} 1' in text


def test_client_secrets_option_is_validated() -> None:
    """``client_secrets`` is ``rtgate`` (default) or ``upstream``; anything else names the key."""
    from rtgate.server.config import ConfigError

    upstream = {"kind": "openai", "base_url": "https://api.openai.com/v1", "api_key_env": "K"}
    assert parse_config({"upstreams": {"u": upstream}}).upstreams["u"].client_secrets == "rtgate"
    config = parse_config({"upstreams": {"u": {**upstream, "client_secrets": "upstream"}}})
    assert config.upstreams["u"].client_secrets == "upstream"
    with pytest.raises(ConfigError, match=r"upstreams\.u\.client_secrets"):
        parse_config({"upstreams": {"u": {**upstream, "client_secrets": "cloud"}}})
