"""The drain's pure parts (issue 12): the core's shut-down sequence, the drain state, call ids."""

from __future__ import annotations

import asyncio

from rtgate.core import effects as fx
from rtgate.server.call_registry import call_owner, new_call_id
from rtgate.server.drain import Drain, shutting_down
from rtgate.server.node import Node, advertise_host, http_url
from rtgate.server.settings import Settings, _mask_url

from .helpers import Harness, effects, events


def test_shut_down_ends_the_open_response_then_says_why_then_closes_1012() -> None:
    h = Harness()
    h.update({"type": "realtime", "output_modalities": ["text"]})
    rid = h.start_response()
    h.text(rid, "partial")
    out = h.session.shut_down("going away")
    sent = events(out)
    kinds = [e["type"] for e in sent]
    # The response's parts close before it; rate_limits.updated follows it (SPEC §9).
    assert kinds[-3:] == ["response.done", "rate_limits.updated", "error"]
    done = sent[-3]
    assert done["response"]["id"] == rid
    assert done["response"]["status"] == "failed"
    assert done["response"]["status_details"]["error"]["code"] == "server_shutting_down"
    error = sent[-1]["error"]
    assert error["type"] == "server_error" and error["code"] == "server_shutting_down"
    assert fx.CancelResponse(rid) in effects(out)
    assert out[-1] == fx.Close(1012, "server_error.server_shutting_down")
    assert h.session.shut_down("again") == []  # once
    assert h.text(rid, "late") == []


def test_shut_down_without_a_response_sends_the_error_and_the_close_only() -> None:
    h = Harness()
    out = h.session.shut_down("going away")
    assert [e["type"] for e in events(out)] == ["error"]
    assert isinstance(out[-1], fx.Close) and out[-1].code == 1012


def test_drain_ends_every_registered_session_once_and_forgets_unregistered_ones() -> None:
    drain = Drain(clock=lambda: 100.0)
    ended: list[str] = []
    drain.register(lambda: ended.append("a"))
    unregister_b = drain.register(lambda: ended.append("b"))
    drain.register(lambda: 1 / 0)  # one failing ender does not keep the others open
    unregister_b()
    assert not drain.draining
    assert drain.begin(30.0) and drain.draining and drain.deadline == 130.0
    assert not drain.begin(5.0)  # a second signal does not restart the window
    assert drain.end_all() == 2
    assert ended == ["a"]
    assert drain.end_all() == 0


def test_drain_run_returns_at_once_when_no_session_is_open() -> None:
    drain = Drain()
    asyncio.run(drain.run(lambda: 0, 30.0))
    assert drain.draining


def test_drain_run_ends_what_is_left_at_the_deadline() -> None:
    drain = Drain()
    live = {"n": 1}
    drain.register(lambda: live.update(n=0))
    asyncio.run(drain.run(lambda: live["n"], 0.0))
    assert live["n"] == 0


def test_shutting_down_error_is_a_server_error_with_the_spec_shape() -> None:
    wire = shutting_down("it takes no new sessions").to_wire()
    assert wire["type"] == "server_error" and wire["code"] == "server_shutting_down"
    assert "no new sessions" in wire["message"]


def test_call_ids_name_their_process_and_keep_the_clouds_shape() -> None:
    call_id = new_call_id(Node("0a1b2c3d"))
    assert call_id.startswith("rtc_0a1b2c3d") and len(call_id) == 4 + 32
    assert call_owner(call_id) == "0a1b2c3d"
    assert call_owner("rtc_XYZ") is None
    assert call_owner("sess_0a1b2c3d00") is None
    assert len(new_call_id()) == 36


def test_advertised_address_and_urls() -> None:
    assert advertise_host("10.0.0.5") == "10.0.0.5"
    assert advertise_host("0.0.0.0", "pod.example") == "pod.example"
    assert advertise_host("0.0.0.0") not in ("", "0.0.0.0")
    assert http_url("::1", 80) == "http://[::1]:80"
    assert http_url("127.0.0.1", 80) == "http://127.0.0.1:80"


def test_scale_out_settings_parse_from_the_environment_and_mask_the_redis_password() -> None:
    settings = Settings.from_env({"RTGATE_WORKERS": "auto", "RTGATE_REDIS_URL": "redis://:s3cret@r:6379/0",
                                  "RTGATE_DRAIN_TIMEOUT_S": "12.5", "RTGATE_KEY_MAX_SESSIONS": "3"})
    assert settings.server.workers == 0 and settings.shutdown.drain_timeout_s == 12.5 and settings.capacity.key_max_sessions == 3
    described = settings.describe()
    assert "s3cret" not in described and "redis://:***@r:6379/0" in described
    assert _mask_url("redis://user:pw@h:1") == "redis://user:***@h:1"
    assert _mask_url("redis://h:1") == "redis://h:1"


def test_a_container_cpu_quota_caps_the_usable_cores(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from rtgate.pipeline.base import cpu_quota

    quota = tmp_path / "cpu.max"
    quota.write_text("150000 100000\n")
    assert cpu_quota(str(quota)) == 2  # 1.5 cores: two threads can use them
    quota.write_text("max 100000\n")
    assert cpu_quota(str(quota)) is None
    assert cpu_quota(str(tmp_path / "missing")) is None


def test_auto_is_accepted_only_by_the_settings_whose_zero_means_automatic() -> None:
    import pytest

    assert Settings.from_env({"RTGATE_MAX_CONVERSATIONS": "auto"}).capacity.max_conversations == 0
    with pytest.raises(ValueError, match="RTGATE_PORT: expected int, got 'auto'"):
        Settings.from_env({"RTGATE_PORT": "auto"})
    with pytest.raises(ValueError, match="expected int or auto"):
        Settings.from_env({"RTGATE_WORKERS": "many"})
